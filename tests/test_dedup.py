"""Dedup: normalization, shingles, MinHash vs datasketch, LSH parameters, survivor rule, bucket verification,
connected components, then Deduplicate on FnApiRunner over real English prose (pydoc_data.topics) with planted
exact duplicates, near-duplicate pairs, a near-duplicate chain and a below-threshold pair."""
import random
import re
from collections import defaultdict

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from pydoc_data.topics import topics

from core.records import Document, doc_id_for
from dedup import (DedupConfig, Deduplicate, band_keys, banding, bucket_edges, connected_components, estimated_jaccard,
                   lsh_params, normalized_words, pick_survivor, s_curve, shingle_hashes, shingles, signature,
                   signature_of_hashes, text_fingerprint)
from dedup.near import ConnectedComponents, large_star, small_star

CFG = DedupConfig()


# --- real English prose -----------------------------------------------------------------------------------------
def _texts(n_words=400):
    """Distinct documents: Python's own reference prose, one topic each, first n_words words."""
    out = []
    for name in sorted(topics):
        words = topics[name].split()
        if len(words) >= n_words and len(set(words[:n_words])) > n_words // 3:
            out.append(" ".join(words[:n_words]))
    return out


TEXTS = _texts()


def _mutate(text, start, count, rng):
    """Replace `count` words, spread over text[start:], with words that occur nowhere else."""
    words = text.split()
    for i in rng.sample(range(start, len(words)), count):
        words[i] = f"novel{rng.randrange(10**9)}"
    return " ".join(words)


def _edit_region(text, lo, hi, rng):
    """Replace every 30th word in words[lo:hi] (a local edit in one paragraph)."""
    words = text.split()
    for i in range(lo, hi, 30):
        words[i] = f"edit{rng.randrange(10**9)}"
    return " ".join(words)


def jaccard(a, b):
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def _doc(url, text, karma):
    return Document(doc_id_for(url), url, text, karma, ("science",), 1_200_000_000)


# --- pure functions -------------------------------------------------------------------------------------------
def test_normalization_makes_layout_case_and_punctuation_exact_duplicates():
    a = "The quick brown fox -- it jumps over the lazy dog."
    b = "  the QUICK brown fox: it jumps\n\nover the “lazy” dog "
    assert normalized_words(a) == normalized_words(b) == "the quick brown fox it jumps over the lazy dog".split()
    assert text_fingerprint(a) == text_fingerprint(b)
    assert text_fingerprint("ﬁle ＡＢＣ") == text_fingerprint("file abc")          # NFKC: ligature, full width
    assert text_fingerprint(a) != text_fingerprint(a.replace("lazy", "sleepy"))   # words still count
    assert text_fingerprint("one two") != text_fingerprint("two one")              # and their order
    assert len(text_fingerprint(a)) == 32


def test_shingles_are_word_5grams_of_normalized_text():
    text = "One, two three four five six SEVEN"
    assert shingles(text) == {"one two three four five", "two three four five six", "three four five six seven"}
    assert shingles(text, n=6) == {"one two three four five six", "two three four five six seven"}
    assert shingles("too short text") == {"too short text"}
    assert shingles(" ... ") == set()
    # hashed shingles: one per n-gram, equal n-grams -> equal hashes, order matters
    h = shingle_hashes(normalized_words("a b c d e a b c d e"))
    assert len(h) == 6 and h[0] == h[5] and len(set(h.tolist())) == 5


def test_signature_is_datasketch_minhash_and_estimates_jaccard():
    bands, rows = banding(CFG)
    words = normalized_words(TEXTS[0])
    hashes = shingle_hashes(words)
    reference = MinHash(num_perm=CFG.num_perm, seed=1, hashfunc=int)
    reference.update_batch(hashes.tolist())
    sig = signature(TEXTS[0], CFG)
    assert sig.dtype == np.uint32 and len(sig) == CFG.num_perm == 128 >= bands * rows   # verify on all 128
    assert np.array_equal(sig, reference.hashvalues)
    assert np.array_equal(signature_of_hashes(hashes, 128, 1, chunk=7), sig)          # chunking changes nothing
    assert not np.array_equal(signature_of_hashes(hashes, 128, 2), sig)               # the seed matters
    assert len(signature(" -- ", CFG)) == 0
    rng = random.Random(1)
    for count in (4, 15, 60):
        other = _mutate(TEXTS[0], 0, count, rng)
        assert abs(estimated_jaccard(sig, signature(other, CFG)) - jaccard(TEXTS[0], other)) < 0.12


