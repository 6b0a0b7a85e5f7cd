"""The whole WebText pipeline, top to bottom. Each line is one stage's composite transform.

    submissions (Pushshift dumps, URL lists, live Reddit via praw)
      -> outbound links (karma >= 3 aggregated per URL, no self posts / NSFW / Wikipedia / media)
      -> pages (polite, safe fetch; optional WARC capture and resume)
      -> documents (trafilatura main text, English, long enough, not Wikipedia)
         -> quality filters (Gopher/C4 rules), dedup sketch, GPT-2 tokens: in the same extraction processes
         -> tokens and signatures written once to _payloads/; only references travel on
      -> exact and near-duplicates removed (MinHash LSH)
      -> Arrow shards + manifest.json
With an `addition` (webtext run --add-to CORPUS, pipeline/corpus.py), links the corpus fetched before are not
fetched again, and new documents are deduplicated against the corpus's sketch index too.
Every stage also emits Drops (stage, reason, url); they are counted as Beam Metrics (exact,
in stats.json) and up to `run.drops_per_reason` examples per stage and reason are written to _drops/.
"""
from __future__ import annotations

import apache_beam as beam

from crawl.text.transform import ExtractDocuments
from crawl.fetch.transform import FetchPages
from crawl.links import HarvestLinks
from crawl.sources.reddit import ReadReddit
from core import files, payloads
from core.records import DROPPED
from crawl.fetch.warc import ReadWarcPages
from crawl.fetch.warc_recover import recover_leftovers
from crawl.seen import NotInCorpus, RecordLinks
from dedup import Deduplicate, bands
from pipeline.config import Config
from pipeline.corpus import LINK_PARTS, Addition
from pipeline.drops import WriteDrops
from pipeline.per_document import DocumentWork, WriteOutcomes
from pipeline.resume import Resume, job_key, outcome_files
from pipeline.shards.write import WriteShards


def build(p: beam.Pipeline, cfg: Config, out_dir: str, warc_input: str | None = None,
          addition: Addition | None = None) -> None:
    """Add the pipeline to `p`. With `warc_input`, pages come from captured WARCs instead of the network; with
    `addition`, `out_dir` is the addition's run folder and its shards are the corpus's next generation."""
    drops, reused = [], []
    payload_dir = payloads.payload_dir(out_dir)
    job = job_key(cfg, warc_input)      # names the outcomes written to payload_dir: what a rerun may reuse
    if warc_input:
        recover_leftovers(warc_input)   # a killed capture's whole records and lines count; its temp files go
        read = p | "ReadWarc" >> ReadWarcPages(warc_input, cfg.fetch.max_decompressed_bytes)
        pages = read["pages"]
        drops.append(read[DROPPED])
    else:
        submissions, source = [], p
        if cfg.reddit is not None:
            live = p | "ReadReddit" >> ReadReddit(cfg.reddit)
            submissions.append(live["submissions"])
            drops.append(live[DROPPED])
            source = submissions | "AllSubmissions" >> beam.Flatten()
        # dump files are read inside HarvestLinks: their lines are judged where they are parsed
        links = source | "HarvestLinks" >> HarvestLinks(cfg.links, dumps=cfg.run.inputs, max_line=cfg.run.max_line,
                                                        examples=cfg.run.drops_per_reason, quiet=cfg.run.quiet)
        drops.append(links[DROPPED])
        if cfg.run.stop_after == "links":
            write_drops(drops, cfg, out_dir)
            return
        to_fetch = links["links"]
        if addition is not None:   # a link an earlier generation fetched is not fetched again, whatever came of it
            new = to_fetch | "NotInCorpus" >> beam.ParDo(NotInCorpus(addition.index_dirs)).with_outputs(
                DROPPED, main="links")
            to_fetch = new.links
            drops.append(new[DROPPED])
        # the links this run fetches, for the corpus's URL index (merged when the run has ended)
        _ = to_fetch | "RecordLinks" >> beam.ParDo(RecordLinks(files.join(out_dir, LINK_PARTS)))
        # a rerun: pages an earlier run decided are neither fetched nor extracted (looked for where --out is local:
        # listing a gs:// --out here would talk to the bucket while the job is only being built)
        if files.is_local(payload_dir) and outcome_files(payload_dir):
            resumed = to_fetch | "Resume" >> Resume(payload_dir, job, quiet=cfg.run.quiet)
            to_fetch, reused = resumed["links"], [resumed["documents"]]
            drops.append(resumed[DROPPED])
        fetched = to_fetch | "FetchPages" >> FetchPages(cfg.fetch, cfg.links, quiet=cfg.run.quiet)
        pages = fetched["pages"]
        drops.append(fetched[DROPPED])

    # The quality rules, the dedup sketch and the tokens need only the text: they run in the extraction processes,
    # right after trafilatura (counted as stage "quality"), and the text goes no further.
    documents = pages | "ExtractDocuments" >> ExtractDocuments(cfg.extract, cfg.links, quiet=cfg.run.quiet,
                                                               then=DocumentWork(cfg.quality, cfg.dedup))
    # The tokens (and signatures) are written once, here, to the run's _payloads/; what goes on is a reference.
    slim = documents | "WritePayloads" >> WriteOutcomes(payload_dir, job, cfg.run.commit_seconds)
    slim = (slim, *reused) | "WithReused" >> beam.Flatten() if reused else slim
    unique = slim | "Deduplicate" >> Deduplicate(cfg.dedup, payload_dir,
                                                 corpus=addition.index_dirs if addition is not None else (),
                                                 scratch_dir=bands.scratch_dir(out_dir))
    drops += [documents[DROPPED], unique[DROPPED]]

    _ = unique["documents"] | "WriteShards" >> WriteShards(out_dir, cfg.shards, cfg.to_dict(), payload_dir,
                                                           generation=addition.generation if addition else 0)

    write_drops(drops, cfg, out_dir)


def write_drops(drops, cfg: Config, out_dir: str) -> None:
    if cfg.run.write_drops:
        _ = drops | "AllDrops" >> beam.Flatten() | "WriteDrops" >> WriteDrops(out_dir, cfg.run.drops_per_reason)
