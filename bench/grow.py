"""Growing a corpus vs building the new month alone (issue #18: adding 10^4 documents to a 10^5-document corpus
takes <= 1.3x the time and <= 1.3x the peak memory of building those 10^4 alone), measured in one run.

    python bench/grow.py [--corpus 1e5] [--add 1e4] [--repeat N] [--seed 1] [--phases] [--keep] [--json FILE]
                         [any Beam option, e.g. --direct_num_workers 2]

  1. Two synthetic months (bench/synth.py, through bench/scale.py's dump cache): month 1 with ~CORPUS eligible
     article URLs; month 2 with ~ADD *new* eligible article URLs, written as the continuation of month 1
     (`write_dump(prior=month 1's article URLs, start=month 1's submissions)`: its submission ids, times and
     article ids go on after month 1's) plus the overlap a real next month has:
       - reposts: synth's usual 8% of link posts repost an article URL posted before, drawn uniformly from all
         article URLs so far, so nearly all from month 1 (~10x more of them): ~15% of month 2's article
         submissions. Those month 1 fetched are fetch drops `already_in_corpus` when added; the others (karma
         < 3 in month 1) are new links to both runs.
       - copies at new URLs: the web serves month 2's new article ids (>= month 1's count, `serve --older-below`)
         5% as exact and 5% as near copies (~10% of sentences edited) of a random month-1 article (syndication,
         mirrors, scrapers: the cross-month share of the within-month 3% + 3% synth already plants, which month 2
         keeps too). About 40% of month-1 ids were kept in the corpus (the others: karma < 3, 404s, ...), so ~4%
         of month 2's pages are duplicates of corpus documents.
  2. The month-1 corpus: `webtext run --input m1 --out corpus` (time and peak reported, compared with nothing).
  3. --repeat times, alternating the order (A,B then B,A ...) against drift on a shared machine:
       (A) `webtext run --input m2 --out fresh`          the new month alone
       (B) `webtext run --input m2 --add-to grown`       grown = a fresh copy of the corpus (copied untimed)
     each as bench/scale.py runs it (fetch.min_delay=0, fetch.proxy_dns_only=true, every process of its tree
     sampled for peak RSS = VmHWM and CPU), against the same web process.
  4. Per run: wall, total CPU, main-process peak RSS, the peak of any process, Beam's part of the wall (stats.json
     `seconds`; the rest is start-up, the index writing and, for B, the commit), per-stage seconds; what B did
     (documents added, already_in_corpus, dedup drops whose survivor is a corpus document, from
     <grown>/_generations/00001/stats.json and its _drops/), the disk size of the corpus's _index/; then a
     summary table, ratios B/A first (median over the pairs when --repeat > 1).
  --phases: one more A and B (not in the ratios) through a driver that runs the same `webtext run` with the steps
     an addition adds timed inside its process (the local runner runs the dedup stages there): prepare, the
     sketch index load and the CorpusMatches lookups (dedup.index.old_entries), the URL index, the new
     generation's index writing, the commit, the dataset card.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

BENCH = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("webtext_bench_scale", BENCH / "scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)       # puts the repository first on sys.path, loads bench/synth.py
synth = scale.synth
log = scale.log

GOAL = 1.3

# `--phases`: one more A and B, each through this driver instead of `python -m webtext`: the same command, with the
# steps an addition adds (or that grow with the corpus) timed in the run's own process. Beam's local runner runs
# the dedup stages in that process, so the module attributes patched here are what its DoFns call.
PHASES = r"""
import json, os, sys, threading, time
t0 = time.perf_counter()
MEM = {}   # peak of each of these in this process (kB), sampled: is a difference anonymous memory or mapped files?

def sample():
    while True:
        with open("/proc/self/status") as f:
            for line in f:
                k = line.split(":")[0]
                if k in ("VmHWM", "RssAnon", "RssFile"):
                    MEM[k] = max(MEM.get(k, 0), int(line.split()[1]))
        time.sleep(0.1)

threading.Thread(target=sample, daemon=True).start()
sys.argv[0] = "webtext"
import webtext
from crawl import seen
from dedup import index as di, transform as dt
from pipeline import corpus, runner
T = {"imports": time.perf_counter() - t0}
N = {}
ORDER = ["imports"]

def timed(mod, name, key=None, consume=False):
    f = getattr(mod, name)
    key = key or name
    ORDER.append(key)
    def w(*a, **k):
        t = time.perf_counter()
        try:
            return list(f(*a, **k)) if consume else f(*a, **k)
        finally:
            T[key] = T.get(key, 0.0) + time.perf_counter() - t
            N[key] = N.get(key, 0) + 1
    setattr(mod, name, w)

