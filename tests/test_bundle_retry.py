"""A fetch bundle that fails once and is retried, on a runner that really retries bundles (Beam's
BundleBasedDirectRunner; FnApiRunner fails the job instead). The failure comes after the bundle fetched
everything, so the retry fetches it all again: the shards must still be the local runner's byte for byte and
the data-derived account (stats.json's from_data) exact, while the metrics, which this runner commits for the
failed attempt too, count the retried work twice; stats.json names that disagreement."""
import hashlib
from collections import defaultdict

from apache_beam.options.pipeline_options import PipelineOptions

from crawl.fetch import transform as fetch_beam
from pipeline.demo.web import build_demo
from pipeline.demo.run import demo_config
from pipeline.runner import run

FAILED = []


def _digests(out):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("data/*.arrow"))}


def test_fetch_bundle_failing_once_is_retried_without_changing_the_output(tmp_path, monkeypatch):
    finish = fetch_beam._FetchHosts.finish_bundle

    def fail_once(self):
        yield from finish(self)
        if not FAILED:
            FAILED.append(self)
            raise RuntimeError("injected: the worker died after fetching its bundle")

    demo = build_demo(tmp_path / "web")
    with demo.web:
        cfg = demo_config(demo.dump_path, demo.web.proxy_url, quiet=True)
        local = run(cfg, str(tmp_path / "local"), PipelineOptions(["--runner=FnApiRunner"]), echo=lambda *a: None)
        n_local = len(demo.web.log)
        monkeypatch.setattr(fetch_beam._FetchHosts, "finish_bundle", fail_once)
        retried = run(cfg, str(tmp_path / "retried"), PipelineOptions(["--runner=BundleBasedDirectRunner"]),
                      echo=lambda *a: None)
        n_retried = len(demo.web.log) - n_local
        retry_log = list(demo.web.log)[n_local:]

    assert FAILED, "the injected failure did not happen"
    assert _digests(tmp_path / "retried") == _digests(tmp_path / "local")
    assert retried["from_data"] == local["from_data"] and local["metrics_vs_data"] == []
    # every page was fetched twice (the failed attempt, then the retry) ...
    assert n_retried > 1.5 * n_local, (n_retried, n_local)
    # ... each host still seeing one request per delay, across the failed attempt and its retry
    starts = defaultdict(list)
    for t, _, host, _ in retry_log:
        starts[host].append(t)
    gaps = {h: min(b - a for a, b in zip(ts, ts[1:])) for h, ts in starts.items() if len(ts) > 1}
    assert min(gaps.values()) >= cfg.fetch.min_delay, gaps
    # ... and the failed attempt's counts were committed too: balanced per stage, yet named as disagreeing
    assert retried["stages"]["fetch"]["in"] > local["stages"]["fetch"]["in"] and retried["unbalanced"] == []
    assert any(line.startswith("fetch: metrics count") for line in retried["metrics_vs_data"])
