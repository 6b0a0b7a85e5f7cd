"""The dataset card: README.md beside manifest.json, in the Hugging Face dataset-card layout (YAML front matter,
then prose), written at the end of every run from the manifest, stats and config, with two plots.

A corpus is released with its provenance, its filters and what each one removed; writing that by hand from
stats.json is where mistakes creep in. A README.md that webtext did not write is never replaced.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Dict, List

import numpy as np
import pyarrow.compute as pc

from core import files
from core import shard_format as shards
from core.plots import new_figure, save_figure
from pipeline.config import RunSettings
from pipeline.drops import DROPS_DIR
from pipeline.shards.browse import domain_of
from pipeline.shards.formats import HF_SPLITS

CARD = "README.md"
MARK = "<!-- dataset card written by webtext; it rewrites this file on every run -->"
LENGTHS_PNG, DOMAINS_PNG = "lengths.png", "domains.png"
OVERLAP = "overlap.json"
# One line per tool, DIR being this folder (tests/test_readers.py runs each). The text: `webtext shards export DIR
# --format parquet --out docs.parquet` streams it out (decoded tokens), or `webtext shards show`.
READERS = """import pyarrow.dataset as ds;  t = ds.dataset("DIR/{d}", format="arrow")           # pyarrow (lazy)
import datasets;  dd = datasets.load_dataset("DIR")                   # Hugging Face: train + validation
import polars as pl;  df = pl.scan_ipc("DIR/{d}/*.arrow")              # Polars (lazy)
import duckdb;  duckdb.from_arrow(ds.dataset("DIR/{d}", format="arrow")).limit(5).show()   # DuckDB, offline"""   # written by `webtext shards overlap` when a test-set overlap report was made

# The settings a reader of the card needs, per stage (all others are in manifest.json's config).
KEY_SETTINGS = {
    "links": ("min_karma", "aggregate", "drop_nsfw", "drop_self_posts", "created_before"),
    "fetch": ("min_delay", "robots", "page_timeout", "max_bytes", "content_types"),
    "extract": ("language", "min_language_score", "min_chars"),
    "quality": ("min_words", "max_words", "max_symbol_ratio", "min_stop_words", "max_dup_line_fraction"),
    "dedup": ("exact", "near", "threshold", "shingle_size", "num_perm"),
}
STAGE_WORDS = {
    "source": "dump lines and API items read", "submissions": "per-submission rules (self posts, NSFW, media, "
    "Wikipedia, blocklists)", "links": "one link per normalized URL, karma aggregated, karma threshold",
    "fetch": "polite fetch (robots.txt, caps, address checks)", "extract": "trafilatura main text, language",
    "quality": "Gopher/C4 document rules", "dedup": "exact and MinHash-LSH near-duplicates",
    "shards": "GPT-2 tokens in Arrow shards",
}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _date(ts) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%d")


def corpus_facts(out_dir: str, manifest: dict) -> dict:
    """Lengths per split, top domains and subreddits, and the date range of the kept documents."""
    lengths: Dict[str, List[np.ndarray]] = {s: [] for s in shards.SPLITS}
    domains, subreddits, first, last = Counter(), Counter(), None, None
    for entry in manifest["shards"]:
        table = shards.open_shard(files.join(out_dir, entry["name"]))
        if not table.num_rows:
            continue
        lengths[entry["split"]].append(pc.list_value_length(table.column("tokens")).to_numpy())
        domains.update(domain_of(url) for url in table.column("url").to_pylist())
        subreddits.update(pc.list_flatten(table.column("subreddits")).to_pylist())
        created = table.column("created_utc")
        lo, hi = pc.min(created).as_py(), pc.max(created).as_py()
        first = lo if first is None else min(first, lo)
        last = hi if last is None else max(last, hi)
    lengths = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in lengths.items()}
    return {"lengths": lengths, "domains": domains, "subreddits": subreddits, "first": first, "last": last}


def write_domain_plot(domains: Counter, path: str, top: int = 20) -> None:
    names, counts = zip(*domains.most_common(top)) if domains else ((), ())
    fig, ax = new_figure(8, max(3.0, 0.28 * len(names) + 1))
    ax.barh(list(reversed(names)), list(reversed(counts)))
    ax.set_xlabel("documents")
    ax.set_title(f"top {len(names)} domains of {sum(domains.values()):,} documents")
    save_figure(fig, path)


