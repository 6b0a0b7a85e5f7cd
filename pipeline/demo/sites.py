"""The demo web's sites: six made-up publications, each with its own boilerplate around the article.

Cookie banner, header and nav, byline, share bar, related links, comments, sidebar and footer differ per site (class
names too), as on the real web; extraction has to find the article between them. Used by pipeline/demo/web.py.
"""
from __future__ import annotations

import html
import re
from typing import List, NamedTuple, Tuple


class Article(NamedTuple):
    title: str
    paragraphs: Tuple[str, ...]


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].rstrip("-")


EN_LABELS = dict(
    cookie="We use cookies to personalise content and ads, to provide social media features and to analyse our "
           "traffic. By continuing to browse this site you agree to our use of cookies.", accept="Accept all cookies",
    related="Related stories", most_read="Most read", comments="Reader comments", by="By",
    newsletter="Get the best stories in your inbox every morning. Sign up for our free newsletter.",
    share="Share this article on Twitter, Facebook or by email", subscribe="Subscribe",
    footer=("About us", "Contact", "Advertise", "Privacy policy", "Terms of use", "Careers"),
    rights="All rights reserved.")
DE_LABELS = dict(
    cookie="Wir verwenden Cookies, um Inhalte und Anzeigen zu personalisieren und die Zugriffe auf unsere Website "
           "zu analysieren. Mit der Nutzung dieser Seite stimmen Sie dem zu.", accept="Alle akzeptieren",
    related="Mehr zum Thema", most_read="Meistgelesen", comments="Leserkommentare", by="Von",
    newsletter="Die wichtigsten Nachrichten jeden Morgen in Ihrem Postfach. Jetzt kostenlos anmelden.",
    share="Artikel teilen per Twitter, Facebook oder E-Mail", subscribe="Abonnieren",
    footer=("Impressum", "Kontakt", "Datenschutz", "Mediadaten", "AGB"), rights="Alle Rechte vorbehalten.")


class Site(NamedTuple):
    key: str
    host: str
    name: str
    tagline: str
    nav: Tuple[str, ...]
    path: str                  # URL path pattern of an article
    subreddits: Tuple[str, ...]
    body_class: str            # the article container's class: differs per site, as on the real web
    robots: str
    lang: str = "en"
    labels: dict = EN_LABELS


SITES = (
    Site("news", "www.example-news.com", "The Morning Ledger", "Independent news since 1921",
         ("World", "Politics", "Business", "Technology", "Science", "Opinion", "Sport"), "/{y}/{m:02d}/{d:02d}/{slug}",
         ("news", "technology", "worldnews"), "article-body",
         "User-agent: *\nDisallow: /search\nDisallow: /admin/\n"),
    Site("blog", "blog.example-dev.net", "Notes from the Terminal", "A programmer's notebook",
         ("Home", "Archive", "Talks", "About"), "/posts/{y}/{slug}.html", ("programming", "Python", "coding"),
         "post-content", "User-agent: *\nDisallow: /drafts/\n\nUser-agent: BadBot\nDisallow: /\n"),
    Site("science", "www.science-monthly.org", "Science Monthly", "Research, explained",
         ("Physics", "Biology", "Computing", "Space", "Health", "Podcasts"), "/articles/{n}/{slug}",
         ("science", "compsci", "EverythingScience"), "entry-content", "User-agent: *\nDisallow: /subscribers/\n"),
    Site("techreview", "www.techreview-weekly.com", "TechReview Weekly", "Software, hardware, and the people behind it",
         ("News", "Reviews", "How-to", "Deals", "Newsletters"), "/{y}/{m:02d}/{slug}/",
         ("technology", "programming", "webdev"),
         "story-text", "User-agent: *\nDisallow: /cart\nDisallow: /account/\n"),
    Site("herald", "www.cityherald.co.uk", "The City Herald", "Your city, your news",
         ("Home", "News", "Business", "Technology", "Sport", "What's on"), "/news/technology/{slug}-{n}",
         ("unitedkingdom", "technology", "news"), "story-body",
         "User-agent: *\nDisallow: /members/\nDisallow: /search\n"),
    Site("morgenblatt", "www.morgenblatt-online.de", "Morgenblatt", "Nachrichten aus Stadt und Land",
         ("Politik", "Wirtschaft", "Wissen", "Kultur", "Sport"), "/wissen/{slug}.html", ("de", "germany"),
         "artikel-text", "User-agent: *\nDisallow: /suche\n", lang="de", labels=DE_LABELS),
)
AUTHORS = ("Maria Lopez", "James Whitfield", "Priya Raman", "Tom Becker", "Aiko Tanaka", "Daniel Okafor",
           "Sophie Martin")
