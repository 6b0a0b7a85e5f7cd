"""Progress in a log or a pipe is plain lines (no carriage returns, no cursor codes), with ETA when the total is
known; --quiet prints nothing."""
import io

from core.progress import PlainProgress, progress_bar


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    bar = progress_bar("fetch", total=200, unit="url", file=out)
    assert isinstance(bar, PlainProgress)
    bar.interval = 0.0
    for _ in range(100):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 101 and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[49].startswith("fetch: 50/200 url (") and "ETA " in lines[49]
    assert lines[-1].startswith("fetch: 100/200 url") and lines[-1].endswith(" done")


def test_quiet_prints_nothing_and_lines_are_spaced():
    out = io.StringIO()
    with progress_bar("extract", unit="page", quiet=True, file=out) as bar:
        bar.update(5)
    assert out.getvalue() == ""
    with progress_bar("extract", unit="page", file=out) as bar:   # default interval: no line for a quick phase
        for _ in range(1000):
            bar.update(1)
    assert out.getvalue().count("\n") == 1 and "1,000 page" in out.getvalue()