timed(corpus, "prepare", "prepare (lock, checks)")
timed(corpus, "index_generation", "index_generation (sketch + URL index of the new generation)")
timed(di, "write", "  of which dedup.index.write")
timed(seen, "merge", "  of which seen.merge (urls.npy)")
timed(corpus, "commit", "commit (move shards, manifest)")
timed(runner, "write_card", "write_card (dataset card over every shard)")
timed(runner, "build", "build (pipeline graph)")
timed(dt, "open_corpus", "open_corpus (sketch index load; cached after the first call)")
timed(di.SketchIndex, "__init__", "  of which SketchIndex opened")
timed(dt, "old_entries", "old_entries (CorpusMatches lookups, per new document)", consume=True)
timed(seen.SeenLinks, "__init__", "SeenLinks load (URL index)")
timed(seen.SeenLinks, "__contains__", "SeenLinks lookups (per link)")
code = webtext.main(sys.argv[1:])
T["total in process"] = time.perf_counter() - t0
ORDER.append("total in process")
MAPS = {}
MAPPED = {}   # resident kB of the corpus's index files still mapped at the end (open_corpus keeps them open)
path = None
with open("/proc/self/smaps") as f:
    for line in f:
        head = line.split()
        if not head[0].endswith(":"):   # a mapping's first line: address range, perms, offset, dev, inode[, path]
            path = head[5] if len(head) >= 6 and "/_index/" in head[5] else None
        elif path and line.startswith("Rss:"):
            key = "/".join(path.split("/")[-2:])
            MAPPED[key] = MAPPED.get(key, 0) + int(head[1])
            MAPS[key] = MAPS.get(key, 0) + 1
with open(os.environ["GROW_PHASES"], "w") as f:
    json.dump({"seconds": T, "calls": N, "order": ORDER, "mem_mb": {k: v / 1024 for k, v in MEM.items()},
               "index_resident_mb": {k: round(v / 1024, 1) for k, v in sorted(MAPPED.items()) if v},
               "index_mappings": MAPS}, f)
sys.exit(code)
"""


# --------------------------------------------------------------------------------------- inputs
def article_urls(dump: Path) -> List[str]:
    """Month 1's article URLs in article-id order (synth: the id is the number at the end of the path)."""
    import zstandard
    by_id: Dict[int, str] = {}
    with open(dump, "rb") as f:
        for line in io.BufferedReader(zstandard.ZstdDecompressor(max_window_size=2 ** 31).stream_reader(f), 1 << 20):
            url = json.loads(line)["url"].split("?", 1)[0]
            m = synth._AID.search(url)
            if m and "/files/" not in url and url.startswith("http://"):
                by_id.setdefault(int(m.group(1)), url)
    urls = [by_id.get(i) for i in range(len(by_id))]
    if None in urls:
        raise SystemExit(f"{dump}: article ids are not 0..{len(by_id) - 1}; not a bench/synth.py dump?")
    return urls


def month_two(work: Path, seed: int, m1: Path, m1_counts: dict, add: int):
    """Month 2's dump (cached beside month 1's) and month 1's number of article ids (the web's --older-below)."""
    path = work / f"{m1.stem}_then_docs{add}.zst"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        counts = json.loads(meta.read_text())
        return path, counts, counts["first_aid"]
    t = time.perf_counter()
    prior = article_urls(m1)
    counts = synth.write_dump(str(path), seed, docs=add, prior=prior, start=m1_counts["submissions"])
    counts["gen_seconds"] = round(time.perf_counter() - t, 2)
    meta.write_text(json.dumps(counts))
    log(f"  generated {path.name}: {counts['submissions']:,} submissions, {counts['eligible_article_urls']:,} new "
        f"eligible article URLs + {counts['eligible_prior_urls']:,} eligible reposts of month-1 URLs, "
        f"{counts['gen_seconds']} s")
    return path, counts, counts["first_aid"]


# --------------------------------------------------------------------------------------- one run
def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def measure(cmd: List[str], log_path: Path, web) -> dict:
    cpu0 = web.cpu_s()
    r = scale.run_tree(cmd, log_path)
    if r["rc"] != 0:
        raise SystemExit(f"run failed (rc {r['rc']}); log: {log_path}")
    roles = scale.peaks_by_role(r["procs"])
    return {"wall": r["wall"], "cpu": sum(p["cpu_s"] for p in r["procs"]),
            "main_mb": roles["main"]["peak_mb"], "main_late_mb": roles["main"].get("late_mb", 0.0),
            "any_mb": max(p["hwm_mb"] for p in r["procs"]),
            "any_role": max(r["procs"], key=lambda p: p["hwm_mb"])["role"],
            "roles": {k: {"n": v["n"], "peak_mb": v["peak_mb"], "cpu_s": v["cpu_s"]} for k, v in roles.items()},
            "web_cpu": web.cpu_s() - cpu0}


