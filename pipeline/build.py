"""The whole WebText pipeline, top to bottom. Each line is one stage's composite transform.

    submissions (Pushshift dumps, URL lists, live Reddit via praw)
      -> outbound links (karma >= 3 aggregated per URL, no self posts / NSFW / Wikipedia / media)
      -> pages (polite, safe fetch; optional WARC capture and resume)
      -> documents (trafilatura main text, English, long enough, not Wikipedia)
      -> quality filters (Gopher/C4 rules) -> exact and near-duplicates removed (MinHash LSH)
      -> GPT-2 tokens in Arrow shards + manifest.json
Every stage also emits Drops (stage, reason, url); they are counted as Beam Metrics and written to drops/.
"""
from __future__ import annotations

import json

import apache_beam as beam

from crawl.text.transform import ExtractDocuments
from crawl.fetch.transform import FetchPages
from crawl.links import HarvestLinks
from crawl.text.quality import FilterQuality
from crawl.sources.reddit import ReadReddit
from crawl.sources.dumps import ReadSubmissions
from core.records import DROPPED
from crawl.fetch.warc import ReadWarcPages
from crawl.fetch.warc_recover import recover_leftovers
from dedup import Deduplicate
from pipeline.config import Config
from pipeline.shards.write import WriteShards


def build(p: beam.Pipeline, cfg: Config, out_dir: str, warc_input: str | None = None) -> None:
    """Add the pipeline to `p`. With `warc_input`, pages come from captured WARCs instead of the network."""
    drops = []
    if warc_input:
        recover_leftovers(warc_input)   # a killed capture's whole records and lines count; its temp files go
        read = p | "ReadWarc" >> ReadWarcPages(warc_input, cfg.fetch.max_decompressed_bytes)
        pages = read["pages"]
        drops.append(read[DROPPED])
    else:
        submissions = []
        if cfg.run.inputs:
            dumps = p | "ReadDumps" >> ReadSubmissions(cfg.run.inputs, default_karma=cfg.links.min_karma)
            submissions.append(dumps["submissions"])
            drops.append(dumps[DROPPED])
        if cfg.reddit is not None:
            live = p | "ReadReddit" >> ReadReddit(cfg.reddit)
            submissions.append(live["submissions"])
            drops.append(live[DROPPED])
        submissions = submissions | "AllSubmissions" >> beam.Flatten()

        links = submissions | "HarvestLinks" >> HarvestLinks(cfg.links)
        fetched = links["links"] | "FetchPages" >> FetchPages(cfg.fetch, cfg.links, quiet=cfg.run.quiet)
        pages = fetched["pages"]
        drops += [links[DROPPED], fetched[DROPPED]]

    documents = pages | "ExtractDocuments" >> ExtractDocuments(cfg.extract, cfg.links, quiet=cfg.run.quiet)
    good = documents["documents"] | "FilterQuality" >> FilterQuality(cfg.quality)
    unique = good["documents"] | "Deduplicate" >> Deduplicate(cfg.dedup)
    drops += [documents[DROPPED], good[DROPPED], unique[DROPPED]]

    _ = unique["documents"] | "WriteShards" >> WriteShards(out_dir, cfg.shards, cfg.to_dict())

    if cfg.run.write_drops:
        _ = (drops
             | "AllDrops" >> beam.Flatten()
             | "DropToJson" >> beam.Map(lambda d: json.dumps(d._asdict(), ensure_ascii=False))
             | "WriteDrops" >> beam.io.WriteToText(f"{out_dir}/drops/drops", file_name_suffix=".jsonl"))
