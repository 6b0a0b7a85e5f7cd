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
    (["run", "--input", "D", "--out", "OUT"], "--input D is a directory"),
    (["run", "--input", "X", "--out", "OUT", "--direct-num-workers", "2"], "underscores: --direct_num_workers"),
    (["run", "--input", "X", "--out", "OUT", "--no-such-thing", "2"], "unknown option --no-such-thing"),
    (["run", "--input", "X", "--out", "OUT", "--listing", "new"], "--reddit SUB"),
    (["run", "--input", "X", "--out", "OUT", "--set", "extract.language=english"], "not 'english'"),
    (["run", "--reddit", "MachineLearning", "--out", "OUT"], "Reddit API credentials missing"),
    (["run", "--input", "X", "--out", "MINE"], "--out MINE is not empty and holds no webtext run"),
])
def test_one_line_errors(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    for var in ("praw_client_id", "praw_client_secret", "praw_user_agent"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))   # no ~/.config/praw.ini
    (tmp_path / "X").write_text("http://example.com/\n")
    (tmp_path / "D").mkdir()
    (tmp_path / "MINE").mkdir()
    (tmp_path / "MINE" / "notes.txt").write_text("a user's file\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "webtext", "run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--http-proxy" in out.stdout and "--runner" in out.stdout


def test_the_command_exits_with_mains_code_and_all_its_output(capsys):
    """The console entry ends with os._exit (no interpreter teardown): its exit code and its output must still be
    main()'s, for a code main() returns, for a sys.exit() inside a command (argparse) and through a pipe."""
    def command(*argv):
        return subprocess.run([sys.executable, "-m", "webtext", *argv], capture_output=True, text=True)
    out = command("config")
    assert out.returncode == 0
    assert main(["config"]) == 0 and out.stdout == capsys.readouterr().out   # every byte reached the pipe
    out = command("nonsense")
    assert out.returncode == 2 and out.stderr.startswith("error: unknown command")
    out = command("shards", "stats", "--help")      # argparse's own sys.exit(0) after its help
    assert out.returncode == 0 and "DIR" in out.stdout

    def console_with(main_body):
        return subprocess.run([sys.executable, "-c", f"import sys, webtext\ndef main():\n    {main_body}\n"
                               "webtext.main = main\nwebtext.console()"], capture_output=True, text=True)
    assert console_with("sys.exit(3)").returncode == 3
    out = console_with("print('partial'); 1 / 0")
    assert out.returncode == 1 and "ZeroDivisionError" in out.stderr and out.stdout == "partial\n"   # Python's code


def test_gs_input_without_the_gcp_extra_names_the_extra(capsys):
    pytest.importorskip("apache_beam")
    try:
        import apache_beam.io.gcp.gcsfilesystem  # noqa: F401
        pytest.skip("the GCP extra is installed here")
    except ImportError:
        pass
    assert main(["run", "--input", "gs://bucket/RS_2017-*.zst", "--out", "gs://bucket/out"]) == 2
    err = capsys.readouterr().err.strip()
    assert "apache-beam[gcp]" in err and "\n" not in err and "no input file matches" not in err


def test_language_codes_are_the_models():
    import py3langid.langid as langid
    from crawl.text.extract import PY3LANGID_LANGUAGES
    model = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE)
    assert PY3LANGID_LANGUAGES == set(model.nb_classes)


def test_rejected_reddit_credentials_found_on_a_worker_are_one_line(tmp_path, monkeypatch, capsys):
    import praw.config
    from reddit_api import RedditAPI
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(praw.config.Config, "CONFIG", None)
    with RedditAPI() as api:
        for key, value in (("praw_client_id", api.client_id), ("praw_client_secret", "wrong-secret"),
                           ("praw_user_agent", "webtext-tests/0.1")):
            monkeypatch.setenv(key, value)
        (tmp_path / "webtext.toml").write_text(f'[reddit]\noauth_url = "{api.url}"\nreddit_url = "{api.url}"\n')
        code = main(["run", "--reddit", "programming", "--config", "webtext.toml", "--out", "out", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: Reddit rejected the client credentials") and "\n" not in err, err
