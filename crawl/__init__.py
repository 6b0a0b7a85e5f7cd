"""From Reddit to documents. In data-flow order:

    sources/   submissions from Pushshift dumps and URL lists (dumps.py) or live through praw (reddit.py)
    links.py   URL normalization and the link rules: karma per URL, self posts, NSFW, Wikipedia, media
    fetch/     the polite, safe crawl: fetcher.py (one host's links), http.py (pacing, errors), content.py (bodies),
               robots.py, safety.py + addresses.py (SSRF guard), warc.py (capture, resume), transform.py (FetchPages)
    text/      extract.py (trafilatura + document rules, no Beam), pool.py (extraction processes),
               transform.py (ExtractDocuments), quality.py (Gopher/C4 rules, FilterQuality)
Each stage imports only core/ and the stages before it.
"""
