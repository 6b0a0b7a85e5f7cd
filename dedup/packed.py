"""Compact byte forms of what the dedup shuffles carry per document.

The local runner keeps a GroupByKey's values as Python objects until the next stage has read them all, and while
that stage runs it holds them a second time, encoded. An Entry (a NamedTuple of a 16-character id, an int, two
bytes objects and a str) is ~0.5 KB of objects there; the same fields as one bytes object are ~0.2 KB. A band
record's member, (doc_id, karma), is 10-12 bytes here instead of 24: the ids the pipeline makes
(core.records.doc_id_for) are 16 hex characters, i.e. 8 bytes, and karma is mostly small.

    id:     0x00 + 8 bytes (a 16-hex-character lower-case id)  |  0x01 + varint length + UTF-8 (any other id)
    member: id + zigzag varint karma
    entry:  member + varint len + band keys + varint len + signature + payload ref (UTF-8, the rest)
"""
from __future__ import annotations

import pickle
from typing import Tuple

from dedup.minhash import Entry

_HEX8, _TEXT = 0, 1


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(b, i: int) -> Tuple[int, int]:
    n = shift = 0
    while True:
        byte = b[i]
        i += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, i
        shift += 7


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(z: int) -> int:
    return z // 2 if z % 2 == 0 else -(z + 1) // 2


def _id(doc_id: str) -> bytes:
    if len(doc_id) == 16:
        try:
            raw = bytes.fromhex(doc_id)
        except ValueError:
            raw = b""
        if raw.hex() == doc_id:              # lower case only: the id must come back as it was
            return bytes([_HEX8]) + raw
    text = doc_id.encode("utf-8")
    return bytes([_TEXT]) + varint(len(text)) + text


def _read_id(b, i: int) -> Tuple[str, int]:
    if b[i] == _HEX8:
        return bytes(b[i + 1:i + 9]).hex(), i + 9
    n, i = read_varint(b, i + 1)
    return bytes(b[i:i + n]).decode("utf-8"), i + n


def pack_member(doc_id: str, karma: int) -> bytes:
    return _id(doc_id) + varint(_zigzag(int(karma)))


def unpack_member(b) -> Tuple[str, int]:
    doc_id, i = _read_id(b, 0)
    z, _ = read_varint(b, i)
    return doc_id, _unzigzag(z)


def pack_entry(e: Entry) -> bytes:
    return b"".join((pack_member(e.doc_id, e.karma), varint(len(e.keys)), e.keys, varint(len(e.sig)), e.sig,
                     e.ref.encode("utf-8")))


def unpack_entry(b) -> Entry:
    doc_id, i = _read_id(b, 0)
    z, i = read_varint(b, i)
    n, i = read_varint(b, i)
    keys, i = bytes(b[i:i + n]), i + n
    n, i = read_varint(b, i)
    sig, i = bytes(b[i:i + n]), i + n
    return Entry(doc_id, _unzigzag(z), keys, sig, bytes(b[i:]).decode("utf-8"))


def pack_sketch(s) -> bytes:
    """An Entry packed as above; anything else that ExactDuplicates groups (a Sketch in tests and small runs) is
    pickled, which a packed entry can never be mistaken for (a pickle starts with 0x80, an id tag is 0 or 1)."""
    return pack_entry(s) if isinstance(s, Entry) else pickle.dumps(s, protocol=5)


def unpack_sketch(b):
    return pickle.loads(b) if b[0] == 0x80 else unpack_entry(b)