def with_stats(res: dict, run_dir: Path) -> dict:
    stats = scale.read_stats(run_dir)
    st = stats.get("stages", {})
    res.update(stats=st, beam_s=stats.get("seconds", 0.0), stage_s={k: v.get("seconds") for k, v in
                                                                     stats.get("stage_seconds", {}).items()},
               kept=st.get("shards", {}).get("out", 0))
    return res


def corpus_dups(run_dir: Path, corpus_ids: set) -> dict:
    """Dedup drop examples in _drops/ by whether their survivor is a document of the corpus."""
    out = {"examples": 0, "of_corpus": 0}
    for f in sorted((run_dir / "_drops").glob("*.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                if d.get("stage") != "dedup":
                    continue
                out["examples"] += 1
                survivor = d.get("detail", "").removeprefix("survivor=").split(" ")[0]
                out["of_corpus"] += survivor in corpus_ids
    return out


def index_ids(corpus: Path) -> set:
    import pyarrow.ipc as ipc
    with open(corpus / "_index" / "00000" / "sketches.arrow", "rb") as f:
        return set(ipc.open_file(f).read_all().column("doc_id").to_pylist())


def phases(m2: Path, corpus: Path, tmp: Path, web, beam_args, runs: str = "AB") -> dict:
    """One more A and B through the PHASES driver: seconds of the steps an addition adds, in the run's process."""
    out = {}
    for which in runs:
        target = tmp / ("phases-alone" if which == "A" else "phases-grown")
        if which == "B":
            shutil.copytree(corpus, target, symlinks=True)
        cmd = scale.webtext_cmd(m2, target, web.url, beam_args)
        if which == "B":
            cmd[cmd.index("--out")] = "--add-to"
        assert cmd[1:3] == ["-m", "webtext"]
        scale.ENV["GROW_PHASES"] = str(tmp / f"phases-{which}.json")
        try:
            log(f"phases {which}: the same command, steps timed in its process ...")
            m = measure([cmd[0], "-c", PHASES, *cmd[3:]], tmp / f"log-phases-{which}", web)
        finally:
            scale.ENV.pop("GROW_PHASES", None)
        m = with_stats(m, target / "_generations" / "00001" if which == "B" else target)
        m["phases"] = json.loads((tmp / f"phases-{which}.json").read_text())
        out[which] = m
        shutil.rmtree(target, ignore_errors=True)
    return out


def phases_report(ph: dict) -> str:
    A, B = ph["A"], ph["B"]
    L = [f"\nwhere the time goes (--phases: one more A and B, steps timed inside the run's process; wall A {A['wall']:.1f} s, "
         f"B {B['wall']:.1f} s; Beam A {A['beam_s']:.1f} s, B {B['beam_s']:.1f} s)",
         f"  {'step':<72} {'A s':>7} {'B s':>7} {'B calls':>8}"]
    keys = B["phases"]["order"]
    for k in keys:
        a, b = A["phases"]["seconds"].get(k), B["phases"]["seconds"].get(k)
        L.append(f"  {k:<72} {'-' if a is None else f'{a:.2f}':>7} {'-' if b is None else f'{b:.2f}':>7} "
                 f"{B['phases']['calls'].get(k, ''):>8}")
    L.append(f"  {'Beam run (stats.json seconds)':<72} {A['beam_s']:>7.2f} {B['beam_s']:>7.2f}")
    L.append("  stage seconds A: " + fmt_stages(A["stage_s"]))
    L.append("  stage seconds B: " + fmt_stages(B["stage_s"]))
    L.append("  main process peaks (sampled every 0.1 s inside it), A / B: " + ", ".join(
        f"{k} {A['phases']['mem_mb'].get(k, 0):.0f} / {B['phases']['mem_mb'].get(k, 0):.0f} MB"
        for k in ("VmHWM", "RssAnon", "RssFile")) + " (RssFile: mapped files, e.g. the memory-mapped indexes)")
    mapped = B["phases"].get("index_resident_mb") or {}
    L.append(f"  B: the corpus's index files resident at the end of the run: {sum(mapped.values()):.1f} MB ("
             + ", ".join(f"{k} {v}" for k, v in mapped.items()) + "); mappings per file: "
             + ", ".join(f"{k} {v}" for k, v in (B["phases"].get("index_mappings") or {}).items()))
    return "\n".join(L)


# --------------------------------------------------------------------------------------- report
def fmt_stages(stage_s: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in stage_s.items()) or "-"


def run_line(name: str, r: dict) -> str:
    return (f"  {name}: wall {r['wall']:.1f} s (Beam {r['beam_s']:.1f} s, outside it {r['wall'] - r['beam_s']:.1f} s), "
            f"CPU {r['cpu']:.1f} s, main peak {r['main_mb']:.0f} MB (after the dump {r['main_late_mb']:.0f}), "
            f"any process {r['any_mb']:.0f} MB ({r['any_role']}), kept {r['kept']:,}, web CPU {r['web_cpu']:.1f} s\n"
            f"      stage seconds: {fmt_stages(r['stage_s'])}")


METRICS = (("wall s", "wall", "{:.1f}"), ("CPU s (all processes)", "cpu", "{:.1f}"),
           ("main peak RSS MB", "main_mb", "{:.0f}"), ("any process peak MB", "any_mb", "{:.0f}"),
           ("main RSS after dump MB", "main_late_mb", "{:.0f}"), ("Beam part of wall s", "beam_s", "{:.1f}"))


def summary(res: dict) -> str:
    A, B = res["A"], res["B"]
    L = [f"\n=== summary: grow a {res['corpus_docs']:,}-document corpus by month 2 (~{res['add']:,} new documents), "
         f"{len(A)} pair(s), {res['cores']} cores", "ratios B/A (median over pairs; goal <= 1.3 for time and peak memory)"]
    L.append(f"  {'':<24} {'B/A':>6} {'goal':>5}   {'A: alone':>10} {'B: --add-to':>12}   per pair")
    for label, key, f in METRICS:
        ratios = [b[key] / a[key] if a[key] else float("nan") for a, b in zip(A, B)]
        goal = "<=1.3" if key in ("wall", "main_mb", "any_mb") else ""
        med = statistics.median(ratios)
        ok = "" if not goal else ("  ok" if med <= GOAL else "  OVER")
        L.append(f"  {label:<24} {med:>6.2f} {goal:>5}   {f.format(statistics.median(a[key] for a in A)):>10} "
                 f"{f.format(statistics.median(b[key] for b in B)):>12}   "
                 + " ".join(f"{x:.2f}" for x in ratios) + ok)
    g = res["grow"][-1]
    L.append(f"what B did (last pair): {g['added']:,} documents added as generation 1 (A kept {A[-1]['kept']:,}); "
             f"fetch drop already_in_corpus {g['already_in_corpus']:,}; dedup drops exact {g['exact']:,} + near "
             f"{g['near']:,}, of which {g['dups']['of_corpus']:,} of {g['dups']['examples']:,} listed in _drops/ "
             f"({'all' if g['dups']['examples'] == g['exact'] + g['near'] else 'capped: run.drops_per_reason'}) "
             f"name a corpus document as survivor (A: exact {A[-1]['stats'].get('dedup', {}).get('dropped', {}).get('exact_duplicate', 0):,} "
             f"+ near {A[-1]['stats'].get('dedup', {}).get('dropped', {}).get('near_duplicate', 0):,})")
    L.append(f"_index/: generation 0 {g['index0'] / 2**20:.1f} MiB ({res['corpus_indexed']:,} documents indexed, "
             f"{g['index0'] / max(1, res['corpus_indexed']):,.0f} bytes each), generation 1 {g['index1'] / 2**20:.1f} "
             f"MiB; corpus shards {res['corpus_shard_bytes'] / 2**20:.1f} MiB")
    m = res["m1"]
    L.append(f"month 1 build (not compared): wall {m['wall']:.1f} s, CPU {m['cpu']:.1f} s, main peak {m['main_mb']:.0f} MB, "
             f"any process {m['any_mb']:.0f} MB, {m['kept']:,} documents kept")
    return "\n".join(L)


# --------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--corpus", type=scale.num, default=10 ** 5, help="month 1: eligible article URLs")
    ap.add_argument("--add", type=scale.num, default=10 ** 4, help="month 2: new eligible article URLs")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs A, B (order alternates)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "webtext-scale"),
                    help="dumps are cached here between runs (shared with bench/scale.py)")
    ap.add_argument("--keep", action="store_true", help="keep the corpus and the runs' folders (path printed)")
    ap.add_argument("--local-dns", action="store_true", help="see bench/scale.py")
    ap.add_argument("--phases", action="store_true", help="one more A and B with the addition's steps timed "
                    "inside the run's process (not part of the ratios)")
    ap.add_argument("--json", help="write every measurement here")
    args, beam_args = ap.parse_known_args(argv)
    scale.PROXY_DNS_ONLY = not args.local_dns
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="grow-", dir=work))
    res = {"argv": sys.argv[1:], "cores": len(os.sched_getaffinity(0)), "add": args.add, "A": [], "B": [],
           "grow": []}
    log(f"grow bench: corpus ~{args.corpus:,}, add ~{args.add:,}, {args.repeat} pair(s); work folder {tmp}")
    try:
        m1, m1_counts = scale.dump_for(work, args.seed, docs=args.corpus)
        m2, m2_counts, first_aid = month_two(work, args.seed, m1, m1_counts, args.add)
        res["dumps"] = {"m1": m1_counts, "m2": m2_counts}
        web = scale.Web(args.seed, work, ["--older-below", str(first_aid)])
        try:
            corpus = tmp / "corpus"
            log("month 1: webtext run --out corpus ...")
            m = measure(scale.webtext_cmd(m1, corpus, web.url, beam_args), tmp / "log-m1", web)
            res["m1"] = with_stats(m, corpus)
            log(run_line("month 1", res["m1"]))
            ids = index_ids(corpus)
            res["corpus_docs"], res["corpus_indexed"] = res["m1"]["kept"], len(ids)
            res["corpus_shard_bytes"] = sum(f.stat().st_size for f in (corpus / "data").glob("*.arrow"))
            for r in range(args.repeat):
                for which in ("AB" if r % 2 == 0 else "BA"):
                    if which == "A":
                        out = tmp / f"alone-{r}"
                        log(f"pair {r + 1} A: webtext run --input m2 --out {out.name} ...")
                        a = with_stats(measure(scale.webtext_cmd(m2, out, web.url, beam_args), tmp / f"log-A{r}",
                                               web), out)
                        a["index_bytes"] = dir_bytes(out / "_index")
                        res["A"].append(a)
                        log(run_line("A (alone)", a))
                        if not args.keep:
                            shutil.rmtree(out)
                    else:
                        grown = tmp / f"grown-{r}"
                        shutil.copytree(corpus, grown, symlinks=True)   # untimed: B grows a fresh copy
                        cmd = scale.webtext_cmd(m2, grown, web.url, beam_args)
                        cmd[cmd.index("--out")] = "--add-to"
                        log(f"pair {r + 1} B: webtext run --input m2 --add-to {grown.name} ...")
                        gen = grown / "_generations" / "00001"
                        b = with_stats(measure(cmd, tmp / f"log-B{r}", web), gen)
                        res["B"].append(b)
                        dropped = lambda stage: b["stats"].get(stage, {}).get("dropped", {})   # noqa: E731
                        manifest = json.loads((grown / "manifest.json").read_text())
                        g1 = [x for x in manifest.get("generations", []) if x["generation"] == 1]
                        res["grow"].append({
                            "added": g1[0]["docs"] if g1 else 0,
                            "already_in_corpus": dropped("fetch").get("already_in_corpus", 0),
                            "exact": dropped("dedup").get("exact_duplicate", 0),
                            "near": dropped("dedup").get("near_duplicate", 0),
                            "dups": corpus_dups(gen, ids),
                            "index0": dir_bytes(grown / "_index" / "00000"),
                            "index1": dir_bytes(grown / "_index" / "00001")})
                        log(run_line("B (--add-to)", b))
                        log(f"      {res['grow'][-1]}")
                        if not args.keep:
                            shutil.rmtree(grown)
            if args.phases:
                res["phases"] = phases(m2, corpus, tmp, web, beam_args)
        finally:
            web.close()
    finally:
        if args.keep:
            log(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    d1, d2 = res["dumps"]["m1"], res["dumps"]["m2"]
    print(f"month 1: {d1['submissions']:,} submissions, {d1['eligible_article_urls']:,} eligible article URLs; "
          f"month 2: {d2['submissions']:,} submissions, {d2['eligible_article_urls']:,} new eligible article URLs "
          f"+ {d2['eligible_prior_urls']:,} eligible reposts of month-1 URLs "
          f"({100 * d2['eligible_prior_urls'] / max(1, d2['eligible_article_urls'] + d2['eligible_prior_urls']):.0f}%)")
    print(run_line("month 1 build", res["m1"]))
    for i, (a, b) in enumerate(zip(res["A"], res["B"])):
        print(f"pair {i + 1} ({'A,B' if i % 2 == 0 else 'B,A'}):")
        print(run_line("A alone   ", a))
        print(run_line("B --add-to", b))
    print(summary(res))
    if "phases" in res:
        print(phases_report(res["phases"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
