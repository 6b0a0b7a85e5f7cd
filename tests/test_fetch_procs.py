"""The fetch in child processes (crawl/fetch/procs.py): requests leave from another process than the one running
Beam's bundles, a killed fetch process loses no link (each ends counted), and the runner turns it on where one
process would otherwise run every bundle and fetch thread."""
import os
import signal

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from crawl.fetch.config import FetchConfig
from crawl.fetch.procs import DIED
from pipeline.config import Config, load_config
from pipeline.demo.loopback import LoopbackWeb
from pipeline import runner
from conftest import link_for, respond_html, run_fetch


def _html(text):
    return f"<!doctype html><html><body><p>{text}</p></body></html>"


def _socket_owner(local_port: int) -> int:
    """The pid holding the loopback client socket whose local port is `local_port` (0 if none is found)."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            # established (01) and owned (a closed connection's TIME_WAIT line has inode 0 and may share the port)
            if int(parts[1].split(":")[1], 16) == local_port and parts[3] == "01" and parts[9] != "0":
                inode = parts[9]
                break
    if inode is None:
        return 0
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
        except OSError:
            continue
    return 0


def _process_name(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc to find a socket's process")
@pytest.mark.parametrize("processes", [0, 1])
def test_requests_leave_from_a_fetch_process(processes):
    owners, names = [], set()

    def who(handler, url):
        owners.append(_socket_owner(handler.client_address[1]))
        names.add(_process_name(owners[-1]) if owners[-1] else "?")
        respond_html(handler, _html(f"served to {owners[-1]}"))

    with LoopbackWeb() as web:
        web.add_handler("http://who.example/", who)
        links = [link_for(f"http://who.example/p{i}") for i in range(3)]
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0, read_timeout=5, robots=False, processes=processes)
        pages, drops, counters = run_fetch(links, cfg, f"who{processes}")
    assert len(pages) == 3 and not drops and len(owners) == 3
    if processes == 0:                 # the threads of the process that runs the bundle
        assert set(owners) == {os.getpid()}
    else:                              # another process, named for ps/top: the bundle's process sent nothing
        assert os.getpid() not in owners and 0 not in owners
        assert names == {"webtext-fetch"}


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc to find a socket's process")
def test_a_killed_fetch_process_loses_no_link():
    """The fetch process is SIGKILLed while it waits for a response: every link it had not reported ends as a
    counted fetch_error naming the cause, the others are pages, and the counters add up."""
    killed = []

    def killer(handler, url):
        if not killed:
            pid = _socket_owner(handler.client_address[1])
            assert pid and pid != os.getpid()
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)
            return                      # the response goes nowhere: its reader is gone
        respond_html(handler, _html("late"))

    with LoopbackWeb() as web:
        links = []
        for h in range(3):
            for i in range(3):
                url = f"http://ok{h}.example/a{i}"
                web.add(url, _html(url))
                links.append(link_for(url))
        web.add_handler("http://doomed.example/", killer)
        links += [link_for(f"http://doomed.example/d{i}") for i in range(4)]
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.2, read_timeout=5, robots=False, processes=1,
                          global_concurrency=4)
        pages, drops, counters = run_fetch(links, cfg, "killed")
    assert killed
    urls = [p.link.url for p in pages] + [d.url for d in drops]
    assert sorted(urls) == sorted(l.url for l in links)              # each link once: nothing lost, nothing twice
    died = [d for d in drops if d.reason == "fetch_error" and d.detail == DIED]
    assert {d.url for d in died} >= {f"http://doomed.example/d{i}" for i in range(4)}
    assert counters["fetch.in"] == len(links) == counters["fetch.out"] + sum(
        v for k, v in counters.items() if k.startswith("fetch.drop."))
    assert counters["fetch.drop.fetch_error"] == len(died)


@pytest.mark.parametrize("argv,cores,expected", [
    ([], 2, 1),                                                     # the default local runner: off the bundle's GIL
    ([], 1, 0),                                                     # one core: a child would only add the pipe
    (["--direct_num_workers=2"], 2, 0),                             # several workers: each has its own GIL
    (["--runner=PrismRunner"], 4, 0),                               # bundles in parallel, each its own fetch
    (["--runner=DataflowRunner"], 4, 0),
])
def test_the_runner_decides_the_fetch_processes(monkeypatch, argv, cores, expected):
    monkeypatch.setattr(runner, "default_processes", lambda: cores)
    opts = PipelineOptions(argv)
    if not any(a.startswith("--runner") for a in argv):
        opts = PipelineOptions(["--runner=FnApiRunner", *argv])
    assert runner.resolve_processes(Config(), opts).fetch.processes == expected
    explicit = load_config(overrides={"fetch": {"processes": 3}})
    assert runner.resolve_processes(explicit, opts).fetch.processes == 3
