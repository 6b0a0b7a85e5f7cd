"""Near-duplicates: MinHash LSH banding, candidate verification, connected components, one survivor each.

Scalable shape (no in-memory index of all documents anywhere):
1. Banding. Every sketch emits one record per band, keyed (band index, band hash), valued (doc_id, karma).
   Grouped by that key they are the LSH buckets; most hold one document and end there. The records are gathered
   by (band, hash % SPREAD) with a combiner (one byte string per gathered key, not one object per record) and the
   buckets are found inside each gathered key.
2. Verification. Only the members of buckets with two or more documents fetch their signature (a join by
   doc_id with the sketches), so the signature crosses the shuffles once per document and once per candidate
   bucket, not once per band. Inside a bucket every pair's estimated Jaccard (share of equal MinHash values over the whole
   signature) is compared with the threshold, so results follow the threshold rather than the S-curve. Only a
   spanning forest of the verified pairs leaves the bucket (each member -> smallest member of its local
   cluster): the same connectivity as all pairs, with fewer than k edges for k members. Buckets above
   `max_bucket` compare each member with the cluster leaders found so far (k x leaders, not k^2), which can
   miss a chain through two non-leaders: fewer merges, never wrong ones.
   Shuffle cost per document: bands x ~30 B of keys and ids, plus the 4*bands*rows-byte signature once (twice
   for a document in a candidate bucket); it was bands x the signature, 7.4 KB at 13 x 7 bands and rows.
3. Connected components without a global index: alternating large-star / small-star rounds (Kiveris et al.
   2014), each one GroupByKey over the edges of nodes that have any; linear communication per round and
   O(log^2 n) rounds worst case (star-shaped LSH clusters settle in one). Rounds are unrolled (`max_rounds`);
   nodes not yet settled afterwards are counted as `dedup.cc_unconverged` (such a component may keep more than
   one survivor: duplicates stay, nothing is lost).
4. Survivor. Nodes grouped by component label; the survivor is the highest karma, then the smallest doc_id.
"""
from __future__ import annotations

import pickle
from collections import defaultdict
from typing import Dict, Iterable, List, Tuple

import apache_beam as beam
import numpy as np

from core import payloads
from core.records import DEDUP, Step
from dedup.config import DedupConfig
from dedup.survivor import Member, pick_survivor
from dedup.minhash import Entry, band_keys, banding, entry_band_keys, sig_array
from dedup.gather import GatherBytes, framed, gather_key, records
from dedup.packed import pack_id, pack_member, read_varint, unpack_member, varint

NEAR = "near_duplicate"
Edge = Tuple[Member, Member]


# ------------------------------------------------------------------------------------------- buckets
def bucket_edges(members: Iterable[Tuple[Member, np.ndarray]], threshold: float = 0.8, verify: bool = True,
                 max_bucket: int = 1000) -> Tuple[List[Edge], int]:
    """Edges (root, member) of a spanning forest over one bucket's verified pairs, and the pairs compared.

    Without verification every bucket member is a candidate duplicate of the smallest one (a star).
    """
    sigs = {}
    for member, sig in members:
        sigs.setdefault(tuple(member), sig)          # one doc_id listed twice is one node
    nodes = sorted(sigs)
    k = len(nodes)
    if k < 2:
        return [], 0
    if not verify:
        return [(nodes[0], m) for m in nodes[1:]], 0
    S = np.stack([np.asarray(sigs[m]) for m in nodes])
    parent = list(range(k))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):                                 # the root is the smaller index = the smaller member
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    compared = 0
    if k <= max_bucket:                              # all pairs, one vectorized row at a time
        for i in range(k - 1):
            similar = np.nonzero((S[i + 1:] == S[i]).mean(axis=1) >= threshold)[0]
            for j in similar:
                union(i, i + 1 + int(j))
            compared += k - 1 - i
    else:                                            # leaders: compare with one representative per cluster
        leaders = np.empty_like(S)
        leader_ids: List[int] = []
        for i in range(k):
            if leader_ids:
                similar = np.nonzero((leaders[:len(leader_ids)] == S[i]).mean(axis=1) >= threshold)[0]
                compared += len(leader_ids)
                for j in similar:
                    union(leader_ids[int(j)], i)
                if len(similar):
                    continue
            leaders[len(leader_ids)] = S[i]
            leader_ids.append(i)
    return [(nodes[find(i)], nodes[i]) for i in range(k) if find(i) != i], compared


