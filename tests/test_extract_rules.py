"""The extract stage judges Wikipedia by the run's [links] rules, not the defaults (it used the defaults once)."""
import html

import apache_beam as beam
import pydoc_data.topics

from conftest import beam_pipeline, counters
from core.records import Link, Page
from crawl.links import LinkRules
from crawl.text.extract import ExtractConfig, document_from_page
from crawl.text.transform import ExtractDocuments

PROSE = [p.strip() for p in pydoc_data.topics.topics["assignment"].split("\n\n") if len(p.strip()) > 80][:8]
ARTICLE = "<html><body><article>" + "".join(f"<p>{html.escape(p)}</p>" for p in PROSE) + "</article></body></html>"
RULES = LinkRules(wikipedia_domains=("wiki.example",))


def _page(final_url):
    link = Link("http://short.example/x", "short.example", 9, ("news",), 1_400_000_000, 1)
    return Page(link, final_url, 200, "text/html", ARTICLE.encode(), "utf-8")


def test_configured_wikipedia_hosts_are_dropped_at_extraction():
    cfg = ExtractConfig(timeout=None, language="")
    assert document_from_page(_page("http://wiki.example/Flood"), cfg, RULES)[0] == "wikipedia"
    assert document_from_page(_page("http://en.wikipedia.org/wiki/Flood"), cfg, RULES).text   # not in these rules
    p = beam_pipeline()
    pages = [_page("http://wiki.example/Flood"), _page("http://news.example/flood")]
    _ = p | beam.Create(pages) | ExtractDocuments(ExtractConfig(processes=1, language=""), RULES)
    c = counters(p.run())
    assert c["extract.in"] == 2 and c["extract.out"] == 1 and c["extract.drop.wikipedia"] == 1
