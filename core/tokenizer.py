"""GPT-2 BPE through tiktoken, working offline.

`tiktoken.get_encoding("gpt2")` downloads its vocabulary at first use, which fails offline. GPT-2's ranks are
byte-for-byte tiktoken's `r50k_base` file, so we build the Encoding from a local copy of that file (checked by
sha256). `make install` places one in the user cache (taken from the openai-whisper sdist on PyPI, which ships it
as whisper/assets/gpt2.tiktoken); `python -m core.tokenizer --fetch` does the same by hand.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import List

import tiktoken

from core import files

EOT = 50256                  # <|endoftext|>: appended after every document
VOCAB_SIZE = 50257
TOKENIZER_NAME = "gpt2"
VOCAB_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
WHISPER_SDIST = "openai-whisper==20250625"
ENV_VAR = "WEBTEXT_GPT2_VOCAB"


class TokenizerUnavailable(RuntimeError):
    pass


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "webtext" / "gpt2.tiktoken"


def _candidates() -> List[Path]:
    paths = []
    if os.environ.get(ENV_VAR):
        paths.append(Path(os.environ[ENV_VAR]))
    paths.append(cache_path())
    # a worker of a cluster: the copy that the package carries (see pipeline/worker_package.py)
    paths.append(Path(__file__).resolve().parent / "assets" / "gpt2.tiktoken")
    return paths


def _ranks_from_bytes(data: bytes) -> dict:
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """The GPT-2 Encoding: from a verified local vocab file, else tiktoken's own (network) loader."""
    from tiktoken_ext.openai_public import r50k_pat_str   # the GPT-2 split pattern, as tiktoken defines it

    for path in _candidates():
        if path.is_file():
            data = path.read_bytes()
            if _sha256(data) != VOCAB_SHA256:
                raise TokenizerUnavailable(
                    f"{path} is not the GPT-2 vocabulary (sha256 mismatch); delete it and run "
                    "`python -m core.tokenizer --fetch`")
            return tiktoken.Encoding(name=TOKENIZER_NAME, pat_str=r50k_pat_str, mergeable_ranks=_ranks_from_bytes(data),
                                     special_tokens={"<|endoftext|>": EOT}, explicit_n_vocab=VOCAB_SIZE)
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # offline: tiktoken's download fails with one of several network errors
        raise TokenizerUnavailable(
            f"GPT-2 vocabulary not found ({e.__class__.__name__}); run `make install` or "
            f"`python -m core.tokenizer --fetch`, or set {ENV_VAR}=/path/to/gpt2.tiktoken") from None


def encode_document(text: str) -> List[int]:
    """Tokens of one document: ordinary BPE (special-token text stays text) + EOT."""
    tokens = get_encoding().encode_ordinary(text)
    tokens.append(EOT)
    return tokens


def decode(tokens) -> str:
    return get_encoding().decode([int(t) for t in tokens])


def tokenizer_metadata() -> dict:
    return {"tokenizer": TOKENIZER_NAME, "vocab_sha256": VOCAB_SHA256, "eot": str(EOT), "vocab_size": str(VOCAB_SIZE)}


def fetch_vocab(dest: Path | None = None) -> Path:
    """Download the openai-whisper sdist from the package index and take its gpt2.tiktoken (verified)."""
    dest = dest or cache_path()
    if dest.is_file() and _sha256(dest.read_bytes()) == VOCAB_SHA256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        WHISPER_SDIST, "-d", tmp], check=True, stdout=subprocess.DEVNULL)
        sdist = next(Path(tmp).glob("*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken"))
            data = tar.extractfile(member).read()
    if _sha256(data) != VOCAB_SHA256:
        raise TokenizerUnavailable(f"{WHISPER_SDIST} carried an unexpected gpt2.tiktoken (sha256 mismatch)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(dest, data)
    return dest


if __name__ == "__main__":
    if "--fetch" in sys.argv:
        print(fetch_vocab())
    else:
        print(encode_document(" ".join(sys.argv[1:]) or "hello world"))
