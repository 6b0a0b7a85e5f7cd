"""What a response body is and how much of it to take: bounded streaming, gzip/deflate with a bomb cap, sniffing,
charset. Used by crawl/fetch/fetcher.py; nothing here touches the network except reading an already open response.
"""
from __future__ import annotations

import codecs
import re
import time
import zlib
from typing import Optional, Tuple


class BodyError(Exception):
    """A body we will not keep, with the fetch outcome it maps to ("too_large", "timeout", ...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# -------------------------------------------------------------------------------------------- decoding
class _Inflater:
    """gzip / deflate decoder that never holds more than `limit` decoded bytes (a 10 KiB gzip bomb can inflate
    to gigabytes: decompress with max_length and stop at the cap instead of after it)."""

    def __init__(self, encoding: str, limit: int, truncate: bool = False):
        self.encoding, self.limit, self.out = encoding, limit, bytearray()
        self.truncate, self.full = truncate, False      # truncate: keep the first `limit` bytes instead of failing
        self._new()

    def _new(self, raw_deflate: bool = False):
        wbits = -zlib.MAX_WBITS if raw_deflate else (16 + zlib.MAX_WBITS if self.encoding == "gzip" else zlib.MAX_WBITS)
        self._d, self._started = zlib.decompressobj(wbits), False

    def feed(self, data: bytes) -> None:
        while data:
            room = self.limit - len(self.out) + 1
            try:
                chunk = self._d.decompress(data, room)
            except zlib.error as e:
                # Many servers send raw deflate labelled "deflate" (no zlib header): retry that way once.
                if self.encoding == "deflate" and not self._started:
                    self._new(raw_deflate=True)
                    self._started = True
                    chunk = self._d.decompress(data, room)
                else:
                    raise BodyError("content_encoding_error", f"{self.encoding}: {e}") from None
            self._started = True
            self.out += chunk
            if len(self.out) > self.limit:
                if self.truncate:
                    del self.out[self.limit:]
                    self.full = True
                    return
                raise BodyError("too_large", f"decompressed body > {self.limit} bytes ({self.encoding})")
            if self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
            elif self._d.eof and self._d.unused_data.strip(b"\x00"):
                data = self._d.unused_data        # concatenated gzip members
                self._new()
            else:
                data = b""

    def finish(self) -> bytes:
        if self._started and not self._d.eof:
            try:
                tail = self._d.flush()
            except zlib.error as e:
                raise BodyError("content_encoding_error", f"{self.encoding}: {e}") from None
            if not self._d.eof:
                raise BodyError("content_encoding_error", f"truncated {self.encoding} stream")
            self.out += tail
        return bytes(self.out)


def read_body(raw, content_encoding: str, max_bytes: int, max_decoded: int, deadline: float,
              truncate: bool = False) -> bytes:
    """Read an urllib3 response to the end, enforcing the wire-size cap, the decoded-size cap and a wall-clock
    deadline. `read1` returns what one socket read gives, so a server that trickles a byte at a time still comes
    back here between bytes and hits the deadline (a plain read(n) would wait for n bytes).

    A body is returned only when it ended as its framing says: a Content-Length or chunked body cut short raises
    from urllib3/http.client (a connection_error, or a timeout when the deadline cut it), and an end of body seen
    at or after the deadline is the watchdog's cut, not the server's end (a body framed by the connection's close
    looks complete otherwise): "timeout". `truncate` (robots.txt, RFC 9309 2.5): a body over a cap is not refused;
    its first `max_decoded` decoded bytes are returned (the wire stays capped at `max_bytes`)."""
    codings = [c.strip() for c in (content_encoding or "").lower().split(",") if c.strip() not in ("", "identity")]
    if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
        raise BodyError("content_encoding_error", f"unsupported Content-Encoding {content_encoding!r}")
    inflater = _Inflater("deflate" if codings == ["deflate"] else "gzip", max_decoded, truncate) if codings else None
    plain_cap = min(max_bytes, max_decoded) if truncate else max_bytes
    body, n = bytearray(), 0
    while True:
        if time.monotonic() > deadline:
            raise BodyError("timeout", f"page not complete within the page timeout ({n} bytes read)")
        chunk = raw.read1(65536, decode_content=False)
        if not chunk:
            if time.monotonic() >= deadline:
                raise BodyError("timeout", f"body cut at the page timeout ({n} bytes read)")
            break
        n += len(chunk)
        if inflater:
            if n > max_bytes:
                if not truncate:
                    raise BodyError("too_large", f"body > {max_bytes} bytes")
                inflater.feed(chunk[:len(chunk) - (n - max_bytes)])
                return bytes(inflater.out)          # the decoded prefix, as far as the wire cap let us read
            inflater.feed(chunk)
            if inflater.full:
                return bytes(inflater.out)
        else:
            body += chunk
            if n > plain_cap:
                if not truncate:
                    raise BodyError("too_large", f"body > {max_bytes} bytes")
                del body[plain_cap:]
                return bytes(body)
    return inflater.finish() if inflater else bytes(body)


# -------------------------------------------------------------------------------------------- sniffing
_BINARY_MAGIC = (
    b"\x89PNG", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"%PDF-", b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b",
    b"BZh", b"7z\xbc\xaf\x27\x1c", b"Rar!", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd", b"\x7fELF", b"MZ", b"OggS",
    b"ID3", b"fLaC", b"RIFF", b"\x00asm", b"\xd0\xcf\x11\xe0", b"wOFF", b"wOF2", b"\x00\x00\x01\x00",
    b"II*\x00", b"MM\x00*", b"\x1a\x45\xdf\xa3", b"FLV", b"%!PS", b"\xca\xfe\xba\xbe", b"BM",
)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# Control bytes that never occur in text (WHATWG mime sniffing "binary data byte").
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
# WHATWG "rules for identifying an unknown mime type": a tag among the first bytes makes it HTML.
_HTML_START = re.compile(rb"^\s*<(?:!doctype\s+html|html|head|script|iframe|h1|div|font|table|a|style|title|b|"
                         rb"body|br|p|!--|meta|link)[\s>/]", re.I)
_SNIFF_TYPES = ("", "application/octet-stream", "application/unknown", "unknown/unknown", "*/*", "binary/octet-stream")


def media_type(content_type_header: str) -> str:
    return (content_type_header or "").split(";", 1)[0].strip().lower()


def looks_binary(head: bytes) -> Optional[str]:
    """A description if the first bytes are a known binary format or contain control bytes, else None."""
    if head.startswith(_BOMS):
        return None                     # UTF-16 text is full of NULs, and a BOM says it is text
    if head[4:8] == b"ftyp":
        return "mp4/iso media signature"
    for magic in _BINARY_MAGIC:
        if head.startswith(magic):
            return f"binary signature {magic[:6]!r}"
    if _BINARY_BYTES.search(head[:1024]):
        return "control bytes in the first 1 KiB"
    return None


def looks_html(head: bytes) -> bool:
    for bom in _BOMS[:1]:
        if head.startswith(bom):
            head = head[len(bom):]
    head = head[:1024]
    if head.lstrip().lower().startswith(b"<?xml"):
        return b"<html" in head.lower()
    return bool(_HTML_START.match(head))


def check_content_type(header: str, allowed: Tuple[str, ...]) -> Optional[str]:
    """Before reading: None if the declared type may be HTML (allowed or missing/generic), else a detail."""
    mt = media_type(header)
    if mt in allowed or mt in _SNIFF_TYPES:
        return None
    return f"content type {mt!r}"


def sniff_body(header: str, body: bytes, allowed: Tuple[str, ...]) -> Tuple[Optional[str], str]:
    """After reading: (detail if not a page we keep, the media type to record)."""
    mt, head = media_type(header), body[:1024]
    bad = looks_binary(head)
    if bad:
        return f"{bad} (labelled {mt or 'nothing'})", mt
    if mt in _SNIFF_TYPES:
        return (None, "text/html") if looks_html(head) else ("unlabelled body does not look like HTML", mt)
    return None, mt


# -------------------------------------------------------------------------------------------- charset
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([a-zA-Z0-9_.:-]+)", re.I)
_WHATWG_ALIASES = {"ascii": "cp1252", "latin-1": "cp1252", "iso8859-1": "cp1252", "utf-16-le": "utf-8",
                   "utf-16-be": "utf-8", "utf-16": "utf-8"}


def _known(label: str) -> str:
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except (LookupError, ValueError, TypeError):
        return ""
    return _WHATWG_ALIASES.get(name, name)


def detect_encoding(content_type_header: str, body: bytes) -> str:
    """Charset of an HTML body as a Python codec name, or "" if unknown: BOM, then the header's charset, then a
    <meta> in the first 4 KiB, then "utf-8" if the bytes are valid UTF-8. Never raises; the body stays bytes."""
    if body.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    m = re.search(r"charset\s*=\s*([^;\s]+)", content_type_header or "", re.I)
    if m and _known(m.group(1)):
        return _known(m.group(1))
    m = _META_CHARSET.search(body[:4096])
    if m and _known(m.group(1).decode("ascii", "replace")):
        return _known(m.group(1).decode("ascii", "replace"))
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return ""