def _band_records(sk, bands: int, rows: int):
    """((band, hash), packed (doc_id, karma)) per band; none for a text without words. Takes a Sketch or an
    Entry (band keys computed before the exact shuffle)."""
    if isinstance(sk, Entry):
        keys = entry_band_keys(sk)
    else:
        keys = band_keys(sig_array(sk.sig), bands, rows) if sk.sig else []
    member = pack_member(sk.doc_id, sk.karma)
    return [(key, member) for key in keys]


def _sig_or_ref(sk):
    """What the signature join carries per document: (its gathered key, framed id + the signature, or where to
    read it (a payload ref)). Every document crosses this join, so it is gathered (dedup/gather.py): ~30 B of
    compressed bytes each instead of a key, a list and a tagged value in a CoGroupByKey (~0.4 KB)."""
    doc_id = pack_id(sk.doc_id)
    if isinstance(sk, Entry) and sk.ref:
        body = _REF + sk.ref.encode("utf-8")
    else:
        body = _SIG + sk.sig
    return gather_key(doc_id), framed(_HAS + varint(len(doc_id)) + doc_id + body)


def _wanted(kv):
    """A candidate (doc_id, (bucket key, member)) -> (its gathered key, framed record): joins _sig_or_ref's."""
    doc_id, want = kv
    packed = pack_id(doc_id)
    return gather_key(packed), framed(_WANT + varint(len(packed)) + packed + pickle.dumps(want, protocol=5))


_HAS, _WANT, _REF, _SIG = b"S", b"W", b"R", b"B"


def _candidates(kv):
    """One bucket -> (doc_id, (bucket key, member)) per member of a bucket that holds two or more documents."""
    key, members = kv
    members = sorted(map(unpack_member, set(members)))
    if len(members) < 2:
        return []
    return [(m[0], (key, m)) for m in members]


# LSH buckets are gathered SPREAD to a band: most buckets hold one document, and a shuffle of one small record
# per band and document costs the local runner ~230 B of Python objects each (a key, a list, a value: ~3 KB per
# document at 13 bands). Gathered by a combiner, a band's records travel as one byte string per gathered key and
# bundle (~35 B per record): the runner lifts the combiner, so the records are joined where they are produced.
SPREAD = 512


def _gathered_band_records(sk, bands: int, rows: int):
    """((band, hash % SPREAD), hash (8 bytes) + member length (1) + packed member) per band of a sketch: ~20 B."""
    out = []
    for (band, h), member in _band_records(sk, bands, rows):
        out.append(((band, h % SPREAD), h.to_bytes(8, "little") + varint(len(member)) + member))
    return out


class _Gather(beam.CombineFn):
    """Concatenates byte strings (order does not matter: buckets are sets)."""

    def create_accumulator(self):
        return bytearray()

    def add_input(self, acc, record):
        acc += record
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        out = bytearray(next(accs, b""))
        for a in accs:
            out += a
        return out

    def extract_output(self, acc):
        return bytes(acc)


def _gathered_candidates(kv):
    """One gathered key's records -> the candidates of every bucket (band, hash) among them with >= 2 members."""
    (band, _), blob = kv
    buckets: Dict[int, set] = defaultdict(set)
    view, i = memoryview(blob), 0
    while i < len(view):
        h = int.from_bytes(view[i:i + 8], "little")
        n, i = read_varint(view, i + 8)
        buckets[h].add(bytes(view[i:i + n]))
        i += n
    out = []
    for h in sorted(buckets):
        if len(buckets[h]) > 1:
            out += _candidates(((band, h), buckets[h]))
    return out


