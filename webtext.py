"""`webtext`: one command for the whole path.

    webtext demo                         the whole pipeline on the embedded demo web (offline)
    webtext run --input RS_*.zst --out DIR [--config FILE.toml] [--http-proxy URL] [Beam options]
    webtext run --reddit SUB[,SUB] --out DIR    (live harvest through praw)
    webtext run --input RS_2019-02.zst --add-to DIR   (a new month into a corpus built before, deduplicated against it)
    webtext extract --warc DIR --out DIR        (documents and shards again from captured WARCs, no network)
    webtext plan --input RS_*.zst [--config FILE.toml]   links, hosts, largest hosts, the crawl's least time
    webtext shards ls|stats|show|verify|export|overlap ...
    webtext config [--markdown]                 every config key with its default, type and meaning
    webtext train ... / webtext sample ... / webtext eval ... / webtext export-hf ...
    webtext --version
In Python, `webtext.tokenizer()` is the GPT-2 tokenizer the shards were written with (offline; a tiktoken Encoding).
A user mistake prints one line starting with "error:" and exits 2.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import List, Optional

USAGE = __doc__.split("\n", 2)[2]


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _quiet_imports():
    # Beam's optional GCP client probe logs a warning on import that says nothing to a user of this tool.
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger().addFilter(lambda record: "apitools" not in record.getMessage())
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _descendants() -> List[int]:
    """Every process below this one (extraction workers sit under a forkserver), read from /proc (Linux)."""
    children: dict = {}
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
    except OSError:   # no /proc: the children multiprocessing knows of
        import multiprocessing
        return [p.pid for p in multiprocessing.active_children()]
    out, todo = [], [os.getpid()]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


_WHAT = None   # what the interrupt line tells the user to do next


def exit_on_interrupt(what: str) -> None:
    """Ctrl-C (SIGINT) or SIGTERM: one line, the child processes ended, exit 130 (143) within a moment.

    Left to itself, Beam catches the KeyboardInterrupt in its bundle threads, logs ~100 lines, waits ~10 s and
    exits 1, and the extraction processes and fetch threads keep the process alive meanwhile. Nothing needs an
    orderly shutdown: every output is written whole or not at all (core/files.py), fetch outcomes are committed
    in closed WARC files, and the next run into the same --out removes the leftovers. The signal is handled on
    a thread woken through signal.set_wakeup_fd, so it acts even while the main thread sits in C code."""
    global _WHAT
    first, _WHAT = _WHAT is None, what
    if not first or threading.current_thread() is not threading.main_thread():
        return   # installed once per process; signals reach only the main thread's handlers
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)   # a Python handler makes the C handler write the fd

    def watch():
        while True:
            for signum in os.read(read_fd, 64):
                if signum in (signal.SIGINT, signal.SIGTERM):
                    name = "interrupted" if signum == signal.SIGINT else "terminated"
                    try:
                        sys.stdout.flush()
                    except (OSError, ValueError):
                        pass
                    sys.stderr.write(f"error: {name}; {_WHAT}\n")
                    sys.stderr.flush()
                    for pid in _descendants():
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    os._exit(128 + signum)

    threading.Thread(target=watch, name="webtext-interrupt", daemon=True).start()


def cmd_run(argv: List[str], warc: bool = False) -> int:
    from core.settings import UsageError
    from pipeline import engines
    from pipeline.options import config_from, help_text, parse
    from pipeline.runner import RunFailed, run

    if "-h" in argv or "--help" in argv:
        print(help_text("webtext extract" if warc else "webtext run"))
        return 0
    try:
        options, ours = parse(argv)
        if warc and not ours.warc:   # `webtext extract --warc DIR`: pages from WARCs instead of the network
            return _fail("give the captured WARC directory: webtext extract --warc DIR --out DIR")
        if not warc and ours.warc:
            return _fail("--warc belongs to `webtext extract`; to capture WARCs during a run, use --warc-dir DIR")
        if warc and not Path(ours.warc).is_dir():
            return _fail(f"WARC directory {ours.warc} not found; point --warc at a run's --warc-dir")
        options = engines.prepare(options)   # FlinkRunner/SparkRunner: the job-server jar `make engines` fetched
        if ours.add_to and (ours.out or warc):
            return _fail("--add-to CORPUS writes into that corpus: give it instead of --out (and not with extract)")
        if not ours.out and not ours.add_to:
            return _fail("give an output directory with --out DIR (or a corpus to grow with --add-to DIR)")
        cfg = config_from(ours, require_input=not warc)
        kept = " (pages already fetched are kept in the --warc-dir)" if cfg.fetch.warc_dir else ""
        exit_on_interrupt(f"no file was left half-written; to continue{kept}, rerun: "
                          f"{_command('extract' if warc else 'run', argv)}")
        result = run(cfg, ours.out, options, warc_input=ours.warc if warc else None, overwrite=ours.overwrite,
                     add_to=ours.add_to)
        if result.get("already_added"):
            return 0
    except UsageError as e:
        return _fail(str(e))
    except RunFailed as e:
        where = ours.out or ours.add_to
        listed = f"; examples of every drop are in {where}/_drops/" if Path(where, "_drops").is_dir() else ""
        print(f"error: {e}{listed}", file=sys.stderr)
        return 1
    print(next_steps(ours.out or ours.add_to, cfg, argv))
    return 0


def _command(name: str, argv: List[str]) -> str:
    """The user's own command line, quoted for a shell: what a hint tells them to run again."""
    return shlex.join(["webtext", name, *argv])