def test_lsh_params_follow_the_s_curve_like_datasketch():
    assert lsh_params(0.8, 128) == (9, 13)
    for threshold, num_perm in [(0.5, 128), (0.72, 128), (0.8, 256), (0.9, 64)]:
        assert lsh_params(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)
    b, r = lsh_params(0.8, 128)
    assert b * r <= 128
    assert s_curve(0.5, b, r) < 0.01 and s_curve(0.95, b, r) > 0.99     # steep around the threshold
    assert 0.2 < s_curve(0.8, b, r) < 0.8
    assert lsh_params(0.9, 128, fp_weight=0.9, fn_weight=0.1)[1] >= lsh_params(0.9, 128)[1]   # fewer false positives
    assert banding(DedupConfig(bands=14, rows=8)) == (14, 8)                # datatrove's banding, as an override
    assert banding(DedupConfig(verify_candidates=False)) == (9, 13)        # unverified: the balanced optimum


def test_verified_banding_favours_recall():
    """With verification, a pair at the threshold becomes a candidate with >= min_recall probability; the
    balanced optimum (9 x 13) would find only ~40% of pairs at 0.8 and ~69% at 0.85."""
    b, r = banding(CFG)
    assert CFG.verify_candidates and b * r <= CFG.num_perm
    assert s_curve(0.8, b, r) >= 0.95 and s_curve(0.85, b, r) >= 0.99
    assert s_curve(0.5, b, r) < 0.15                                     # still few false candidates
    assert s_curve(0.8, 9, 13) < 0.45
    with pytest.raises(ValueError):
        DedupConfig(bands=14)


def test_band_keys_collide_only_on_equal_bands():
    sig = signature(TEXTS[0], CFG)
    keys = band_keys(sig, 9, 13)
    assert [b for b, _ in keys] == list(range(9)) and keys == band_keys(sig.copy(), 9, 13)
    changed = sig.copy()
    changed[13 * 4 + 2] ^= 1                                              # one value in band 4
    assert [k1 == k2 for k1, k2 in zip(keys, band_keys(changed, 9, 13))] == [True] * 4 + [False] + [True] * 4
    with pytest.raises(ValueError):
        band_keys(sig[:100], 9, 13)


def test_survivor_is_highest_karma_then_smallest_doc_id():
    assert pick_survivor([("b", 5), ("c", 9), ("a", 9), ("d", 1)]) == ("a", 9)
    docs = [_doc("http://x.example/1", "t", 3), _doc("http://x.example/2", "t", 7), _doc("http://x.example/3", "t", 7)]
    best = min(docs[1:], key=lambda d: d.doc_id)
    assert pick_survivor(docs) == best and pick_survivor(reversed(docs)) == best


def test_bucket_edges_verify_pairs_and_keep_connectivity():
    rng = random.Random(2)
    base = TEXTS[1]
    near1, near2, far = _mutate(base, 0, 3, rng), _mutate(base, 0, 4, rng), _mutate(base, 0, 150, rng)
    members = [(("d", 1), signature(near2)), (("a", 1), signature(base)), (("c", 1), signature(far)),
               (("b", 1), signature(near1)), (("a", 1), signature(base))]                     # "a" listed twice
    edges, compared = bucket_edges(members, 0.8)
    assert sorted(edges) == [(("a", 1), ("b", 1)), (("a", 1), ("d", 1))] and compared == 6   # "c" fails
    leader_edges, _ = bucket_edges(members, 0.8, max_bucket=2)          # leader mode: same clusters here
    assert sorted(leader_edges) == sorted(edges)
    unverified, compared = bucket_edges(members, 0.8, verify=False)
    assert sorted(unverified) == [(("a", 1), (x, 1)) for x in "bcd"] and compared == 0
    assert bucket_edges(members[:1], 0.8) == ([], 0)


def _union_find(edges):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x
    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x)[0] for x in parent}


