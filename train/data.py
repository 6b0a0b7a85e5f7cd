"""Batches of token windows read straight from the memory-mapped Arrow shards.

Each record batch of a shard holds its tokens as one flat uint16 buffer (documents back to back, each ending in
EOT); the trainer never copies one, only the B windows of T+1 tokens it needs per micro-batch. A window is drawn
from all "starts" of all buffers of a split, uniformly, and never crosses a buffer (record batch) boundary:
  - sampling="random": every position that leaves room for T+1 tokens (nanoGPT's sampler);
  - sampling="document": only positions where a document begins.

Determinism without state: global batch n is a pure function of (seed, n). For random sampling, batch n is
world_size*B starts drawn from a generator seeded with (seed, n); for document sampling, sample k (of the whole
run) is element k mod D of the epoch's permutation of the D document starts, epoch = k // D, so every document
is read once per epoch. Process `rank` takes every world_size-th sample (rank-strided), so processes read
disjoint samples and the union over processes is the same global batch whatever the world size. The loader's
position is the counter n: that is all a checkpoint needs to continue exactly.

Shards are checked when opened, so a bad corpus fails at once with one line instead of in the embedding (a token
id >= vocab size is an IndexError on CPU, a device-side assert on a GPU) or minutes later: manifest names (plain
`{split}-i-of-n.arrow` files in the directory), the manifest's and each shard's tokenizer metadata, size and
token count against the manifest, sha256 (one streamed read; `verify=False` skips it), and the largest token id.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from core import files
from core.shard_format import SHARD_NAME as CONTRACT_NAME, file_sha256, open_shard, read_manifest, shard_token_batches
from core.tokenizer import VOCAB_SIZE, tokenizer_metadata

SHARD_NAME = re.compile(rf"^{CONTRACT_NAME.pattern}$")   # the contract's names (data/: format 2), nothing else


class ShardError(ValueError):
    """The shard directory is not what the trainer can use (one line: which file, what is wrong, what to do)."""


def checked_shards(data_dir, split: str, verify: bool = True) -> list[tuple[str, dict]]:
    """(path, manifest entry) of the split's shards, after the checks that cost no more than one read."""
    try:
        manifest = read_manifest(data_dir)
    except ValueError as e:   # json.JSONDecodeError
        raise ShardError(f"{data_dir}/manifest.json is not valid JSON ({e}); rerun the pipeline") from None
    expected = tokenizer_metadata()
    got = {k: str(v) for k, v in (manifest.get("tokenizer") or {}).items()}
    if got != expected:
        raise ShardError(f"{data_dir} was tokenized with {got or 'no recorded tokenizer'}, not this trainer's "
                         f"GPT-2 BPE ({expected['tokenizer']}, vocab sha256 {expected['vocab_sha256'][:12]}...)")
    out = []
    for entry in manifest.get("shards", []):
        name = entry.get("name", "") if isinstance(entry, dict) else ""
        if not SHARD_NAME.match(str(name)) or not str(name).rsplit("/", 1)[-1].startswith(f"{entry.get('split')}-"):
            raise ShardError(f"manifest.json in {data_dir} lists {name!r}, not a shard name like "
                             "train-00000-of-00004.arrow in that directory")
        if entry["split"] != split:
            continue
        path = files.join(str(data_dir), name)
        if not files.exists(path):
            raise ShardError(f"{path} is listed in manifest.json but missing")
        if files.is_local(path) and "bytes" in entry and Path(path).stat().st_size != entry["bytes"]:
            raise ShardError(f"{path} has {Path(path).stat().st_size:,} bytes, manifest.json says "
                             f"{entry['bytes']:,}: truncated or replaced; `webtext shards verify {data_dir}`")
        if verify and "sha256" in entry and file_sha256(path) != entry["sha256"]:
            raise ShardError(f"{path}: sha256 does not match manifest.json (corrupt or changed); "
                             f"`webtext shards verify {data_dir}` lists every problem")
        out.append((path, entry))
    return out


def _check_shard(path: str, entry: dict, parts: list, vocab_size: int) -> None:
    """`parts`: the shard's (tokens, offsets) per record batch."""
    meta = {k.decode(errors="replace"): v.decode(errors="replace")      # damaged bytes: a mismatch, not a crash
            for k, v in (open_shard(path).schema.metadata or {}).items()}
    wrong = [k for k, v in tokenizer_metadata().items() if meta.get(k) != v]
    if wrong:
        raise ShardError(f"{path}: tokenizer metadata {wrong[0]}={meta.get(wrong[0])!r} is not this trainer's "
                         f"{tokenizer_metadata()[wrong[0]]!r}")
    n_tokens = sum(len(tokens) for tokens, _ in parts)
    if "tokens" in entry and n_tokens != entry["tokens"]:
        raise ShardError(f"{path} holds {n_tokens:,} tokens, manifest.json says {entry['tokens']:,}")
    top = max((int(tokens.max()) for tokens, _ in parts if len(tokens)), default=-1)
    if top >= vocab_size:
        raise ShardError(f"{path}: token id {top} >= vocab_size {vocab_size}; these shards are not GPT-2 BPE tokens")


