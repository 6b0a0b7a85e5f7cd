"""WARC capture of fetched pages, an outcome log for every link, and reading both back (resume, offline extract).

Layout of `warc_dir` (local path or any Beam filesystem, e.g. gs://):
    fetch-<id>.warc.gz      response + request records of ok pages (one gzip member per record, warcio)
    outcomes-<id>.jsonl     one line per link decided by the same writer: url, outcome, detail, warc file and
                            offset of the response record (ok only), and the Link (provenance)
Both are written under hidden temp names and renamed when complete, the WARC first and its outcomes file last, so
an outcomes file is the commit marker. A writer commits every `rotate` outcomes, every `commit_seconds` (a
timer, so a killed run loses at most the last few seconds) and at close or interpreter exit; locally it also
flushes each page's records, then its line, to the temp files, so even uncommitted work survives the process's
death. Leftover temp
files of a killed run are recovered (their whole records committed) or removed by the next run
(crawl/fetch/warc_recover.py); a live writer holds a lock on its local temp files, so it is never disturbed.
A response record also carries the Link as a `WebText-Link` JSON header, so a WARC alone still rebuilds Pages.
Response payloads are stored decoded (as the fetcher kept them); the original Content-Encoding and
Transfer-Encoding are kept as X-Crawler-* headers and Content-Length is the stored length.

Reading back (bounded, every bad line or record a counted drop) is crawl/fetch/warc_read.py; its names are
re-exported here.
"""
from __future__ import annotations

import atexit
import fcntl
import io
import json
import os
import threading
import time
import uuid
import weakref
from datetime import datetime, timezone

from apache_beam.io.filesystems import FileSystems
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from core.files import fsync_dir, is_local
from core.records import Link, Page
from crawl.fetch.warc_read import (  # noqa: F401  (re-exported: resume and the CLI import them from here)
    LINK_HEADER, RAW, Captured, ReadWarcPages, Unreadable, link_from_json, link_to_json, load_page, outcome_files,
    outcome_lines, parse_outcome, parse_outcomes, preference, read_member, response_pages)

COMMIT_SECONDS = 5.0                    # a killed run loses at most about this much captured work


def _join(warc_dir: str, name: str) -> str:
    return FileSystems.join(warc_dir, name)


_LIVE = weakref.WeakSet()               # open sinks, committed at interpreter exit


@atexit.register
def _close_live_sinks():
    for sink in list(_LIVE):
        try:
            sink.close()
        except Exception:               # exiting anyway; the next run recovers the temp files
            pass


def _create(path: str, local: bool):
    f = FileSystems.create(path, compression_type=RAW)
    if local:   # held until close: warc_recover.py leaves a locked temp file alone (the kernel drops it on death)
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    return f


def _finish(f, tmp: str, final: str, local: bool) -> None:
    """Commit one temp file. Locally: flushed to disk and renamed while still open, so it is never an unlocked
    temp file a recovering run could take; elsewhere the object exists once closed, then it is renamed."""
    if local:
        f.flush()
        os.fsync(f.fileno())
    else:
        f.close()
    FileSystems.rename([tmp], [final])
    if local:
        f.close()


