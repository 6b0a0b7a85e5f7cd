"""Throughput of the issue-11 tools on a synthetic shard directory (prints numbers, not a test).

    python bench/hf_eval.py [--tokens 20000000] [--filter-capacity 0] [--work DIR]

- export: MB of shards per second for --format nanogpt, hf, parquet
- overlap: GB of train text per second through detokenize + normalize + hash + Bloom insert, the filter's size
  and the process's peak memory; --filter-capacity 9e9 sizes the filter as for WebText's 9B train tokens (43 GB)
  so the random probes see a realistic, far-larger-than-cache bit array
- eval: tokens/s of `webtext eval`'s loss pass for the tiny model on CPU
- export-hf: MB/s writing a gpt2-mini (~30M parameters) checkpoint as an HF directory

The corpus is real GPT-2 tokens drawn at random from Python's bundled English prose (pydoc topics), in documents
of ~1,000 tokens: word and 8-gram statistics close to text, and almost no repeated 8-gram (the hard case for the
filter: every probe a cache miss).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.shard_format import TokenizedDoc, write_manifest  # noqa: E402
from core.tokenizer import EOT, encode_document  # noqa: E402
from pipeline.shards.assemble import write_shard  # noqa: E402


def make_corpus(out: Path, n_tokens: int, shards: int = 4) -> None:
    import pydoc_data.topics
    pool = np.array([t for text in pydoc_data.topics.topics.values() for t in encode_document(text) if t != EOT],
                    np.uint16)
    rng = np.random.default_rng(0)
    docs = []
    for i in range(max(1, n_tokens // 1000)):
        tokens = np.append(pool[rng.integers(0, len(pool), 999)], np.uint16(EOT))
        docs.append(TokenizedDoc(hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest(), f"https://e.x/{i}",
                                 tokens, 3, ("bench",), 1_500_000_000))
    infos = [write_shard(str(out), "train", s, shards, docs[s::shards][: -max(1, len(docs) // shards // 50)])
             for s in range(shards)]
    infos.append(write_shard(str(out), "val", 0, 1, [d for s in range(shards)
                                                     for d in docs[s::shards][-max(1, len(docs) // shards // 50):]]))
    write_manifest(str(out), infos, config={"bench": True})


def webtext(*argv) -> float:
    """Seconds of one `webtext ...` command run in this process (interpreter start-up excluded)."""
    import contextlib
    import io

    from webtext import main as cli
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(list(map(str, argv))) == 0
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=float, default=2e7)
    p.add_argument("--filter-capacity", type=float, default=0, help="0: the train split's token count")
    p.add_argument("--eval-tokens", type=float, default=2e5)
    p.add_argument("--workers", type=int, default=1, help="overlap --workers")
    p.add_argument("--work", default=None)
    p.add_argument("--skip", nargs="*", default=[], choices=("export", "overlap", "eval", "export-hf"))
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="hfeval-bench-"))
    data = work / "shards"
    if not (data / "manifest.json").is_file():
        t0 = time.perf_counter()
        data.mkdir(parents=True, exist_ok=True)
        make_corpus(data, int(args.tokens))
        print(f"corpus: {int(args.tokens):,} tokens in {time.perf_counter() - t0:.1f} s at {data}")
    manifest = json.loads((data / "manifest.json").read_text())
    shard_mb = sum(s["bytes"] for s in manifest["shards"]) / 1e6
    results = {"tokens": sum(t["tokens"] for t in manifest["totals"].values()), "shard_mb": shard_mb}

    if "export" not in args.skip:
        for fmt, name in (("nanogpt", "nano"), ("hf", "hf"), ("parquet", "corpus.parquet")):
            out = work / name
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            seconds = webtext("shards", "export", data, "--format", fmt, "--out", out, "-q")
            results[f"export_{fmt}_mb_per_s"] = shard_mb / seconds   # includes interpreter start and sha256 checks
            print(f"export --format {fmt}: {shard_mb:,.0f} MB of shards in {seconds:.2f} s = "
                  f"{shard_mb / seconds:,.0f} MB/s (incl. the sha256 check of the shards)")

    if "overlap" not in args.skip:
        test = work / "test.txt"
        test.write_text(__doc__ * 200)
        cmd = ["shards", "overlap", data, "--against", test, "-q", "--json", work / "overlap.json"]
        if args.filter_capacity:
            cmd += ["--capacity", int(args.filter_capacity)]
        if args.workers > 1:
            cmd += ["--workers", args.workers]
        seconds = webtext(*cmd)
        r = json.loads((work / "overlap.json").read_text())
        results["overlap"] = {k: r["train"][k] for k in ("text_bytes", "seconds", "cpu_seconds", "gb_per_s",
                                                          "peak_rss_bytes", "grams", "workers")}
        results["overlap"]["filter_bytes"] = r["filter"]["bytes"]
        results["overlap"]["k"] = r["filter"]["k"]
        print(f"overlap: {r['train']['text_bytes'] / 1e6:,.0f} MB of text, {r['train']['grams']:,} 8-grams in "
              f"{r['train']['seconds']:.1f} s = {r['train']['gb_per_s']:.4f} GB/s "
              f"({r['train']['text_bytes'] / 1e6 / r['train']['cpu_seconds']:.1f} MB per CPU-second, "
              f"{r['train']['workers']} process(es)) into a {r['filter']['bytes'] / 1e9:.2f}"
              f" GB filter (k={r['filter']['k']}); peak RSS {r['train']['peak_rss_bytes'] / 1e9:.2f} GB; "
              f"whole command {seconds:.1f} s")

    if "eval" not in args.skip:
        import torch
        from train.eval import stream_nll
        from train.train import keep_freed_memory
        from train.model import GPT, GPTConfig, MODEL_CONFIGS
        from core.shard_format import shard_tokens
        torch.manual_seed(0)
        model = GPT(GPTConfig(**MODEL_CONFIGS["tiny"])).eval()
        stream = shard_tokens(data / manifest["shards"][0]["name"])[0]
        keep_freed_memory()   # as `webtext eval` does on CPU
        stream_nll(model, [stream], 8, 2048)   # warm-up
        cpu0 = time.process_time()
        r = stream_nll(model, [stream], 8, int(args.eval_tokens))
        cpu = time.process_time() - cpu0
        results["eval_tokens_per_s"] = r["tokens"] / r["seconds"]
        results["eval_tokens_per_cpu_s"] = r["tokens"] / cpu
        print(f"eval: tiny model ({MODEL_CONFIGS['tiny']}), CPU, {torch.get_num_threads()} threads, batch 8: "
              f"{r['tokens']:,} tokens in {r['seconds']:.2f} s = {r['tokens'] / r['seconds']:,.0f} tokens/s "
              f"({r['tokens'] / cpu:,.0f} per CPU-second)")
    if "export-hf" not in args.skip:
        import torch
        from dataclasses import asdict
        from train.checkpoint import save_checkpoint
        from train.model import GPT, GPTConfig, MODEL_CONFIGS
        cfg = GPTConfig(**MODEL_CONFIGS["gpt2-mini"])
        save_checkpoint(work / "mini.pt", {"model": GPT(cfg).state_dict(), "config": asdict(cfg)})
        shutil.rmtree(work / "mini-hf", ignore_errors=True)
        seconds = webtext("export-hf", "--ckpt", work / "mini.pt", "--out", work / "mini-hf")
        mb = sum(f.stat().st_size for f in (work / "mini-hf").iterdir()) / 1e6
        results["export_hf_mb_per_s"] = mb / seconds
        print(f"export-hf: gpt2-mini ({cfg.n_layer} layers, {cfg.n_embd} wide): {mb:,.0f} MB in {seconds:.2f} s = "
              f"{mb / seconds:,.0f} MB/s (incl. loading the checkpoint)")
    results["peak_rss_bytes_bench"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