def test_star_operations_and_connected_components():
    n = lambda i: (f"{i:04d}", i % 3)                                   # noqa: E731
    assert sorted(large_star(n(2), [n(1), n(3), n(4)])) == [(n(3), n(1)), (n(4), n(1))]
    assert sorted(small_star(n(3), [n(1), n(2), n(5)])) == [(n(2), n(1)), (n(3), n(1))]
    rng = random.Random(3)
    order = list(range(200))
    rng.shuffle(order)
    path = [(n(order[i]), n(order[i + 1])) for i in range(199)]          # one long chain, worst case
    labels, rounds, converged = connected_components(path, 20)
    assert converged and rounds <= 10 and set(labels.values()) == {"0000"} and len(labels) == 200
    for _ in range(3):
        edges = [(n(rng.randrange(300)), n(rng.randrange(300))) for _ in range(250)]
        labels, _, converged = connected_components(edges, 20)
        assert converged and labels == {k: v for k, v in _union_find(edges).items() if k in labels}
    _, _, converged = connected_components(path, 2)
    assert not converged                                                # bounded rounds say so


# --- Deduplicate on FnApiRunner --------------------------------------------------------------------------------
COLLECTED = defaultdict(list)        # FnApiRunner runs in this process: sinks append here


def _append(x, name):
    COLLECTED[name].append(x)


def run_dedup(docs, cfg=CFG, tag="run"):
    for k in (f"{tag}.docs", f"{tag}.drops"):
        COLLECTED.pop(k, None)
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | "Create" >> beam.Create(docs, reshuffle=False) | Deduplicate(cfg)
    out["documents"] | "Docs" >> beam.Map(_append, name=f"{tag}.docs")
    out["dropped"] | "Drops" >> beam.Map(_append, name=f"{tag}.drops")
    result = p.run()
    result.wait_until_finish()
    counters = defaultdict(int)
    for c in result.metrics().query()["counters"]:
        if c.key.metric.namespace == "webtext":
            counters[c.key.metric.name] += c.committed
    return sorted(COLLECTED[f"{tag}.docs"]), sorted(COLLECTED[f"{tag}.drops"]), dict(counters)


@pytest.fixture(scope="module")
def planted():
    """Docs with known duplicate structure; returns (docs, clusters: list of lists of docs, distinct docs)."""
    rng = random.Random(7)
    texts = iter(TEXTS)
    clusters, distinct = [], []
    url = iter(f"http://site{i % 5}.example/page/{i}" for i in range(10_000))
    # exact duplicates: same words, different case / punctuation / whitespace; karma tie -> smallest doc_id
    t = next(texts)
    clusters.append([_doc(next(url), t, 5), _doc(next(url), t.upper(), 10),
                     _doc(next(url), re.sub(r"\s+", "  ", t.replace(".", "!")), 10)])
    # near-duplicate pairs, ~0.9 Jaccard (a few words changed)
    for karma_a, karma_b in [(3, 30), (12, 4), (6, 6)]:
        t = next(texts)
        clusters.append([_doc(next(url), t, karma_a), _doc(next(url), _mutate(t, 0, 4, rng), karma_b)])
    # a chain A~B~C~D~E: neighbours ~0.93 similar, the ends ~0.75 (each step edits another region)
    t = next(texts)
    chain = [t]
    for lo in (0, 100, 200, 300):
        chain.append(_edit_region(chain[-1], lo, lo + 90, rng))
    clusters.append([_doc(next(url), c, k) for c, k in zip(chain, (4, 9, 2, 9, 1))])
    # a pair below the threshold (~0.5 Jaccard) and other distinct documents: all kept
    t = next(texts)
    distinct += [_doc(next(url), t, 8), _doc(next(url), _mutate(t, 0, 40, rng), 8)]
    distinct += [_doc(next(url), next(texts), rng.randrange(3, 50)) for _ in range(12)]
    distinct.append(_doc(next(url), "", 3))                             # no words: kept, never a near-duplicate
    docs = [d for c in clusters for d in c] + distinct
    return docs, clusters, distinct, chain, t


def test_planted_corpus_is_what_it_claims(planted):
    docs, clusters, distinct, chain, below = planted
    assert len({d.doc_id for d in docs}) == len(docs)
    for a, b in [(clusters[i][0].text, clusters[i][1].text) for i in (1, 2, 3)]:
        assert 0.85 < jaccard(a, b) < 0.95
    sigs = [signature(c) for c in chain]
    assert all(estimated_jaccard(sigs[i], sigs[i + 1]) >= 0.85 for i in range(4))
    assert estimated_jaccard(sigs[0], sigs[4]) < 0.8 and jaccard(chain[0], chain[4]) < 0.8   # needs the chain
    assert 0.4 < jaccard(distinct[0].text, distinct[1].text) < 0.6