class WarcSink:
    """Thread-safe writer for one worker: `add(link, result)` per decided link; a file pair is committed every
    `rotate` outcomes, every `commit_seconds` while it has work, and on `close()`."""

    def __init__(self, warc_dir: str, rotate: int = 1000, software: str = "webtext",
                 commit_seconds: float = COMMIT_SECONDS):
        self.warc_dir, self.rotate, self.software = warc_dir, max(1, rotate), software
        self.commit_seconds, self.local = commit_seconds, is_local(warc_dir)
        self._lock = threading.Lock()
        self._warc = self._outcomes = None
        self._closed = threading.Event()
        self._timer = None
        self.committed = []          # names of committed outcomes files
        _LIVE.add(self)

    def _open(self):
        self._id = uuid.uuid4().hex
        self._names = (f"fetch-{self._id}.warc.gz", f"outcomes-{self._id}.jsonl")
        self._warc, self._warc_n, self._pages = None, 0, 0
        self._outcomes = _create(_join(self.warc_dir, f".{self._names[1]}.tmp"), self.local)
        self._n, self._opened = 0, time.monotonic()
        if self._timer is None and self.commit_seconds:
            self._timer = threading.Thread(target=self._tick, name="warc-commit", daemon=True)
            self._timer.start()

    def _tick(self):
        # A daemon thread: it keeps committing while the process runs, also while the fetch threads are busy
        # with one slow host for minutes, and it can never keep the process alive.
        while not self._closed.wait(self.commit_seconds / 4):
            with self._lock:
                if self._outcomes is not None and time.monotonic() - self._opened >= self.commit_seconds:
                    self._commit()

    def _warc_file(self):
        if self._warc is None:
            self._warc = _create(_join(self.warc_dir, f".{self._names[0]}.tmp"), self.local)
            info = _record(lambda w: w.create_warcinfo_record(self._names[0], {
                "software": self.software, "format": "WARC File Format 1.1",
                "description": "webtext fetch: decoded payloads, WebText-Link header carries provenance"}))
            self._write_warc(info)
        return self._warc

    def _write_warc(self, data: bytes) -> int:
        offset = self._warc_n
        self._warc.write(data)
        self._warc_n += len(data)
        return offset

    def add(self, link: Link, result) -> None:
        """Record a FetchResult (crawl.fetch.fetcher) for `link`: the page as WARC records when ok, the outcome always."""
        with self._lock:
            if self._outcomes is None:
                self._open()
            warc_name, offset = None, None
            if result.outcome == "ok" and result.page is not None:
                self._warc_file()
                resp, req = page_records(result.page, result.capture)
                offset = self._write_warc(resp)
                self._write_warc(req)
                warc_name = self._names[0]
                if self.local:      # records reach the file before the line that points at them
                    self._warc.flush()
            line = {"url": link.url, "outcome": result.outcome, "detail": result.detail, "warc": warc_name,
                    "offset": offset, "link": link._asdict()}
            self._outcomes.write((json.dumps(line, sort_keys=True) + "\n").encode("utf-8"))
            if self.local:          # one write per page, so a killed process leaves every decided line to recover
                self._outcomes.flush()
            self._n += 1
            if self._n >= self.rotate:
                self._commit()

    def _commit(self):
        if self._outcomes is None:
            return
        for f, name in ((self._warc, self._names[0]), (self._outcomes, self._names[1])):   # the WARC first
            if f is not None:
                _finish(f, _join(self.warc_dir, f".{name}.tmp"), _join(self.warc_dir, name), self.local)
        if self.local:
            fsync_dir(self.warc_dir)
        self.committed.append(self._names[1])
        self._warc = self._outcomes = None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._commit()
        _LIVE.discard(self)


def _record(make) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True, warc_version="1.1")
    writer.write_record(make(writer))
    return buf.getvalue()


def page_records(page: Page, capture=None):
    """(response record bytes, request record bytes) for an ok page, each one gzip member."""
    status_line, req_headers, resp_headers = "200 OK", (), (("Content-Type", page.content_type),)
    if capture is not None:
        status_line, req_headers, resp_headers = capture.status_line, capture.request_headers, capture.response_headers
    headers = []
    for name, value in resp_headers:
        low = name.lower()
        if low in ("content-encoding", "transfer-encoding"):
            headers.append((f"X-Crawler-{name}", value))
        elif low != "content-length":
            headers.append((name, value))
    headers.append(("Content-Length", str(len(page.body))))
    date = datetime_to_iso_date(datetime.fromtimestamp(page.fetched_at, timezone.utc).replace(tzinfo=None),
                                use_micros=True)
    rec_id = f"<urn:uuid:{uuid.uuid4()}>"
    resp = _record(lambda w: w.create_warc_record(
        page.final_url, "response", payload=io.BytesIO(page.body),
        http_headers=StatusAndHeaders(status_line, headers, protocol="HTTP/1.1"),
        warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": rec_id, LINK_HEADER: link_to_json(page.link)}))
    path = page.final_url.split("/", 3)[3] if page.final_url.count("/") >= 3 else ""
    host = page.final_url.split("/", 3)[2] if page.final_url.count("/") >= 2 else ""
    req_list = [(k, v) for k, v in req_headers if k.lower() != "host"] + [("Host", host)]
    req = _record(lambda w: w.create_warc_record(
        page.final_url, "request", payload=io.BytesIO(b""),
        http_headers=StatusAndHeaders(f"GET /{path} HTTP/1.1", req_list, protocol="HTTP/1.1", is_http_request=True),
        warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": rec_id}))
    return resp, req



