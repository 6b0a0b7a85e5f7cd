"""The records that flow through the crawl stages, in the paper's words.

Plain NamedTuples: they pickle everywhere, compare by value, and Beam can infer schemas from them.
Each stage turns one record into the next or into a Drop with a named reason.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple, Tuple


class Submission(NamedTuple):
    """One Reddit submission, from a Pushshift dump line or the API."""
    id: str
    url: str                 # the outbound link as posted (not yet normalized)
    karma: int               # the submission's score
    is_self: bool
    over_18: bool            # NSFW
    subreddit: str
    created_utc: int
    source: str = ""         # dump file name, "reddit-api", or "url-list"


class Link(NamedTuple):
    """One normalized outbound link, aggregated over every submission that posted it."""
    url: str                 # normalized URL
    host: str                # lower-case host of `url`
    karma: int               # aggregated karma (max or sum over submissions, see config)
    subreddits: Tuple[str, ...]
    created_utc: int         # first seen
    submissions: int = 1     # how many submissions posted this URL


class Page(NamedTuple):
    """A fetched outbound link: the final response after redirects."""
    link: Link
    final_url: str
    status: int
    content_type: str
    body: bytes              # raw (decompressed) body bytes, bounded by the fetch config
    encoding: str = ""       # charset from the headers or sniffed; "" if unknown
    fetched_at: float = 0.0


class Document(NamedTuple):
    """Main text extracted from a page, with the provenance that goes to the shards."""
    doc_id: str              # 16 hex chars: 64-bit hash of the normalized URL (stable across runs/runners)
    url: str                 # the normalized outbound link (what Reddit pointed at)
    text: str
    title: str
    karma: int
    subreddits: Tuple[str, ...]
    created_utc: int
    lang: str = "en"
    lang_score: float = 1.0


class Drop(NamedTuple):
    """Something a stage did not keep, and why. Written to drops/*.jsonl so every dropped link is accounted for."""
    stage: str
    reason: str
    url: str = ""
    detail: str = ""


def doc_id_for(url: str) -> str:
    """64-bit id from the normalized URL, as 16 hex chars (sorts the same as the integer)."""
    return hashlib.blake2b(url.encode("utf-8"), digest_size=8).hexdigest()