class TokenWindows:
    """All window starts of one split: (buffer, offset) addressed by one global index 0..num_starts-1."""

    def __init__(self, data_dir: str | Path, split: str, block_size: int, sampling: str = "random", *,
                 vocab_size: int = VOCAB_SIZE, verify: bool = True):
        self.block_size = block_size
        self.buffers: list[np.ndarray] = []  # uint16 views on the memory maps
        self.doc_starts: list[np.ndarray] = []  # document mode: int64 starts with room for a window
        counts = []
        self.shards, self.split_tokens = 0, 0  # every shard of the split, usable or not
        for path, entry in checked_shards(data_dir, split, verify):
            try:   # one buffer per record batch (each a zero-copy view; a window never crosses two)
                open_shard(path).validate(full=True)   # offsets past their buffer would be sliced short silently
                parts = shard_token_batches(path)
            except (OSError, ValueError, pa.ArrowException) as e:   # ArrowInvalid is a ValueError, not all are
                raise ShardError(f"{path} is not a readable shard ({' '.join(str(e).split())[:200]})") from None
            _check_shard(path, entry, parts, vocab_size)
            self.shards += 1
            self.split_tokens += sum(len(tokens) for tokens, _ in parts)
            for tokens, offsets in parts:
                last_start = len(tokens) - (block_size + 1)  # a window needs T+1 tokens (inputs, shifted targets)
                if last_start < 0:
                    continue  # a batch shorter than one window holds nothing we can use
                self.buffers.append(tokens)
                if sampling == "document":
                    starts = offsets[:-1]
                    starts = starts[starts <= last_start]
                    self.doc_starts.append(starts)
                    counts.append(len(starts))
                else:
                    counts.append(last_start + 1)
        self.sampling = sampling
        self.cum = np.cumsum(np.asarray(counts, dtype=np.int64))  # starts in buffers 0..i
        self.num_starts = int(self.cum[-1]) if len(counts) else 0
        self.num_tokens = sum(len(b) for b in self.buffers)

    def locate(self, starts: np.ndarray) -> list[tuple[int, int]]:
        """(buffer number, token position in that buffer) of each global start index."""
        shard = np.searchsorted(self.cum, starts, side="right")  # first buffer whose cumulative count exceeds it
        local = starts - np.concatenate([[0], self.cum])[shard]
        if self.sampling == "document":
            return [(s, int(self.doc_starts[s][i])) for s, i in zip(shard.tolist(), local.tolist())]
        return list(zip(shard.tolist(), local.tolist()))

    def windows(self, starts: np.ndarray) -> torch.Tensor:
        """(B, T+1) int64 tokens of the windows at global start indices `starts` (copies only these tokens)."""
        rows = [self.buffers[s][pos : pos + self.block_size + 1] for s, pos in self.locate(starts)]
        return torch.from_numpy(np.stack(rows).astype(np.int64))


def _to_device(batch: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device.type == "cuda":  # pinned host memory lets the copy overlap with compute
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()  # inputs (B, T), targets: the next token at each position


class TrainLoader:
    """Endless, deterministic, rank-strided micro-batches (x, y) of shape (B, T) from the train split."""

    def __init__(self, data_dir, batch_size: int, block_size: int, *, sampling: str = "random", seed: int = 1337,
                 rank: int = 0, world_size: int = 1, split: str = "train", vocab_size: int = VOCAB_SIZE,
                 verify: bool = True):
        self.data = TokenWindows(data_dir, split, block_size, sampling, vocab_size=vocab_size, verify=verify)
        if self.data.num_starts == 0:
            raise ValueError(f"no {split} shard in {data_dir} holds a window of block_size+1 = {block_size + 1} tokens")
        self.B, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.batch = 0  # global batches drawn so far: the loader's whole position
        self._perm_epoch, self._perm = -1, None

    def starts(self, n: int) -> np.ndarray:
        """Global window indices of global batch n that this process reads (a pure function of seed, n, rank)."""
        B, W, D = self.B, self.world_size, self.data.num_starts
        if self.data.sampling == "random":
            draw = np.random.default_rng([self.seed, n]).integers(0, D, size=W * B)
            return draw[self.rank :: W]
        k = n * W * B + np.arange(B) * W + self.rank  # this process's sample numbers within the whole run
        out = np.empty(B, dtype=np.int64)
        for j, kj in enumerate(k.tolist()):
            epoch = kj // D
            if epoch != self._perm_epoch:  # one permutation per epoch, cached
                self._perm_epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(D)
            out[j] = self._perm[kj % D]
        return out

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.data.windows(self.starts(self.batch))
        self.batch += 1
        return _to_device(batch, torch.device(device))

    def state_dict(self) -> dict:
        return {"batch": self.batch, "seed": self.seed, "sampling": self.data.sampling}

    def load_state_dict(self, state: dict) -> None:
        self.batch = int(state["batch"])


class ValSet:
    """A fixed set of val windows, evenly spaced over the val split, the same every evaluation and every run."""

    def __init__(self, data_dir, batch_size: int, block_size: int, num_batches: int, *, rank: int = 0,
                 world_size: int = 1, split: str = "val", vocab_size: int = VOCAB_SIZE, verify: bool = True):
        self.data = TokenWindows(data_dir, split, block_size, "random", vocab_size=vocab_size, verify=verify)
        self.B = batch_size
        self.starts: list[np.ndarray] = []
        if self.data.num_starts and num_batches > 0:
            n = num_batches * batch_size * world_size
            grid = np.linspace(0, self.data.num_starts - 1, n).astype(np.int64)
            mine = grid[rank::world_size]  # disjoint windows per process
            self.starts = [mine[i * batch_size : (i + 1) * batch_size] for i in range(num_batches)]

    def __len__(self) -> int:
        return len(self.starts)

    def batches(self, device: torch.device | str = "cpu"):
        for starts in self.starts:
            yield _to_device(self.data.windows(starts), torch.device(device))
