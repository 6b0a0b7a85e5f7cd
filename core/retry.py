"""How long to wait before retrying a request: the server's Retry-After when it gave one, else exponential backoff.
Used by the fetcher (429/5xx from web servers) and the Reddit harvest (429 from the API)."""
from __future__ import annotations

import random
from typing import Optional

from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry


def retry_after(value) -> Optional[float]:
    """Seconds from a Retry-After value: delta-seconds (fractions accepted, as APIs send them) or an HTTP date
    (parsed by urllib3; a date in the past is 0). None when absent or unreadable."""
    if value is None or value == "":
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        return float(Retry().parse_retry_after(str(value)))
    except (InvalidHeader, TypeError, ValueError, OverflowError):
        return None


def retry_wait(header, attempt: int, base: float, jitter: float = 0.0) -> float:
    """The server's Retry-After if readable, else base * 2**attempt (+ up to `jitter` random seconds)."""
    wait = retry_after(header)
    return base * 2 ** attempt + jitter * random.random() if wait is None else wait