COMMENTS = ("Great write-up, thanks for sharing this.",
            "I ran into exactly this last week and this finally made it click.",
            "Does anyone know if this behaves differently in older versions?",
            "Bookmarked. Clearest explanation I have seen so far.",
            "I disagree with the conclusion, but the details are well researched.",
            "This should be required reading for new team members.",
            "Could you write a follow-up with more examples?")


def render_page(site: Site, article: Article, url: str, related: List[str], comments: Tuple[str, ...], n: int) -> str:
    """A whole page: cookie banner, header + nav, the article, share bar, related links, comments, sidebar, footer."""
    L, e = site.labels, html.escape
    author, (y, m, d) = AUTHORS[n % len(AUTHORS)], (2015 + n % 3, 1 + n % 12, 1 + n % 28)
    nav = "".join(f'<li><a href="/{slugify(x)}/">{e(x)}</a></li>' for x in site.nav)
    body = "\n".join(f"<p>{e(p)}</p>" for p in article.paragraphs)
    rel = "".join(f'<li><a href="/{slugify(t)}">{e(t)}</a></li>' for t in related)
    nick = lambda i: AUTHORS[(n + i + 3) % len(AUTHORS)].split()[0] + str((n * 7 + i) % 100)   # noqa: E731
    com = "".join(f'<div class="comment"><span class="comment-author">{e(nick(i))}</span><p>{e(c)}</p></div>'
                  for i, c in enumerate(comments))
    foot = "".join(f'<li><a href="/{slugify(x)}">{e(x)}</a></li>' for x in L["footer"])
    return f"""<!DOCTYPE html>
<html lang="{site.lang}"><head><meta charset="utf-8"><title>{e(article.title)} | {e(site.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="canonical" href="{e(url)}">
<meta name="description" content="{e(article.paragraphs[0][:150])}">
<link rel="stylesheet" href="/static/{site.key}.css">
</head><body class="{site.key}">
<div id="cookie-banner" class="cookie-consent"><p>{e(L["cookie"])}</p><button>{e(L["accept"])}</button></div>
<header class="site-header"><a class="logo" href="/">{e(site.name)}</a><p class="tagline">{e(site.tagline)}</p>
<nav class="main-nav"><ul>{nav}</ul></nav><a class="subscribe" href="/subscribe">{e(L["subscribe"])}</a></header>
<div class="layout"><main id="main">
<article class="post">
<h1 class="headline">{e(article.title)}</h1>
<p class="byline">{L["by"]} <a rel="author" href="/authors/{slugify(author)}">{e(author)}</a>
<time datetime="{y}-{m:02d}-{d:02d}">{y}-{m:02d}-{d:02d}</time></p>
<div class="{site.body_class}">
{body}
</div>
<div class="share-bar">{e(L["share"])}</div>
</article>
<aside class="related-links"><h2>{e(L["related"])}</h2><ul>{rel}</ul></aside>
{f'<section id="comments" class="comments"><h2>{e(L["comments"])} ({len(comments)})</h2>{com}</section>' if com else ""}
</main>
<aside class="sidebar"><h3>{e(L["most_read"])}</h3><ol>{rel}</ol>
<div class="newsletter"><p>{e(L["newsletter"])}</p><input type="email"><button>{e(L["subscribe"])}</button></div>
</aside>
</div>
<footer class="site-footer"><ul>{foot}</ul><p>&copy; {y} {e(site.name)}. {e(L["rights"])}</p></footer>
</body></html>
"""


def render_wikipedia(article: Article, url: str) -> str:
    title = url.rsplit("/", 1)[-1].replace("_", " ")
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in article.paragraphs)
    title = html.escape(title)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} - Wikipedia</title>'
            f'</head><body><div id="mw-navigation">Main page Contents Current events Random article</div>'
            f'<div id="content"><h1 id="firstHeading">{title}</h1><div id="mw-content-text">{body}</div></div>'
            f'<div id="footer">Text is available under the Creative Commons Attribution-ShareAlike License.</div>'
            f'</body></html>')