def test_deduplicate_keeps_one_best_survivor_per_cluster(planted):
    docs, clusters, distinct, _, _ = planted
    kept, drops, counters = run_dedup(docs)
    survivors = [min(c, key=lambda d: (-d.karma, d.doc_id)) for c in clusters]
    assert kept == sorted(survivors + distinct)
    assert [s.karma for s in survivors] == [10, 30, 12, 6, 9]
    assert survivors[3].doc_id == min(d.doc_id for d in clusters[3])   # karma tie -> smallest doc_id
    expected_drops = []
    for i, (cluster, survivor) in enumerate(zip(clusters, survivors)):
        reason = "exact_duplicate" if i == 0 else "near_duplicate"
        expected_drops += [("dedup", reason, d.url, f"survivor={survivor.doc_id}") for d in cluster if d != survivor]
    assert drops == sorted(expected_drops)
    assert counters["dedup.in"] == len(docs) == counters["dedup.out"] + counters["dedup.drop.exact_duplicate"] + \
        counters["dedup.drop.near_duplicate"]
    assert (counters["dedup.drop.exact_duplicate"], counters["dedup.drop.near_duplicate"]) == (2, 7)
    assert counters.get("dedup.cc_unconverged", 0) == 0 and counters["dedup.near_edges"] >= 7


def test_deduplicate_is_deterministic_under_shuffled_input(planted):
    docs = list(planted[0])
    first = run_dedup(docs, tag="a")
    random.Random(11).shuffle(docs)
    assert run_dedup(docs, tag="b")[:2] == first[:2]


def test_deduplicate_switches_and_unverified_candidates(planted):
    docs, clusters, distinct, _, _ = planted
    again = distinct[2]._replace(karma=1)                               # the same URL twice: one is kept
    kept, drops, counters = run_dedup(docs + [again], DedupConfig(near=False), tag="exact")
    assert len(kept) == len(docs) - 2 and {d.reason for d in drops} == {"exact_duplicate"} and len(drops) == 3
    assert distinct[2] in kept and again not in kept
    assert ("dedup", "exact_duplicate", again.url, f"survivor={again.doc_id} (same doc_id)") in drops
    assert counters["dedup.in"] == len(docs) + 1 == len(kept) + counters["dedup.drop.exact_duplicate"]
    kept, drops, counters = run_dedup(docs, DedupConfig(exact=False, near=False), tag="off")
    assert kept == sorted(docs) and drops == [] and counters["dedup.out"] == len(docs)
    # without verification every LSH candidate counts: never fewer drops than with it
    kept, drops, counters = run_dedup(docs, DedupConfig(verify_candidates=False, max_rounds=3), tag="unverified")
    assert len(drops) >= 9 and counters["dedup.in"] == counters["dedup.out"] + len(drops)


def test_connected_components_transform_matches_union_find():
    rng = random.Random(5)
    n = lambda i: (f"{i:04d}", i % 4)                                   # noqa: E731
    order = list(range(60))
    rng.shuffle(order)
    edges = [(n(order[i]), n(order[i + 1])) for i in range(39)]         # a chain of 40 ...
    edges += [(n(40 + a), n(40 + b)) for a, b in (rng.sample(range(20), 2) for _ in range(25))]   # ... and more
    expected = _union_find(edges)
    for rounds, converged in [(6, True), (1, False)]:
        COLLECTED.pop(f"cc{rounds}", None)
        p = beam.Pipeline(runner=FnApiRunner())
        (p | beam.Create(edges) | ConnectedComponents(rounds)
         | beam.Map(lambda kv: (kv[1], kv[0])) | beam.Map(_append, name=f"cc{rounds}"))
        result = p.run()
        result.wait_until_finish()
        labels = dict(COLLECTED[f"cc{rounds}"])
        unsettled = sum(c.committed for c in result.metrics().query()["counters"]
                        if c.key.metric.name == "dedup.cc_unconverged")
        assert len(labels) == len(COLLECTED[f"cc{rounds}"])             # one label per node
        assert (labels == expected) is converged and (unsettled == 0) is converged
