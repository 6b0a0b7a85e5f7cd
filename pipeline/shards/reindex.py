"""`webtext shards index DIR`: the sketch index of a corpus built by a webtext older than its index, from its shards.

Each generation without an index gets one (dedup/index.py, the corpus's own [dedup] settings from its manifest):
every document of its shards, decoded back to its text (GPT-2's byte-level BPE decodes to exactly the text that
was encoded) and sketched as dedup sketches it (dedup.minhash: fingerprint of the normalized text, MinHash of its
word shingles), so the index equals the one `webtext run` writes, except that it holds only the kept documents
(the shards do not have the ones dedup removed) and no URL index. That is all `shards dedup-against` uses. A later
`webtext run --add-to DIR` then removes new duplicates of every kept document, but refetches links whose page was
dropped; a generation that already has an index is left as it is.
"""
from __future__ import annotations

from core import files
from core.settings import UsageError
from dedup import index as sketch_index
from dedup.config import DedupConfig
from dedup.minhash import fingerprint_of_words, normalized_words, signature_of_words


def dedup_config(manifest: dict) -> DedupConfig:
    """The [dedup] settings the corpus was built with (defaults for what its manifest does not say)."""
    values = dict((manifest.get("config") or {}).get("dedup") or {})
    try:
        return DedupConfig(**{k: v for k, v in values.items() if k in DedupConfig.__dataclass_fields__})
    except (TypeError, ValueError) as e:
        raise UsageError(f"the manifest's [dedup] settings are not valid ({e})") from None


def sketch_rows(data_dir: str, entries, cfg: DedupConfig, bar):
    """(doc_id, karma, fingerprint, sig, kept=True) of every document of the given shards."""
    from pipeline.shards.browse import iter_docs, text_of

    for entry, row, tokens in iter_docs(data_dir, entries):
        words = normalized_words(text_of(tokens))
        sig = signature_of_words(words, cfg).astype("<u4").tobytes() if cfg.near else b""
        bar.update(len(tokens))
        yield row["doc_id"], row["karma"], fingerprint_of_words(words), sig, True


def cmd_index(args) -> int:
    from pipeline.corpus import generations_of
    from pipeline.shards.browse import load_manifest, progress, select

    manifest = load_manifest(args.dir)
    if not files.is_local(args.dir):
        raise UsageError(f"{args.dir}: shards index writes beside local shards only; copy the corpus here first")
    cfg = dedup_config(manifest)
    entries = select(manifest, "all")
    for g in (x["generation"] for x in generations_of(manifest)):
        directory = sketch_index.generation_dir(args.dir, g)
        if sketch_index.exists(directory):
            print(f"generation {g}: has its index already ({directory})")
            continue
        mine = [e for e in entries if e.get("generation", 0) == g]
        with progress(sum(e["tokens"] for e in mine), "tok", args.quiet) as bar:
            docs = sketch_index.write(directory, sketch_rows(args.dir, mine, cfg, bar), cfg)
        print(f"generation {g}: indexed {docs:,} documents from {len(mine)} shard(s) into {directory}")
    return 0


def add_parser(sub, common) -> None:
    """The `index` subcommand of `webtext shards`."""
    p = sub.add_parser("index", parents=[common], help="build a missing sketch index from the shards",
                       description="Build the sketch index (for dedup-against and --add-to) of a corpus made by an "
                                   "older webtext, from its shards: its kept documents, decoded and sketched with "
                                   "the corpus's [dedup] settings. A generation with an index is left as it is.")
    p.add_argument("dir", metavar="DIR", help="a shard directory (the --out of `webtext run`)")
    p.set_defaults(func=cmd_index)