def render_home(site: Site, published: List[Tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="{html.escape(u)}">{html.escape(t)}</a></li>' for u, t in published)
    name = html.escape(site.name)
    return (f'<!DOCTYPE html><html lang="{site.lang}"><head><meta charset="utf-8"><title>{name}</title></head>'
            f'<body><h1>{name}</h1><p>{html.escape(site.tagline)}</p><ul>{items}</ul></body></html>')


# Written for this demo (not copied): a local news story in German, for the language filter.
GERMAN_ARTICLE = (
    "Wie eine Brachfläche zum Treffpunkt eines ganzen Viertels wurde",
    "Wo vor drei Jahren noch ein verwilderter Parkplatz lag, wachsen heute Tomaten, Bohnen und Sonnenblumen. Der "
    "Gemeinschaftsgarten am Rand der Altstadt ist längst mehr als ein Ort für Gemüse: Er ist zum Treffpunkt für "
    "Nachbarn geworden, die sich vorher kaum kannten.",
    "Angefangen hat alles mit einer kleinen Gruppe von Anwohnerinnen und Anwohnern, die sich über die ungenutzte "
    "Fläche ärgerten. Sie schrieben Briefe an die Stadtverwaltung, sammelten Unterschriften und überzeugten "
    "schließlich den Eigentümer, ihnen das Grundstück für einen symbolischen Betrag zu überlassen. Die ersten "
    "Hochbeete bauten sie aus alten Paletten, die ein Getränkehändler aus der Nachbarschaft gespendet hatte.",
    "Heute kümmern sich mehr als sechzig Menschen um die Beete. Jeden Samstagvormittag wird gemeinsam gearbeitet, "
    "danach gibt es Kaffee und Kuchen an einem langen Holztisch. Wer keine Zeit für ein eigenes Beet hat, hilft beim "
    "Gießen oder bringt Samen aus dem eigenen Garten mit. Besonders beliebt sind die Kräuterspirale und ein kleiner "
    "Teich, in dem im Frühjahr Kaulquappen schwimmen.",
    "Für viele Beteiligte geht es dabei nicht nur um frisches Gemüse. Eine Rentnerin erzählt, dass sie nach dem Tod "
    "ihres Mannes kaum noch aus dem Haus gegangen sei. Erst im Garten habe sie wieder Anschluss gefunden. Ein junger "
    "Vater schätzt dagegen, dass seine Kinder hier lernen, woher die Lebensmittel kommen, und dass sie im Sommer "
    "barfuß durch das Gras laufen können.",
    "Ganz ohne Konflikte verläuft das Projekt allerdings nicht. Immer wieder wird darüber gestritten, wer wie viel "
    "Wasser verbraucht, ob Hunde auf das Gelände dürfen und wie laut es bei den Sommerfesten werden darf. Die Gruppe "
    "hat deshalb einfache Regeln aufgeschrieben, die am Eingangstor hängen. Einmal im Monat trifft man sich außerdem "
    "zu einer offenen Versammlung, bei der alle mitreden können.",
    "Die Stadt beobachtet die Entwicklung inzwischen mit großem Interesse. Ähnliche Gärten sind in den vergangenen "
    "Jahren in mehreren Vierteln entstanden, und die Verwaltung prüft, ob sie weitere Brachflächen für solche "
    "Vorhaben freigeben kann. Fachleute betonen, dass begrünte Flächen das Stadtklima verbessern, weil sie im Sommer "
    "für Abkühlung sorgen und Regenwasser speichern.",
    "Wie es mit dem Garten weitergeht, ist trotzdem offen. Der Nutzungsvertrag läuft noch zwei Jahre, danach könnte "
    "auf dem Grundstück ein Wohnhaus entstehen. Die Gärtnerinnen und Gärtner hoffen auf eine Verlängerung. Notfalls, "
    "sagen sie, würden sie ihre Hochbeete eben auf Rollen stellen und an einen anderen Ort ziehen.",
)
TINY_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(200) + b"\xff\xd9"
TINY_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" \
           b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
TINY_PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> "
            b"endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")