def _with_signature(kv, reader=None):
    """One gathered key's signatures and candidates -> (bucket key, (member, signature)) per candidate bucket of
    each wanted document. Only candidates get here: a signature in a payload file is read for them alone."""
    _, chunks = kv
    sigs, wants = defaultdict(list), defaultdict(list)
    for record in records(chunks):
        n, i = read_varint(record, 1)
        doc_id, body = bytes(record[i:i + n]), record[i + n:]
        if record[:1] == _WANT:
            wants[doc_id].append(pickle.loads(body))
        else:
            sigs[doc_id].append(bytes(body))
    out = []
    for doc_id in sorted(wants):
        found = [reader.sig(b[1:].decode("utf-8")) if b[:1] == _REF else b[1:] for b in sigs.get(doc_id, ())]
        if not found:
            continue
        sig = min(found)     # one doc_id is one URL; should it come twice, every run picks the same signature
        out += [(key, (member, sig)) for key, member in sorted(wants[doc_id])]
    return out


class _WithSignature(beam.DoFn):
    def __init__(self, payload_dir):
        self.payload_dir = payload_dir

    def setup(self):
        self.reader = payloads.Reader(self.payload_dir) if self.payload_dir else None

    def teardown(self):
        if self.reader is not None:
            self.reader.close()

    def process(self, kv):
        return _with_signature(kv, self.reader)


class _BucketEdges(Step):
    """Counts extras of stage "dedup" only (candidate_pairs, near_edges, large_buckets): documents are counted
    in and out once, where decisions are applied (dedup/transform.py)."""
    stage = DEDUP

    def __init__(self, cfg: DedupConfig):
        super().__init__()
        self.cfg = cfg

    def process(self, kv):
        _, values = kv
        members = [(tuple(m), sig_array(sig)) for m, sig in values]
        if len(members) > self.cfg.max_bucket:
            self.count("large_buckets")
        edges, compared = bucket_edges(members, self.cfg.threshold, self.cfg.verify_candidates, self.cfg.max_bucket)
        self.count("candidate_pairs", compared)
        self.count("near_edges", len(edges))
        return edges


# ------------------------------------------------------------------------------------------- components
def large_star(node: Member, neighbours: Iterable[Member]) -> List[Edge]:
    """Hang every larger neighbour of `node` on the smallest node of its neighbourhood."""
    nbrs = set(neighbours) - {node}
    m = min(nbrs | {node})
    return [(v, m) for v in nbrs if v > node]


def small_star(node: Member, neighbours: Iterable[Member]) -> List[Edge]:
    """Hang `node` and its smaller neighbours on the smallest of them."""
    smaller = {v for v in neighbours if v < node} | {node}
    m = min(smaller)
    return [(v, m) for v in smaller if v != m]


def _neighbourhoods(edges: Iterable[Edge]) -> Dict[Member, set]:
    nbrs = defaultdict(set)
    for a, b in edges:
        if a != b:
            nbrs[a].add(b)
            nbrs[b].add(a)
    return nbrs


def star_label(node: Member, neighbours: Iterable[Member]) -> Tuple[str, bool]:
    """Component label (smallest doc_id in reach) and whether this node is settled: a root (no smaller
    neighbour) or a leaf hanging on exactly one smaller node. All nodes settled <=> every component is a star."""
    nbrs = set(neighbours) - {node}
    m = min(nbrs | {node})
    return m[0], m == node or len(nbrs) == 1


def connected_components(edges: Iterable[Edge], max_rounds: int = 10) -> Tuple[Dict[Member, str], int, bool]:
    """In-memory run of the same rounds (tests, small local runs): node -> label doc_id, rounds used, converged."""
    edges = list(edges)
    for rounds in range(1, max_rounds + 1):
        edges = [e for u, n in _neighbourhoods(edges).items() for e in large_star(u, n)]
        edges = [e for u, n in _neighbourhoods(edges).items() for e in small_star(u, n)]
        labels = {u: star_label(u, n) for u, n in _neighbourhoods(edges).items()}
        if all(settled for _, settled in labels.values()):
            break
    return ({u: label for u, (label, _) in labels.items()}, rounds,
            all(settled for _, settled in labels.values()))