def _ours_or_absent(path: str) -> bool:
    if not files.exists(path):
        return True
    return MARK in files.read_bytes(path)[:4096].decode("utf-8", "replace")


def render(manifest: dict, stats: dict, facts: dict, overlap: dict | None) -> str:
    totals, config = manifest["totals"], manifest.get("config", {})
    docs = sum(t["docs"] for t in totals.values())
    tokens = sum(t["tokens"] for t in totals.values())
    inputs = (config.get("run") or {}).get("inputs") or []
    names = [e["name"] for e in manifest.get("shards", [])]
    where = f"{shards.DATA_DIR}/" if any(n.startswith(f"{shards.DATA_DIR}/") for n in names) or not names else ""
    reddit = config.get("reddit")
    lines = [
        "---", "language:", "- en", "license: other", "task_categories:", "- text-generation",
        f"size_categories:\n- {_size_category(docs)}", "tags:", "- webtext", "- reddit", "- gpt-2", "configs:",
        "- config_name: default", "  data_files:",
        *(f'  - split: {HF_SPLITS[s]}\n    path: "{where}{s}-*.arrow"' for s in shards.SPLITS), "---", MARK, "",
        "# WebText-style corpus", "",
        f"{docs:,} English web documents ({tokens:,} GPT-2 tokens, EOT included) from pages that Reddit "
        "submissions linked to, built with webtext the way the GPT-2 paper describes WebText (Radford et al., "
        "2019): outbound links with enough karma, main text extracted, non-English and Wikipedia removed, "
        "exact and near-duplicates removed.", "",
        "## Sources", "",
        f"- Inputs: {', '.join(f'`{i}`' for i in inputs) or 'none'}" +
        (f"; live Reddit listings of r/{', r/'.join(reddit.get('subreddits') or [])}" if reddit else ""),
    ]
    if facts["first"] is not None:
        lines.append(f"- Submissions of kept documents: {_date(facts['first'])} to {_date(facts['last'])} (UTC)")
    if facts["subreddits"]:
        top = ", ".join(f"r/{s} ({n:,})" for s, n in facts["subreddits"].most_common(10))
        lines.append(f"- Top subreddits: {top}")
    gens = manifest.get("generations") or []
    if len(gens) > 1:
        lines += ["", "## Generations", "", f"Built in {len(gens)} generations (`webtext run --add-to`): each added "
                  "only links no earlier one had fetched, and removed its documents that were exact or near "
                  "duplicates of any earlier one's; no generation removed a document of an earlier one.", "",
                  "| generation | inputs | documents added | tokens | links already in the corpus | "
                  "duplicates removed |", "|---|---|---|---|---|---|"]
        for g in gens:
            stages = (g.get("stats") or {}).get("stages") or {}
            dedup = (stages.get("dedup") or {}).get("dropped") or {}
            again = ((stages.get("fetch") or {}).get("dropped") or {}).get("already_in_corpus", 0)
            if g["generation"] == 0:   # its entry predates the manifest's generations: counted from the shards
                added = sum(e["docs"] for e in manifest.get("shards", []) if not e.get("generation"))
                tokens_added = sum(e["tokens"] for e in manifest.get("shards", []) if not e.get("generation"))
            else:
                added, tokens_added = g.get("docs", 0), g.get("tokens", 0)
            shown = ", ".join(f"`{i}`" for i in ((g.get("job") or {}).get("run") or {}).get("inputs") or []) or "-"
            lines.append(f"| {g['generation']} | {shown} | {added:,} | {tokens_added:,} | {again:,} | "
                         f"{sum(dedup.values()):,} |")
    lines += ["", "## How it was built: every stage, what it kept and what it dropped" +
              (" (generation 0)" if len(gens) > 1 else ""), "",
              "| stage | what it does | in | out | dropped, by reason |", "|---|---|---|---|---|"]
    for name, s in (stats.get("stages") or {}).items():
        reasons = ", ".join(f"{r} {n:,}" for r, n in s["dropped"].items()) or "-"
        lines.append(f"| {name} | {STAGE_WORDS.get(name, '')} | {s['in']:,} | {s['out']:,} | {reasons} |")
    run_cfg = config.get("run") or {}
    if run_cfg.get("write_drops", True):
        cap = run_cfg.get("drops_per_reason", RunSettings.drops_per_reason)
        listed = (f"examples of the dropped items, at most {cap:,} per stage and reason, are listed in "
                  f"{DROPS_DIR}/ (`run.drops_per_reason`)")
    else:
        listed = f"no examples of dropped items were written (`run.write_drops = false`), so there is no {DROPS_DIR}/"
    lines += ["", f"Every stage balances: in = out + dropped, exact counts in stats.json; {listed}.", "",
              "## Filters and their settings", ""]
    for section, keys in KEY_SETTINGS.items():
        values = config.get(section) or {}
        shown = ", ".join(f"`{k} = {json.dumps(values[k])}`" for k in keys if k in values)
        lines.append(f"- [{section}] {shown}")
    lines += ["", "The full configuration is in manifest.json (`config`).", "", "## Totals", "",
              "| split | shards | documents | tokens |", "|---|---|---|---|"]
    for split, t in totals.items():
        lines.append(f"| {split} | {t['shards']} | {t['docs']:,} | {t['tokens']:,} |")
    lengths = np.concatenate(list(facts["lengths"].values())) if docs else np.zeros(0)
    if len(lengths):
        p5, p50, p95 = np.percentile(lengths, [5, 50, 95])
        lines += ["", f"Document length in tokens: 5th percentile {p5:,.0f}, median {p50:,.0f}, "
                      f"95th percentile {p95:,.0f}.", "", f"![document lengths]({LENGTHS_PNG})",
                  f"![top domains]({DOMAINS_PNG})"]
    lines += ["", "## Overlap with test sets", ""]
    if overlap:
        lines.append("8-gram overlap of the train split with each test set (GPT-2 paper, sec. 4):")
        lines += [""] + [f"- `{name}`: {pct}" for name, pct in _overlap_rows(overlap)]
    else:
        lines.append("Not measured for this corpus: run `webtext shards overlap DIR --against TEST_FILE...`.")
    lines += ["", "## Shard format", "", f"Arrow IPC files in `{where or './'}`, one row per document (`doc_id`, `url`, "
              "`tokens` as list<uint16> ending with EOT 50256, `karma`, `subreddits`, `created_utc`); checksums in "
              "manifest.json. See webtext's docs/shard-format.md.", "",
              "## Opening it", "", "With DIR this folder; the text of each document: `webtext shards export DIR --format "
              "parquet --out docs.parquet` (streamed, zstd) or `webtext shards show DIR N`.", "", "```python", READERS.format(d=where.rstrip("/") or ".").replace("/./", "/"), "```", "",
              "## Licensing and caveats", "",
              "The text belongs to the authors of the web pages; this card's license field is `other` because web "
              "text carries no single license. Use it for research under the terms that apply where you are "
              "(text and data mining exceptions, fair use), honour takedown requests, and do not redistribute pages "
              "whose sites forbid it. Reddit karma measures what some users upvoted, not quality or truth: the "
              "corpus carries the biases of Reddit's users and of the linked sites. Filters are heuristics; some "
              "offensive, private or non-English text remains.", ""]
    return "\n".join(lines)


