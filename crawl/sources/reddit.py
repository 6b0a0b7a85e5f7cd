"""Live Reddit harvest through praw: subreddit listings -> Submissions (source "reddit-api").

The API is the small-scale, up-to-date source: a listing stops at ~1,000 items (100 per request), so it cannot
replace the Pushshift dumps for history. Access is read-only with an app's client credentials (no username),
configured the praw way: a praw.ini site (`praw_site`) or the environment variables praw_client_id,
praw_client_secret and praw_user_agent, which praw reads itself. The endpoints (oauth_url, reddit_url) are only
read from keyword arguments or praw.ini, which is how tests point praw at a stand-in server.

We read the fields a listing returned (the praw object's __dict__) and never poke attributes: praw answers a
missing attribute with an extra request per item and then an AttributeError.
"""
from __future__ import annotations

import configparser
import logging
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple, Union

import apache_beam as beam

from core.retry import retry_wait
from core.settings import UsageError
from core.records import DROPPED, SOURCE as STAGE, Drop, Step, Submission
from crawl.sources.dumps import not_unicode

log = logging.getLogger(__name__)

SOURCE = "reddit-api"
LISTINGS = ("top", "new", "hot", "controversial")
TIME_FILTERS = ("all", "year", "month", "week", "day", "hour")
CREDENTIALS_HELP = ("set the environment variables praw_client_id, praw_client_secret and praw_user_agent, "
                    "or name a praw.ini site with --praw-site (a read-only 'script' app's id and secret from "
                    "https://www.reddit.com/prefs/apps)")


class RedditCredentialsError(UsageError):
    """Reddit API credentials are missing or were rejected: a setup problem, one line and exit 2 at the CLI."""


