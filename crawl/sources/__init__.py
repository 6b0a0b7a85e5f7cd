"""Where submissions come from: Pushshift dumps and URL lists (dumps.ReadSubmissions), the Reddit API through praw
(reddit.ReadReddit)."""
