"""Fuzz target: a dump line. Arbitrary JSON-ish and raw-byte lines, written as a real (multi-frame) zstd dump and
read by the source stage's own DoFn (crawl/sources/dumps.py `_ReadFile`): it never raises, every non-empty line
is one submission or one `malformed_line` drop, `in == out + drops`, and whatever it keeps can be encoded (the
next stages write URLs, subreddits and ids as UTF-8). Budget: the `ci` profile (tests/conftest.py);
`python bench/fuzz.py --target dump` runs it longer."""
from __future__ import annotations

import io
import json
from collections import Counter

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, strategies as st  # noqa: E402
import zstandard  # noqa: E402

from core.records import Drop, Submission  # noqa: E402
from crawl.sources.dumps import _ReadFile  # noqa: E402


class _Readable:
    """What fileio.ReadableFile gives the DoFn: a path and an open()."""

    class metadata:
        path = "/dumps/RS_fuzz.zst"

    def __init__(self, data: bytes):
        self.data = data

    def open(self, compression_type=None):
        return io.BytesIO(self.data)


def read_dump(data: bytes):
    """(outputs, counts) of the real source DoFn over one .zst file's bytes; counts as Beam would count them."""
    dofn = _ReadFile(default_karma=3)
    counts: Counter = Counter()
    dofn.count = lambda name, n=1, stage="": counts.update({name: n})
    outs = []
    for item in dofn.process(_Readable(data)):
        outs.append(getattr(item, "value", item))   # TaggedOutput(dropped, Drop) -> Drop
    return outs, counts


def zst(frames) -> bytes:
    cctx = zstandard.ZstdCompressor()
    return b"".join(cctx.compress(f) for f in frames)


def utf8_clean(s) -> bool:
    try:
        (s or "").encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False




# ------------------------------------------------------------------------------------------------ strategies
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                                  kids, max_size=3),
                           max_leaves=8)
FIELDS = ("url", "score", "is_self", "over_18", "created_utc", "subreddit", "id", "name")
urlish = st.one_of(st.just("https://example.com/a"), st.text(max_size=40),
                   st.builds(lambda h, p: f"http://{h}/{p}", st.text(max_size=15), st.text(max_size=15)))
submissions = st.fixed_dictionaries({"url": urlish, "score": st.one_of(st.integers(-10, 10**6), json_values)},
                                    optional={k: json_values for k in FIELDS[2:]})


def _dump(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode("utf-8")


json_lines = st.one_of(submissions.map(_dump), json_values.map(_dump))
# \\ud800 as a JSON escape: valid JSON, a str that cannot be encoded (the lone surrogate)
surrogate_lines = st.builds(lambda field, s: _dump({"url": "https://example.com/", "score": 5,
                                                     field: s}).replace(b"@@", b"\\ud800"),
                            st.sampled_from(["url", "subreddit", "id", "name"]), st.just("x@@y"))
raw_lines = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" "))
mutated = json_lines.flatmap(lambda line: st.tuples(st.just(line), st.integers(0, max(0, len(line) - 1)),
                                                    st.binary(min_size=1, max_size=3)))
mutated_lines = mutated.map(lambda t: (t[0][:t[1]] + t[2] + t[0][t[1] + 1:]).replace(b"\n", b" "))
lines = st.one_of(json_lines, raw_lines, mutated_lines, surrogate_lines)


def check(line_list, frames_at):
    """The properties over one dump made of `line_list`, cut into zstd frames at `frames_at`."""
    text = b"\n".join(line_list) + b"\n"
    cuts = sorted({min(c, len(text)) for c in frames_at} | {0, len(text)})
    data = zst([text[a:b] for a, b in zip(cuts, cuts[1:])])
    outs, counts = read_dump(data)
    expected = sum(1 for line in text.split(b"\n") if line.strip())
    subs = [o for o in outs if isinstance(o, Submission)]
    drops = [o for o in outs if isinstance(o, Drop)]
    assert len(subs) + len(drops) == len(outs)
    assert {d.reason for d in drops} <= {"malformed_line"}
    assert counts["in"] == expected == len(outs)
    assert counts["out"] == len(subs) and counts["drop.malformed_line"] == len(drops)
    for s in subs:    # what is kept must survive the next stages' UTF-8 writes (URL, subreddit, id)
        assert all(utf8_clean(x) for x in (s.url, s.subreddit, s.id, s.source)), s
    for d in drops:
        assert utf8_clean(d.detail) and utf8_clean(d.url), d


@given(st.lists(lines, min_size=1, max_size=8), st.lists(st.integers(0, 2000), max_size=3))
@example([b'{"url": "https://example.com/", "score": 5}', b"", b"\xff\xfe{"], [10])
def test_dump_lines_are_kept_or_counted(line_list, frames_at):
    check(line_list, frames_at)


@pytest.mark.parametrize("field", ["url", "subreddit", "id"])
def test_lone_surrogate_in_a_field_is_a_malformed_line(field):
    line = b'{"url": "https://example.com/", "score": 5, "%s": "x\\ud800y"}' % field.encode()
    if field == "url":
        line = b'{"url": "https://example.com/\\ud800", "score": 5}'
    check([line], [])


@given(st.lists(submissions.map(_dump), min_size=2, max_size=8), st.integers(1, 7), st.data())
def test_a_bad_later_frame_keeps_the_lines_before_it(line_list, bad, data):
    """One line per frame; frame `bad` is damaged: every line of the frames before it is still a submission."""
    bad = min(bad, len(line_list) - 1)
    frames = [zst([line + b"\n"]) for line in line_list]
    pos = data.draw(st.integers(4, max(4, len(frames[bad]) - 1)))
    frames[bad] = frames[bad][:pos] + bytes([frames[bad][pos % len(frames[bad])] ^ 0xFF]) + frames[bad][pos + 1:]
    outs, counts = read_dump(b"".join(frames))
    assert counts["in"] == counts["out"] + sum(v for k, v in counts.items() if k.startswith("drop."))
    good_before = [json.loads(line) for line in line_list[:bad]]
    kept = [o for o in outs if isinstance(o, Submission)]
    # the lines of intact frames before the damaged one are read as they would be alone
    alone = [o for line in line_list[:bad] for o in read_dump(zst([line + b"\n"]))[0] if isinstance(o, Submission)]
    assert kept[:len(alone)] == alone, (good_before, kept)


def test_a_damaged_second_frame_keeps_the_first_frames_lines():
    first = zst([b'{"url": "https://example.com/a", "score": 5}\n'])
    second = bytearray(zst([b'{"url": "https://example.com/b", "score": 5}\n']))
    second[6] ^= 0xFF
    outs, counts = read_dump(first + bytes(second))
    assert [o.url for o in outs if isinstance(o, Submission)] == ["https://example.com/a"]


@pytest.mark.parametrize("line", [b"\x1c", b"\xc2\x85", b"\xe2\x80\xa8"])
def test_a_url_list_line_of_unicode_whitespace_is_counted_not_fatal(line):
    """A URL list (first line does not start with `{`) whose line is only Unicode whitespace: IndexError on main."""
    check([b"https://example.com/a 5", line], [])
