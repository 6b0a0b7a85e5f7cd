"""GPT-2 model: same function as Hugging Face's reference implementation, the released sizes' exact parameter
counts, a sane initialization, causality, FLOPs/MFU bookkeeping."""

import math

import pydoc_data.topics
import pytest
import torch

from core.tokenizer import EOT, VOCAB_SIZE, encode_document
from train.config import PRESETS, TrainConfig
from train.model import GPT, MODEL_CONFIGS, GPTConfig, peak_flops
from train.train import make_optimizer

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def test_logits_match_huggingface_gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ours = GPT(GPTConfig(block_size=64, vocab_size=1000, n_layer=2, n_head=4, n_embd=64)).eval()
    hf_cfg = transformers.GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    # Same names; transformers stores its Conv1D weights as (in, out), i.e. our nn.Linear weights transposed.
    state = {k: (v.t() if k.endswith(CONV1D) else v) for k, v in ours.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if not k.endswith(".attn.bias")]
    idx = torch.randint(0, 1000, (3, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours_logits, _ = ours(idx)
        hf_logits = hf(idx).logits
    torch.testing.assert_close(ours_logits, hf_logits, atol=1e-5, rtol=1e-5)
    # ...and our loss is the standard next-token cross-entropy
    with torch.no_grad():
        _, loss = ours(idx[:, :-1], idx[:, 1:])
        hf_loss = hf(idx, labels=idx).loss
    assert loss.item() == pytest.approx(hf_loss.item(), abs=1e-5)


@pytest.mark.parametrize("name, expected", [
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200),
])
def test_exact_parameter_counts_of_the_released_sizes(name, expected):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = GPT(TrainConfig(**PRESETS[name]).model_config())
    assert model.num_params() == expected  # tied wte/lm_head counted once
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.num_params(non_embedding=True) == expected - 1024 * model.config.n_embd


def test_parameter_names_follow_the_gpt2_checkpoint():
    with torch.device("meta"):
        names = set(GPT(GPTConfig(**MODEL_CONFIGS["tiny"])).state_dict())
    for name in ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.ln_1.weight",
                 "transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.c_proj.bias", "transformer.h.0.ln_2.bias",
                 "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight", "transformer.ln_f.weight",
                 "lm_head.weight"]:
        assert name in names


def test_initial_loss_of_the_124m_model_is_uniform_over_the_vocabulary():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**MODEL_CONFIGS["gpt2"])).eval()
    text = next(iter(pydoc_data.topics.topics.values()))
    tokens = torch.tensor(encode_document(text)[:129])[None]  # real English text
    with torch.no_grad():
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
    assert abs(loss.item() - math.log(VOCAB_SIZE)) < 0.2  # ln(50257) = 10.82: no token favoured yet
    # residual projections start smaller (GPT-2: scaled by 1/sqrt(number of residual layers))
    std = model.transformer.h[0].mlp.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(2 * 12), rel=0.05)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**MODEL_CONFIGS["tiny"])).eval()
    a = torch.randint(0, VOCAB_SIZE, (1, 20))
    b = a.clone()
    b[0, 12:] = torch.randint(0, VOCAB_SIZE, (8,))  # change only the future
    with torch.no_grad():
        la, lb = model(a)[0], model(b)[0]
    torch.testing.assert_close(la[:, :12], lb[:, :12])
    assert not torch.allclose(la[:, 12:], lb[:, 12:])


def test_padded_vocabulary_is_never_sampled():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**dict(MODEL_CONFIGS["tiny"], vocab_size=50304))).eval()
    with torch.no_grad():
        model.lm_head.weight[VOCAB_SIZE:] = 10.0  # make the padding rows the most likely "tokens"
    out = model.generate(torch.tensor([[EOT]]), 8, temperature=1.0, top_k=5)
    assert out.shape == (1, 9) and int(out.max()) < VOCAB_SIZE


def test_weight_decay_only_on_matrices():
    model = GPT(GPTConfig(**MODEL_CONFIGS["tiny"]))
    decay, no_decay = make_optimizer(model, TrainConfig(), "cpu").param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()


def test_flops_per_token_and_peak():
    with torch.device("meta"):
        model = GPT(GPTConfig(**MODEL_CONFIGS["gpt2"]))
    n = 124_439_808 - 1024 * 768  # the position table is a lookup, not a matmul
    assert model.flops_per_token() == 6 * n + 12 * 12 * 768 * 1024
    assert model.flops_per_token() / 1e9 == pytest.approx(0.855, abs=1e-3)  # nanoGPT's ~0.86 GFLOP/token
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert peak_flops("Tesla T4") is None