def _overlap_rows(overlap: dict):
    for name, value in (overlap.get("files") or overlap).items():
        pct = value.get("percent") if isinstance(value, dict) else value
        yield name, f"{pct:.2f}% of its 8-grams occur in train" if isinstance(pct, (int, float)) else str(pct)


def write_card(out_dir: str, stats: dict) -> str | None:
    """Write README.md (and its two plots) into a run's shard directory; None when a foreign README.md is there."""
    path = files.join(out_dir, CARD)
    if not _ours_or_absent(path) or not files.exists(files.join(out_dir, shards.MANIFEST)):
        return None   # a user's README.md; or no shards were written (run.stop_after = "links")
    manifest = shards.read_manifest(out_dir)
    facts = corpus_facts(out_dir, manifest)
    overlap_path = files.join(out_dir, OVERLAP)
    overlap = json.loads(files.read_bytes(overlap_path)) if files.exists(overlap_path) else None
    if any(len(v) for v in facts["lengths"].values()):
        from pipeline.shards.cli import write_length_plot
        write_length_plot({k: v for k, v in facts["lengths"].items() if len(v)}, files.join(out_dir, LENGTHS_PNG))
        write_domain_plot(facts["domains"], files.join(out_dir, DOMAINS_PNG))
    files.write_atomic(path, render(manifest, stats, facts, overlap).encode())
    return path
