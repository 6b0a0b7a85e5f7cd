"""Near-duplicates: MinHash LSH banding, candidate verification, connected components, one survivor each.

Scalable shape (no in-memory index of all documents anywhere):
1. Banding (dedup/bands.py). Every sketch's band keys are written once to band files; for each band, a task
   sorts that band's keys over all files, and runs of equal keys are the LSH buckets. Most hold one document and
   end there; the members of the others go on with their signature, or where a payload file holds it.
2. Verification. Grouped by bucket, a candidate's signature is read from its payload file (once per candidate
   bucket; no other document's is). Inside a bucket every pair's estimated Jaccard (share of equal MinHash values
   over the whole signature) is compared with the threshold, so results follow the threshold rather than the
   S-curve. Only a spanning forest of the verified pairs leaves the bucket (each member -> smallest member of
   its local cluster): the same connectivity as all pairs, with fewer than k edges for k members. Buckets above
   `max_bucket` compare each member with the cluster leaders found so far (k x leaders, not k^2), which can
   miss a chain through two non-leaders: fewer merges, never wrong ones.
3. Connected components without a global index: alternating large-star / small-star rounds (Kiveris et al.
   2014), each one GroupByKey over the edges of nodes that have any; linear communication per round and
   O(log^2 n) rounds worst case (star-shaped LSH clusters settle in one). Rounds are unrolled (`max_rounds`);
   nodes not yet settled afterwards are counted as `dedup.cc_unconverged` (such a component may keep more than
   one survivor: duplicates stay, nothing is lost).
4. Survivor. Nodes grouped by component label; the survivor is the highest karma, then the smallest doc_id.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, List, Tuple

import apache_beam as beam
import numpy as np

from core import payloads
from core.records import DEDUP, Step
from dedup.config import DedupConfig
from dedup.survivor import Member, pick_survivor
from dedup.minhash import Entry, banding, entry, sig_array
from dedup.bands import BandCandidates, scratch_dir

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


def _keyed_entry(sk, bands: int, rows: int) -> Tuple[str, Entry]:
    """(fingerprint, Entry) as Deduplicate makes them (band keys computed where the document is sketched), from
    a Sketch too."""
    return sk if len(sk) == 2 and isinstance(sk[1], Entry) else (sk.fingerprint, entry(sk, bands, rows))


class _BucketEdges(Step):
    """One LSH bucket's members -> edges of its verified pairs. A member's signature comes as bytes, or as a
    payload reference read here (candidates only). Counts extras of stage "dedup" only (candidate_pairs,
    near_edges, large_buckets): documents are counted in and out once, where decisions are applied
    (dedup/transform.py)."""
    stage = DEDUP

    def __init__(self, cfg: DedupConfig, payload_dir: str | None = None):
        super().__init__()
        self.cfg, self.payload_dir = cfg, payload_dir

    def setup(self):
        self.reader = payloads.Reader(self.payload_dir) if self.payload_dir else None

    def teardown(self):
        if self.reader is not None:
            self.reader.close()

    def process(self, kv):
        _, values = kv
        sigs = defaultdict(list)
        for member, sig in values:
            sigs[tuple(member)].append(self.reader.sig(sig) if isinstance(sig, str) else sig)
        # one doc_id is one URL; should it come twice, every run picks the same signature
        members = [(m, sig_array(min(found))) for m, found in sigs.items()]
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
    """(fingerprint, Entry) pairs, or Sketches -> drop decisions (doc_id, ("near_duplicate", survivor doc_id)) for
    all but one per cluster. With `cfg.exact`, of the documents that share a fingerprint only the exact survivor
    takes part (the others are exact duplicates)."""

    def __init__(self, cfg: DedupConfig = DedupConfig(), payload_dir: str | None = None,
                 scratch_dir: str | None = None):
        super().__init__()
        self.cfg, self.payload_dir = cfg, payload_dir
        self.scratch_dir = scratch_dir   # where the band files go (dedup/bands.py); a temporary folder if None

    def expand(self, sketches):
        bands, rows = banding(self.cfg)
        candidates = (sketches
                      | "AsEntries" >> beam.Map(_keyed_entry, bands, rows)
                      | "Buckets" >> BandCandidates(self.scratch_dir or scratch_dir(), bands,
                                                    with_sig=self.cfg.verify_candidates, exact=self.cfg.exact))
        edges = (candidates
                 | "GroupByBucket" >> beam.GroupByKey()
                 | "VerifyBucket" >> beam.ParDo(_BucketEdges(self.cfg, self.payload_dir)))
        return (edges
                | "Components" >> ConnectedComponents(self.cfg.max_rounds)
                | "GroupByComponent" >> beam.GroupByKey()
                | "PickSurvivor" >> beam.FlatMap(lambda kv: near_decisions(kv[1])))
