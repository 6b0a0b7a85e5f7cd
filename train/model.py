"""GPT-2, nanoGPT-style: pre-LayerNorm transformer decoder with tied input/output embeddings.

Parameter names follow OpenAI's GPT-2 checkpoint (transformer.wte, transformer.h.N.attn.c_attn, ...), so weights
map one-to-one onto Hugging Face's GPT2LMHeadModel (which stores Conv1D weights transposed).

Shape letters: B batch, T sequence length, C n_embd, H n_head, D head size (C // H), V vocab size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB_SIZE = 50257  # GPT-2's BPE (tiktoken's r50k_base): 50,000 merges + 256 bytes + <|endoftext|>


@dataclass
class GPTConfig:
    block_size: int = 1024  # context length T_max
    vocab_size: int = VOCAB_SIZE  # 50257; 50304 (a multiple of 64) is faster on GPUs, the extra rows are never targets
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0


# The paper's four sizes (GPT-2 Table 2; 117M/345M/762M/1542M there, exact counts of the released weights here)
# and tiny ones for tests and CPU runs.
MODEL_CONFIGS: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    "gpt2-mini": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),  # ~30M, a workstation-sized run
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=64),  # ~3.3M (mostly the embedding), CI
}


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        # Flash attention on CUDA; the causal mask is implicit.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 used the tanh approximation
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # pre-LN: normalize the branch input, keep the residual stream clean
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),  # token embeddings (V, C)
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),  # learned positions (T_max, C)
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=nn.LayerNorm(cfg.n_embd),  # GPT-2 added a final LayerNorm after the last block
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying: one (V, C) matrix, counted once

        self.apply(self._init_weights)
        # GPT-2: "scale the weights of residual layers at initialization by 1/sqrt(N)", N = residual layers = 2 per block
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, tied weights once. non_embedding drops the position table (a lookup, no FLOPs); the token
        table stays in because as lm_head it is a full matmul."""
        n = sum(p.numel() for p in self.parameters())  # parameters() de-duplicates the tied matrix
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (B, T) token ids -> logits (B, T, V); with targets (B, T) also the mean cross-entropy loss."""
        B, T = idx.shape
        assert T <= self.config.block_size, f"sequence of {T} tokens > block_size {self.config.block_size}"
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        if targets is None:
            return logits, None
        # Upcast for the softmax under bf16 autocast. With a padded vocab the extra logits only enter the
        # normalizer; they are never targets and training pushes them to -inf.
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def flops_per_token(self, T: int | None = None) -> int:
        """Training FLOPs per token (forward + backward): 6N for the matmuls with the weights plus 12·L·C·T for
        attention scores and weighted values (PaLM appendix B; nanoGPT estimate_mfu). C = H·D."""
        cfg = self.config
        T = T or cfg.block_size
        return 6 * self.num_params(non_embedding=True) + 12 * cfg.n_layer * cfg.n_embd * T

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample max_new_tokens continuations of idx (B, T); returns (B, T + max_new_tokens)."""
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]  # crop to the context the model knows
            logits, _ = self(context)
            logits = logits[:, -1, : VOCAB_SIZE].float()  # (B, V); never sample padded vocab rows
            if temperature <= 0:  # greedy
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k > 0:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            idx = torch.cat([idx, next_id], dim=1)
        return idx


# Peak dense bf16 tensor throughput by device name (first match wins), FLOP/s. MFU is only reported where the peak
# is known. The H100 PCIe card runs the same chip at lower clocks.
PEAK_BF16_FLOPS = {"H100 PCIE": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device_name: str) -> float | None:
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in device_name.upper():
            return flops
    return None
