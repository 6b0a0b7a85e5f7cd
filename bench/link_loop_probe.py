"""Probe for the link-stage fix: the plain json loop vs the link rules in one plain loop, cheap rejections first
(karma < min_karma when aggregate=max, self, NSFW, host/extension on the raw URL), normalize_url only for the
survivors. CPU seconds, same process. Usage: PYTHONPATH=. python bench/link_loop_probe.py RS.zst"""
import io, json, sys, time, resource, zstandard
from urllib.parse import urlsplit
def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
path = sys.argv[1]
t0, c0 = time.perf_counter(), cpu()
n = kept = 0
with open(path, "rb") as f:
    for line in io.BufferedReader(zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f), 1 << 20):
        n += 1; d = json.loads(line)
        if d["score"] >= 3 and not d.get("is_self") and not d.get("over_18"): kept += 1
plain = (time.perf_counter() - t0, cpu() - c0)
from crawl.links import LinkRules, normalize_url, url_drop_reason
rules = LinkRules()
blocked = frozenset(rules.blocked_domains) | frozenset(rules.wikipedia_domains)
exts = tuple(rules.non_page_extensions)
def cheap(url):
    host = (urlsplit(url).hostname or "")
    labels = host.split(".")
    for i in range(len(labels) - 1):
        if ".".join(labels[i:]) in blocked: return "blocked_or_wiki"
    if urlsplit(url).path.lower().endswith(exts): return "non_page_extension"
    return None
t0, c0 = time.perf_counter(), cpu()
drops, acc = {}, {}
with open(path, "rb") as f:
    for line in io.BufferedReader(zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f), 1 << 20):
        d = json.loads(line)
        r = ("low_karma_early" if d["score"] < 3 else "self_post" if d.get("is_self") else "nsfw" if d.get("over_18")
             else cheap(d["url"]))
        if r is None:
            u = normalize_url(d["url"])
            r = "invalid_url" if u is None else url_drop_reason(u, rules)
            if r is None:
                a = acc.get(u); acc[u] = max(a, d["score"]) if a is not None else d["score"]; continue
        drops[r] = drops.get(r, 0) + 1
ours = (time.perf_counter() - t0, cpu() - c0)
print(json.dumps({"plain_wall": plain[0], "plain_cpu": plain[1], "cheap_first_wall": ours[0], "cheap_first_cpu": ours[1], "ratio_cpu": plain[1] / ours[1], "links": len(acc), "drops": drops}))