def next_steps(out: str, cfg, argv: List[str]) -> str:
    """What to run next, for what the run produced: shards, or (run.stop_after = links) only stats and drops."""
    if cfg.run.stop_after != "links":
        return (f"\nshards: {out}   next: webtext shards stats {shlex.quote(out)}   webtext train --data "
                f"{shlex.quote(out)} --out {shlex.quote(str(Path(out, 'train')))}")
    drops = f", dropped-link examples in {out}/_drops/" if Path(out, "_drops").is_dir() else ""
    return (f"\nlinks only (run.stop_after = {cfg.run.stop_after}): nothing was fetched and no shards were written; "
            f"the counts are in {out}/stats.json{drops}.\n"
            f"next: {_command('plan', _plan_argv(argv))}   (hosts and the crawl's least time); "
            "to crawl, run it again with run.stop_after unset")


def _plan_argv(argv: List[str]) -> List[str]:
    """A links-only run's arguments as `webtext plan` takes them: without --out, --overwrite, run.stop_after."""
    out, i = [], 0
    while i < len(argv):
        a, value = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        if a in ("--out", "--set") and (a == "--out" or value.startswith("run.stop_after=")):
            i += 2
            continue
        if not (a == "--overwrite" or a.startswith(("--out=", "--set=run.stop_after="))):
            out.append(a)
        i += 1
    return out


def tokenizer():
    """GPT-2's tokenizer as the shards use it, offline: a tiktoken Encoding built from the cached vocabulary
    (`tiktoken.get_encoding("gpt2")` would download it). A document's tokens are
    `enc.encode_ordinary(text) + [enc.eot_token]`; `enc.decode(tokens)` is the text again."""
    from core.tokenizer import get_encoding
    return get_encoding()


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed
    try:
        return installed("webtext")
    except PackageNotFoundError:   # run from a checkout that was never installed
        return "0.1.0 (not installed)"


def _train_section():
    try:
        from train.config import TrainConfig   # needs torch (the [train] extra)
    except ImportError:
        return ()
    return (("train", TrainConfig),)


def cmd_demo(argv: List[str]) -> int:
    from pipeline.demo.run import main as demo_main
    if not ("-h" in argv or "--help" in argv):
        exit_on_interrupt(f"to continue, rerun: {_command('demo', argv)}")
    return demo_main(argv)


def console() -> None:
    """The `webtext` command (console script and `python -m webtext`): main(), then an exit that skips the
    interpreter's own teardown. After a run the heap holds millions of objects (Beam's pipeline, the runner's
    stages), and the final garbage collection and module teardown cost ~0.4 s after a 1-line run and ~1 s after
    10^4 documents, with nothing left to do: every file webtext writes is closed and renamed into place before
    main() returns. The hook is registered first, so it runs last, after every other exit handler (logging's
    flush, multiprocessing's child clean-up, the executors' joins); tests that call main() never install it."""
    import atexit
    code = [1]   # an exception that escapes main(): Python's own code for it

    def exit_now():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):   # a closed pipe or stream: nothing more can reach the reader
                pass
        os._exit(code[0])

    atexit.register(exit_now)
    try:
        code[0] = main()
    except SystemExit as e:   # sys.exit() inside a command (argparse): its code, as Python would give it
        code[0] = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        raise
    sys.exit(code[0])


def main(argv: Optional[List[str]] = None) -> int:
    """The console script's work. A reader that closes the pipe early (`webtext config | head -1`) ends it quietly."""
    try:
        code = _main(argv)
        sys.stdout.flush()   # buffered output meets a closed pipe here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        try:   # nothing more can reach the reader; later writes (and the exit's flush) go nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0


def _main(argv: Optional[List[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "version"):
        print(f"webtext {version()}")
        return 0
    command, rest = argv[0], argv[1:]
    _quiet_imports()
    try:
        if command == "run":
            return cmd_run(rest)
        if command == "extract":
            return cmd_run(rest, warc=True)
        if command == "demo":
            return cmd_demo(rest)
        if command == "plan":
            from core.settings import UsageError
            from pipeline.plan import main as plan_main
            try:
                return plan_main(rest)
            except UsageError as e:
                return _fail(str(e))
        if command == "shards":
            from pipeline.shards.cli import main as shards_main
            return shards_main(rest)
        if command == "config":
            from pipeline.reference import main as config_main
            # the trainer's keys need torch (slow to import): only where they are printed
            return config_main(rest, extra=_train_section() if {"--train", "--markdown"} & set(rest) else ())
        if command in ("train", "sample", "eval", "export-hf"):
            try:
                import torch  # noqa: F401
            except ImportError:
                return _fail("training needs torch: pip install 'webtext[train]' (or `make install`)")
            if command == "train":
                from train.train import main as train_main
                return train_main(rest)
            if command == "eval":
                from train.eval import main as eval_main
                return eval_main(rest)
            if command == "export-hf":
                from train.export_hf import main as export_hf_main
                return export_hf_main(rest)
            from train.sample import main as sample_main
            return sample_main(rest)
    except KeyboardInterrupt:   # before a run's own handler is installed (e.g. while importing)
        print("error: interrupted", file=sys.stderr)
        return 130
    return _fail(f"unknown command {command!r}; commands: demo, run, extract, plan, shards, config, train, sample, "
                 "eval, export-hf")


if __name__ == "__main__":
    console()
