"""User mistakes get one line that says what to do (exit 2), not a traceback."""
import subprocess
import sys

import pytest

from webtext import main


@pytest.mark.parametrize("argv, message", [
    (["run", "--input", "/nonexistent/RS_2017-11.zst", "--out", "OUT"], "no input file matches"),
    (["run", "--input", "X", "--out", "OUT", "--inptu", "Y"], "unknown option --inptu"),
    (["run", "--input", "X"], "--out"),
    (["run", "--out", "OUT"], "nothing to read"),
    (["run", "--input", "X", "--out", "OUT", "--config", "/nonexistent.toml"], "config file"),
    (["run", "--input", "X", "--out", "OUT", "--set", "links.min_karm=3"], "unknown config key"),
    (["extract", "--warc", "/nonexistent", "--out", "OUT"], "WARC directory"),
    (["run", "--input", "X", "--out", "X"], "is a file"),
    (["run", "--input", "X", "--out", "OUT", "--warc-dir", "X"], "WARC directory X is a file"),
    (["run", "--input", "X", "--out", "OUT", "--runner", "NoSuchRunner"], "Unexpected pipeline runner"),
    (["run", "--input", "X", "--out", "OUT", "--set", "fetch.min_delay=-1"], "min_delay"),
    (["run", "--input", "X", "--out", "OUT", "--http-proxy", "notaurl"], "http_proxy"),
    (["run", "--input", "X", "--out", "OUT", "--set", "extract.timeout=-1"], "timeout"),
    (["frobnicate"], "unknown command"),
])
def test_one_line_errors(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "X").write_text("http://example.com/\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "webtext", "run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--http-proxy" in out.stdout and "--runner" in out.stdout
