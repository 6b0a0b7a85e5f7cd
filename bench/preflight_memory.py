"""How close is train/preflight.py's micro-batch memory estimate to a real CPU step? Prints estimate/measured.

    python bench/preflight_memory.py [B T n_embd n_layer]   (default: two sizes)
The check errors only above the device's total memory, so an estimate a little under the truth never refuses a run
that fits. Measured: peak RSS growth over two AdamW steps (ru_maxrss), in a fresh process per size.
"""
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from dataclasses import replace  # noqa: E402

from train.config import load_config  # noqa: E402
from train.model import GPT  # noqa: E402
from train.preflight import micro_batch_bytes  # noqa: E402

if len(sys.argv) < 5:
    for size in (["8", "256", "128", "2"], ["16", "512", "256", "4"]):
        subprocess.run([sys.executable, __file__, *size], check=True)
    sys.exit(0)
torch.set_num_threads(1)
B, T, d, L = (int(a) for a in sys.argv[1:5])
cfg = replace(load_config("tiny"), batch_size=B, block_size=T, n_embd=d, n_layer=L, n_head=4)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
model = GPT(cfg.model_config())
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x = torch.randint(0, 50257, (B, T))
for _ in range(2):
    _, loss = model(x, x); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
est = micro_batch_bytes(cfg, model.num_params(), bf16=False)
print(f"B={B} T={T} d={d} L={L}: measured peak RSS growth {peak/2**20:,.0f} MiB, estimate {est/2**20:,.0f} MiB, ratio est/measured {est/peak:.2f}")
