"""Dump reading + link rules vs a plain loop, both end to end (fresh interpreter, start-up included).

    python bench/dump_speed.py [--submissions 1000000] [--dump /tmp/RS_bench.zst] [--seed 1] [--repeat 1]

1. Writes (once per path/size/seed) a deterministic Pushshift-style dump: zstd with a 2 GiB window, Pushshift's
   field set (id, name, url, score, is_self, over_18, subreddit, created_utc, domain, permalink, title, author,
   num_comments, selftext, ...), ~40% self posts, ~6% NSFW, ~62% of scores under 3, media hosts and extensions,
   ~1.5% Wikipedia, ~8% reposts of an earlier article (30% with utm_ parameters).
2. Baseline: a plain loop that decompresses (max_window_size=2**31) and json.loads every line, checking
   score/self/NSFW (the loop in the issue), in a fresh `python -c`.
3. `webtext run --input DUMP --set run.stop_after=links --quiet` in a fresh process: reading, source/submission/
   link rules, per-URL karma, stats.json and _drops/. Prints lines/s of both, their ratio, and _drops/ size as a
   share of the dump.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAIN = r"""
import io, json, sys, zstandard
kept = n = 0
with open(sys.argv[1], "rb") as f:
    reader = io.BufferedReader(zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f), 1 << 20)
    for line in reader:
        n += 1
        d = json.loads(line)
        if d["score"] >= 3 and not d.get("is_self") and not d.get("over_18"):
            kept += 1
print(n, kept)
"""
SUBS = ("AskReddit", "funny", "pics", "worldnews", "news", "todayilearned", "science", "technology", "gaming",
        "politics", "videos", "movies", "Music", "books", "programming", "space", "history", "europe", "nba")
MEDIA = ("i.imgur.com", "imgur.com", "i.redd.it", "v.redd.it", "www.youtube.com", "youtu.be", "gfycat.com")
WORDS = ("the", "new", "study", "finds", "city", "council", "votes", "on", "plan", "to", "build", "river", "data",
         "shows", "why", "people", "are", "moving", "out", "of", "record", "heat", "wave", "hits", "north")


def b36(n: int) -> str:
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + s
        if not n:
            return s


def write_dump(path: Path, n: int, seed: int) -> None:
    import zstandard
    rng = random.Random(seed)
    articles = []
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=False)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f, zstandard.ZstdCompressor(compression_params=params).stream_writer(f) as w:
        for i in range(n):
            sid, sub = b36(36 ** 5 + 7919 * i), SUBS[min(len(SUBS) - 1, int(rng.paretovariate(1.0)) - 1)]
            u = rng.random()
            score = 0 if u < 0.12 else 1 if u < 0.52 else 2 if u < 0.62 else 3 + int(rng.paretovariate(0.8))
            title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14)))
            slug = title.replace(" ", "_")[:50]
            permalink = f"/r/{sub}/comments/{sid}/{slug}/"
            is_self, v = rng.random() < 0.40, rng.random()
            if is_self:
                url, domain = f"https://www.reddit.com{permalink}", f"self.{sub}"
            else:
                if articles and v < 0.08:
                    url = rng.choice(articles) + ("?utm_source=reddit&utm_medium=social" if rng.random() < 0.3 else "")
                elif v < 0.41:
                    host = rng.choice(MEDIA)
                    url = f"https://{host}/{b36(rng.getrandbits(40))}" + (".jpg" if host.startswith("i.") else "")
                elif v < 0.46:
                    url = f"http://www.site{rng.randrange(5000)}.com/files/{slug[:20]}{rng.choice(['.pdf', '.png', '.mp4'])}"
                elif v < 0.475:
                    url = f"https://en.wikipedia.org/wiki/{slug.title()[:30]}"
                else:
                    url = f"http://www.site{int(rng.paretovariate(0.7)) % 30000}.com/2016/{slug[:40].replace('_', '-')}-{i}"
                    articles.append(url)
                domain = url.split("/")[2].removeprefix("www.")
            rec = {"author": f"user_{b36(rng.getrandbits(30))}", "created_utc": 1420070400 + 7 * i, "domain": domain,
                   "id": sid, "is_self": is_self, "name": f"t3_{sid}", "num_comments": int(score * rng.random()),
                   "over_18": rng.random() < 0.06, "permalink": permalink, "score": score,
                   "selftext": title * rng.randint(0, 3) if is_self else "", "subreddit": sub, "title": title,
                   "ups": score, "url": url, "stickied": False, "gilded": 0, "thumbnail": "default"}
            w.write(json.dumps(rec).encode() + b"\n")
    os.replace(tmp, path)


def timed(cmd, env=None):
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{out.stderr[-3000:]}")
    return wall, out.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--submissions", type=float, default=1e6)
    ap.add_argument("--dump", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    n = int(args.submissions)
    dump = Path(args.dump or Path(tempfile.gettempdir()) / f"RS_bench_{n}_{args.seed}.zst")
    if not dump.exists():
        t = time.perf_counter()
        write_dump(dump, n, args.seed)
        print(f"wrote {dump} ({dump.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for _ in range(args.repeat):   # interleaved, so both see the same machine load
        plain, out = timed([sys.executable, "-c", PLAIN, str(dump)])
        lines = int(out.split()[0])
        with tempfile.TemporaryDirectory() as tmp:
            ours, _ = timed([sys.executable, "-m", "webtext", "run", "--input", str(dump), "--out", tmp,
                             "--set", "run.stop_after=links", "--quiet"], env=env)
            stats = json.loads((Path(tmp) / "stats.json").read_text())
            drops = sum(p.stat().st_size for p in (Path(tmp) / "_drops").iterdir())
        st = stats["stages"]
        assert st["source"]["in"] == lines and not stats["unbalanced"], stats["unbalanced"]
        print(f"plain json loop: {plain:.1f} s, {lines / plain:,.0f} lines/s | webtext run links-only: {ours:.1f} s, "
              f"{lines / ours:,.0f} lines/s -> {plain / ours:.2f} of the plain loop (goal >= 0.5); "
              f"{st['links']['out']:,} links; _drops/ {drops / 1e6:.2f} MB = {drops / dump.stat().st_size:.1%} "
              f"of the dump", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