@dataclass(frozen=True)
class RedditConfig:
    subreddits: Tuple[str, ...] = ("all",)   # names without "r/"; "all" is r/all
    listing: str = "top"                     # top | new | hot | controversial
    time_filter: str = "all"                 # all | year | month | week | day | hour (top/controversial only)
    limit: Optional[int] = 1000              # items per subreddit; None = as many as the API gives (~1,000)
    praw_site: Optional[str] = None          # praw.ini section holding credentials (and endpoints)
    oauth_url: Optional[str] = None          # API endpoint override (default https://oauth.reddit.com)
    reddit_url: Optional[str] = None         # token endpoint override (default https://www.reddit.com)
    user_agent: Optional[str] = None         # else praw_user_agent / praw.ini
    retries: int = 5                         # per request, on HTTP 429 (honouring Retry-After)
    max_retry_wait: float = 120.0            # seconds; cap on one Retry-After wait

    def __post_init__(self):
        subs = (self.subreddits,) if isinstance(self.subreddits, str) else tuple(self.subreddits)
        subs = tuple(s.strip().removeprefix("/").removeprefix("r/").strip("/") for s in subs)
        if not subs or not all(subs):
            raise ValueError(f"reddit.subreddits must name at least one subreddit, not {self.subreddits!r}")
        object.__setattr__(self, "subreddits", subs)
        if self.listing not in LISTINGS:
            raise ValueError(f"reddit.listing must be one of {LISTINGS}, not {self.listing!r}")
        if self.time_filter not in TIME_FILTERS:
            raise ValueError(f"reddit.time_filter must be one of {TIME_FILTERS}, not {self.time_filter!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"reddit.limit must be a positive number or None, not {self.limit!r}")


def make_reddit(cfg: RedditConfig):
    """A read-only praw.Reddit client. Builds offline (the token is fetched at the first request)."""
    import praw
    from praw.exceptions import MissingRequiredAttributeException

    kwargs = {"check_for_updates": False}   # praw would otherwise ask PyPI for a newer version
    for key in ("oauth_url", "reddit_url", "user_agent"):
        if getattr(cfg, key):
            kwargs[key] = getattr(cfg, key)
    try:
        reddit = praw.Reddit(cfg.praw_site, **kwargs)
    except MissingRequiredAttributeException as e:
        missing = str(e).split("'")[1] if "'" in str(e) else "a setting"
        raise RedditCredentialsError(f"Reddit API credentials missing ({missing}): {CREDENTIALS_HELP}") from None
    except configparser.NoSectionError:
        raise RedditCredentialsError(f"praw.ini has no site [{cfg.praw_site}] (looked in ./praw.ini and "
                                     f"~/.config/praw.ini): {CREDENTIALS_HELP}") from None
    if not reddit.config.client_secret:
        raise RedditCredentialsError(f"Reddit API credentials missing (client_secret): {CREDENTIALS_HELP}")
    reddit.read_only = True   # client-credentials grant even if the praw.ini site also names a user
    return reddit


# ---------------------------------------------------------------------------------------------- harvest
def listing_items(reddit, subreddit: str, cfg: RedditConfig) -> Iterator[dict]:
    """The raw field dicts of one subreddit listing, paged by praw (100 per request), 429s retried.

    prawcore raises TooManyRequests instead of retrying a 429; praw's ListingGenerator keeps its place when a
    page request raises, so asking it for the next item again re-requests the same page.
    """
    from prawcore.exceptions import ResponseException, TooManyRequests

    sub = reddit.subreddit(subreddit)
    if cfg.listing in ("top", "controversial"):
        gen = getattr(sub, cfg.listing)(time_filter=cfg.time_filter, limit=cfg.limit)
    else:
        gen = getattr(sub, cfg.listing)(limit=cfg.limit)
    failures = 0
    while True:
        try:
            item = next(gen)
        except StopIteration:
            return
        except TooManyRequests as e:
            failures += 1
            if failures > cfg.retries:
                raise
            time.sleep(min(retry_wait(e.retry_after, failures, base=1.0, jitter=1.0), cfg.max_retry_wait))
            continue
        except ResponseException as e:
            if e.response.status_code == 401 and e.response.url.split("?")[0].endswith("/api/v1/access_token"):
                raise RedditCredentialsError(f"Reddit rejected the client credentials (HTTP 401 from "
                                             f"{e.response.url}): check the app id and secret") from None
            raise
        failures = 0
        yield _fields(item)


def _fields(item) -> dict:
    """What the listing returned for one item, with the subreddit object turned back into its name."""
    data = {k: v for k, v in vars(item).items() if not k.startswith("_")}
    sub = data.get("subreddit")
    if sub is not None and not isinstance(sub, str):
        data["subreddit"] = vars(sub).get("display_name", "")
    return data


def submission_from_item(data: dict, subreddit: str = "") -> Union[Submission, Drop]:
    """Map one listing item to a Submission, or a Drop("source", "malformed_item") naming what is missing.

    Required: id, url, score, created_utc, over_18 (an unknown NSFW flag must not pass the NSFW rule).
    Defaulted: subreddit (the one harvested, unless r/all), is_self (from domain "self.<sub>").
    """
    missing = [k for k in ("id", "url", "score", "created_utc", "over_18") if data.get(k) is None]
    if missing:
        return Drop(STAGE, "malformed_item", str(data.get("url") or ""),
                    f"id={data.get('id')} missing: {', '.join(missing)}")
    try:
        karma, created = int(data["score"]), int(float(data["created_utc"]))
        if not (-2 ** 63 <= karma < 2 ** 63 and -2 ** 63 <= created < 2 ** 63):   # int64 columns downstream
            raise ValueError("out of range")
    except (TypeError, ValueError, OverflowError):   # OverflowError: int(inf), e.g. a score of 1e400
        return Drop(STAGE, "malformed_item", str(data["url"]),
                    f"id={data['id']} bad score/created_utc: {data['score']!r}/{data['created_utc']!r}")
    is_self = data.get("is_self")
    if is_self is None:
        is_self = str(data.get("domain") or "").startswith("self.")
    sub = data.get("subreddit") or ("" if subreddit.lower() == "all" else subreddit)
    sid, url, sub = str(data["id"]), str(data["url"]), str(sub)
    if not_unicode(sid, url, sub):   # a lone surrogate escape in the API's JSON: no encoder downstream takes it
        return Drop(STAGE, "malformed_item", url, f"id={sid!a}: lone surrogate in url, id or subreddit")
    return Submission(sid, url, karma, bool(is_self), bool(data["over_18"]), sub, created, SOURCE)


def harvest_subreddit(reddit_or_cfg, subreddit: str, cfg: Optional[RedditConfig] = None) -> Iterator[Submission]:
    """Submissions of one subreddit listing (malformed items skipped; use ReadReddit to count them)."""
    cfg = cfg or (reddit_or_cfg if isinstance(reddit_or_cfg, RedditConfig) else RedditConfig((subreddit,)))
    reddit = make_reddit(reddit_or_cfg) if isinstance(reddit_or_cfg, RedditConfig) else reddit_or_cfg
    for data in listing_items(reddit, subreddit, cfg):
        sub = submission_from_item(data, subreddit)
        if isinstance(sub, Submission):
            yield sub


# ---------------------------------------------------------------------------------------------- Beam
class _HarvestSubreddit(Step):
    """Stage "source": in = listing items read, drop.malformed_item; `out` is counted after _OnePerId."""
    stage = STAGE

    def __init__(self, cfg: RedditConfig):
        super().__init__()
        self.cfg = cfg

    def setup(self):
        self.reddit = make_reddit(self.cfg)   # praw objects don't pickle: build on the worker

    def process(self, subreddit: str):
        from prawcore.exceptions import Forbidden, NotFound, Redirect
        try:
            yield from self._harvest(subreddit)
        except (Redirect, NotFound, Forbidden) as e:
            # unknown (redirected to search), banned or private: one bad name must not stop a long crawl
            self.count("subreddit_unavailable")   # not an item: outside in/out/drop
            log.warning("r/%s unavailable (%s): skipped", subreddit, e)

    def _harvest(self, subreddit: str):
        for data in listing_items(self.reddit, subreddit, self.cfg):
            self.count("in")
            sub = submission_from_item(data, subreddit)
            if isinstance(sub, Drop):
                yield from self.emit(sub)
            else:
                yield sub.id, sub


class _OnePerId(Step):
    """Listings overlap (r/all and its subreddits; pages shift while paging "new"/"hot"): keep one per id."""
    stage = STAGE

    def process(self, kv):
        sid, subs = kv
        subs = sorted(subs, key=lambda s: (-s.karma, s.subreddit, s.url))   # deterministic: highest score
        yield from self.emit(subs[0])
        for dup in subs[1:]:
            yield from self.emit(self.drop("duplicate_item", dup.url, f"id={sid}"))


class ReadReddit(beam.PTransform):
    """Subreddit listings -> Submissions (tagged outputs: `submissions`, `dropped`). One harvest per subreddit,
    reshuffled so the harvests run in parallel on different workers.

    Credentials are checked when the pipeline is built (fail before a job starts); workers build their own
    client from the same praw.ini / environment, so on a remote runner they must have it too.
    """

    def __init__(self, cfg: RedditConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin):
        make_reddit(self.cfg)
        read = (pbegin
                | "Subreddits" >> beam.Create(list(dict.fromkeys(self.cfg.subreddits)))
                | "Spread" >> beam.Reshuffle()
                | "Harvest" >> beam.ParDo(_HarvestSubreddit(self.cfg)).with_outputs(DROPPED, main="items"))
        unique = (read.items
                  | "GroupById" >> beam.GroupByKey()
                  | "OnePerId" >> beam.ParDo(_OnePerId()).with_outputs(DROPPED, main="submissions"))
        dropped = (read[DROPPED], unique[DROPPED]) | "FlattenDrops" >> beam.Flatten()
        return {"submissions": unique.submissions, DROPPED: dropped}
