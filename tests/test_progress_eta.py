"""The long stages say where the end is: the fetch's progress in a pipe has its total and an ETA (plain lines),
a worker sharing a stage says so, a rerun from --warc-dir says what it resumes, and the run's summary and
stats.json give every stage's wall time."""
import json
import re

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

import core.progress
from conftest import beam_pipeline
from core.progress import stage_bar, workers_of
from core.records import Step
from crawl.fetch.fetcher import FetchConfig
from crawl.fetch.transform import FetchPages
from core.records import Link
from pipeline.demo.loopback import LoopbackWeb
from pipeline.stats import format_table, stage_stats, stage_times

N = 6


def _link(url):
    return Link(url, url.split("/")[2], 5, ("science",), 1_400_000_000, 1)


def _fetch(links, cfg):
    p = beam.Pipeline(runner=FnApiRunner())
    _ = p | beam.Create(links) | FetchPages(cfg, quiet=False)
    p.run().wait_until_finish()


def test_fetch_progress_has_total_and_eta_and_a_rerun_says_it_resumes(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(core.progress, "PLAIN_INTERVAL", 0.0)      # a line per page
    urls = [f"http://eta{i % 2}.example/{i}" for i in range(N)]
    with LoopbackWeb() as web:
        for url in urls:
            web.add(url, f"<html><body><p>Page {url}.</p></body></html>")
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, max_retries=0, warc_dir=str(tmp_path / "warc"))
        _fetch([_link(u) for u in urls], cfg)
        first = capfd.readouterr().err
        assert "\r" not in first and "\x1b" not in first
        lines = [l for l in first.splitlines() if l.startswith("fetch: ")]
        assert any(re.match(rf"fetch: [1-5]/{N} url \(.*, ETA \d+:\d\d", l) for l in lines), first
        assert lines[-1].startswith(f"fetch: {N}/{N} url") and lines[-1].endswith(" done")
        assert "resuming" not in first                                  # nothing to resume the first time

        _fetch([_link(u) for u in urls] + [_link("http://eta0.example/new")], cfg)
        again = capfd.readouterr().err
    assert f"resuming: {N} of {N + 1} links already fetched" in again and "1 to fetch" in again
    assert re.search(r"^fetch: 1/1 url .* done$", again, re.M)          # the total is what is left to fetch


def test_a_worker_sharing_a_stage_says_so_without_a_false_eta(capsys):
    assert workers_of(PipelineOptions(["--runner=FnApiRunner"])) == 1
    assert workers_of(PipelineOptions(["--direct_num_workers=2"])) == 2
    assert workers_of(PipelineOptions(["--runner=DataflowRunner"])) is None
    assert workers_of(PipelineOptions(["--runner=PrismRunner"])) is None    # several bundles of a stage at once
    bar = stage_bar("fetch", 1000, 2, unit="url", file=__import__("sys").stdout)
    bar.interval = 0.0
    bar.update(10)
    bar.close()
    out = capsys.readouterr().out
    assert out.startswith("fetch (this worker's share of 1,000 in all): 10 url (") and "ETA" not in out


class _Slow(Step):
    stage = "fetch"

    def process(self, x):
        import time
        self.count("in")
        time.sleep(0.4)
        yield from self.emit(x)


def test_stage_times_from_first_to_last_activity():
    import time
    start = time.time()
    p = beam_pipeline()
    _ = p | beam.Create([1, 2, 3]) | beam.ParDo(_Slow())
    result = p.run()
    result.wait_until_finish()
    times = stage_times(result, start)
    assert 0.7 <= times["fetch"]["seconds"] <= 5 and times["fetch"]["start"] >= 0
    table = format_table(stage_stats({"fetch.in": 3, "fetch.out": 3}), times, 12.0)
    assert re.search(r"^fetch +3 +3 +0 +0:0[01] ", table, re.M) and "total time 0:12" in table


def test_run_writes_stage_times_to_stats_json(tmp_path):
    from pipeline.config import load_config
    from pipeline.runner import run
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"http://times.example/{i} 5\n" for i in range(50)))
    cfg = load_config(None, {"run": {"inputs": [str(urls)], "stop_after": "links", "quiet": True}})
    shown = []
    run(cfg, str(tmp_path / "out"), PipelineOptions(["--runner=FnApiRunner"]), echo=shown.append)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    times = stats["stage_seconds"]
    assert {"source", "links"} <= set(times)
    for t in times.values():
        assert 0 <= t["start"] <= t["end"] <= stats["seconds"] + 0.2 and abs(t["seconds"] - (t["end"] - t["start"])) < 0.15
    assert "total time" in shown[0] and " time " in shown[0].splitlines()[0]