class _Star(beam.PTransform):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def expand(self, edges):
        return (edges
                | "BothWays" >> beam.FlatMap(lambda e: [(e[0], e[1]), (e[1], e[0])] if e[0] != e[1] else [])
                | "GroupByNode" >> beam.GroupByKey()
                | "Hang" >> beam.FlatMap(lambda kv, op: op(kv[0], kv[1]), self.op))


class _Label(Step):
    stage = DEDUP

    def process(self, kv):
        node, neighbours = kv
        label, settled = star_label(node, neighbours)
        if not settled:
            self.count("cc_unconverged")
        yield label, node


class ConnectedComponents(beam.PTransform):
    """Edges (member, member) -> (label doc_id, member) for every node that has an edge.

    Alternating large-star / small-star rounds (Kiveris et al., "Connected Components in MapReduce and
    Beyond", 2014): each is one GroupByKey over the edges, never grows the edge count, and turns every component
    into a star around its smallest node. Clusters found by LSH are usually stars already (one round); a path
    of 1,000 documents needs ~10 rounds, of 100,000 ~17.
    """

    def __init__(self, max_rounds: int = 10):
        super().__init__()
        self.max_rounds = max_rounds

    def expand(self, edges):
        for r in range(1, self.max_rounds + 1):
            edges = (edges
                     | f"LargeStar{r}" >> _Star(large_star)
                     | f"SmallStar{r}" >> _Star(small_star))
        return (edges
                | "BothWays" >> beam.FlatMap(lambda e: [(e[0], e[1]), (e[1], e[0])])
                | "GroupByNode" >> beam.GroupByKey()
                | "Label" >> beam.ParDo(_Label()))


# ------------------------------------------------------------------------------------------- survivors
def near_decisions(members: Iterable[Member]):
    """(doc_id, (NEAR, survivor doc_id)) for every member of one component except its survivor."""
    members = set(members)
    survivor = pick_survivor(members)
    for doc_id, _ in sorted(members):
        if doc_id != survivor[0]:
            yield doc_id, (NEAR, survivor[0])


class NearDuplicates(beam.PTransform):
    """Sketches -> drop decisions (doc_id, ("near_duplicate", survivor doc_id)) for all but one per cluster."""

    def __init__(self, cfg: DedupConfig = DedupConfig(), payload_dir: str | None = None):
        super().__init__()
        self.cfg, self.payload_dir = cfg, payload_dir

    def expand(self, sketches):
        bands, rows = banding(self.cfg)
        candidates = (sketches
                      | "Bands" >> beam.FlatMap(_gathered_band_records, bands, rows)
                      | "GatherBands" >> beam.CombinePerKey(_Gather())
                      | "Candidates" >> beam.FlatMap(_gathered_candidates))
        if self.cfg.verify_candidates:   # the signature joins the candidates that need it, once per bucket
            signatures = sketches | "SigById" >> beam.Map(_sig_or_ref)
            candidates = ((signatures, candidates | "Wanted" >> beam.Map(_wanted))
                          | "JoinSignatures" >> GatherBytes()
                          | "WithSignature" >> beam.ParDo(_WithSignature(self.payload_dir)))
        else:
            candidates = candidates | "NoSignature" >> beam.MapTuple(lambda _, km: (km[0], (km[1], b"")))
        edges = (candidates
                 | "GroupByBucket" >> beam.GroupByKey()
                 | "VerifyBucket" >> beam.ParDo(_BucketEdges(self.cfg)))
        return (edges
                | "Components" >> ConnectedComponents(self.cfg.max_rounds)
                | "GroupByComponent" >> beam.GroupByKey()
                | "PickSurvivor" >> beam.FlatMap(lambda kv: near_decisions(kv[1])))
