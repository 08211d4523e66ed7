"""Tests for ropekit.model: operators against the papers' formulas, every position scheme
against the library functions called directly and against explicit rotation matrices,
KV-cache decoding against the full forward, layout permutation, save/load, the Hugging Face
export against transformers, and the committed checkpoints against their model cards.

Tiny float64 models on the CPU; the whole module runs in well under a minute.
"""

import json
import math
from pathlib import Path

import pytest
import torch

import ropekit
from ropekit.data import validation_windows
from ropekit.model import (
    KVCache,
    ModelConfig,
    PositionScheme,
    RMSNorm,
    SwiGLU,
    TinyLlama,
    export_hf,
    load,
    load_hf,
    save,
)
from ropekit.model.io import read_safetensors, write_safetensors

ROOT = Path(__file__).resolve().parents[1]
L = 16  # training length of the tiny test models
SCHEMES = {
    "rope": PositionScheme(),
    "pi": PositionScheme("pi", factor=4),
    "ntk": PositionScheme("ntk", factor=4),
    "dynamic": PositionScheme("dynamic", factor=2),
    "yarn": PositionScheme("yarn", factor=4),
    "llama3": PositionScheme("llama3", factor=4),
    "rerope": PositionScheme("rerope", window=5),
    "leaky_rerope": PositionScheme("leaky_rerope", window=5, factor=3),
    "nope": PositionScheme("nope"),
    "rope_log_n": PositionScheme(log_n=True),
    "ntk_log_n": PositionScheme("ntk", factor=4, log_n=True),
    "rerope_log_n": PositionScheme("rerope", window=5, log_n=True),
}


def tiny(layout="half", rotary_dim=None, log_n_trained=False, seed=0, **sizes):
    torch.manual_seed(seed)
    config = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=96, train_length=L)
    config.update(sizes)
    model = TinyLlama(ModelConfig(**config, layout=layout, rotary_dim=rotary_dim, log_n_trained=log_n_trained))
    return model.double().eval()


def tokens(batch=2, seq=40, seed=1):
    return torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(seed))


# --- RMSNorm and SwiGLU, from the papers ---------------------------------------------------


def test_rmsnorm_is_x_over_its_root_mean_square_times_gain():
    """Zhang & Sennrich 2019, eq. 4: ā_i = a_i / RMS(a) · g_i, RMS(a) = √(1/n Σ a_i²) (+ ε)."""
    torch.manual_seed(0)
    norm = RMSNorm(6, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6, dtype=torch.float64))
    x = torch.randn(3, 6, dtype=torch.float64) * 5
    expected = torch.empty_like(x)
    for r in range(3):
        rms = math.sqrt(sum(v * v for v in x[r].tolist()) / 6 + 1e-5)
        expected[r] = torch.tensor([x[r, i].item() / rms * norm.weight[i].item() for i in range(6)], dtype=torch.float64)
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)


def test_swiglu_is_the_gated_product_of_two_projections():
    """Shazeer 2020, eq. 6: FFN_SwiGLU(x) = (Swish_1(x W) ⊗ x V) W_2, Swish_1(z) = z σ(z)."""
    torch.manual_seed(0)
    mlp = SwiGLU(8, 12).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    W, V, W2 = mlp.gate.weight.T, mlp.up.weight.T, mlp.down.weight.T
    z = x @ W
    expected = ((z * (1 / (1 + torch.exp(-z)))) * (x @ V)) @ W2
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)
    # ... which is not SiLU of a single projection
    assert not torch.allclose(mlp(x), torch.nn.functional.silu(x @ V) @ W2)


# --- each scheme against ropekit's functions called directly -----------------------------


def _direct_attention(q, k, v, scheme, config):
    """The attention of one layer computed from the library with hand-written frequencies.

    q, k, v: (batch, seq, heads, head_dim) unrotated, as captured from the model.
    """
    seq, rd, base = q.shape[1], config.rotary_dim, config.rope_base
    att = 1.0
    if scheme.name == "nope":
        inv_freq = torch.zeros(rd // 2)
    elif scheme.name == "pi":
        inv_freq, att = ropekit.rope_frequencies(rd, base, "linear", factor=scheme.factor)
    elif scheme.name == "ntk":
        inv_freq, att = ropekit.rope_frequencies(rd, base, "ntk", factor=scheme.factor)
    elif scheme.name == "dynamic":
        inv_freq, att = ropekit.rope_frequencies(rd, base, "dynamic", factor=scheme.factor, seq_len=seq,
                                                 original_max_position_embeddings=L)
    elif scheme.name == "yarn":
        inv_freq, att = ropekit.rope_frequencies(rd, base, "yarn", factor=scheme.factor, original_max_position_embeddings=L)
    elif scheme.name == "llama3":
        inv_freq, att = ropekit.rope_frequencies(rd, base, "llama3", factor=scheme.factor, low_freq_factor=1.0,
                                                 high_freq_factor=4.0, original_max_position_embeddings=L)
    else:
        inv_freq, att = ropekit.rope_frequencies(rd, base)
    n = torch.arange(1, seq + 1, dtype=torch.float64)  # token number n = position + 1
    if config.log_n_trained:
        q = q * (n.log() / math.log(L))[:, None, None]
    elif scheme.log_n and not scheme.is_rerope:
        q = q * (n.log() / math.log(L)).clamp(min=1)[:, None, None]
    if scheme.is_rerope:
        return ropekit.rerope_attention(q, k, v, inv_freq, scheme.window, leaky_factor=scheme.leaky_factor,
                                        log_n_train_length=L if scheme.log_n else None, layout=config.layout)
    return ropekit.rope_attention(q, k, v, inv_freq, attention_factor=att, layout=config.layout)


@pytest.mark.parametrize("name", SCHEMES)
def test_every_scheme_is_the_library_attention_called_directly(name):
    model, x = tiny(rotary_dim=8), tokens(seq=24)
    capture = []
    model(x, SCHEMES[name], capture=capture)
    for layer in capture:
        expected = _direct_attention(layer["q"], layer["k"], layer["v"], SCHEMES[name], model.config)
        torch.testing.assert_close(layer["out"], expected, rtol=1e-12, atol=1e-12)


def test_a_model_trained_with_log_n_scales_its_queries_by_log_L_n_everywhere():
    model, x = tiny(log_n_trained=True), tokens(seq=24)
    for scheme in (PositionScheme(), PositionScheme("rerope", window=5)):
        capture = []
        model(x, scheme, capture=capture)
        expected = _direct_attention(capture[0]["q"], capture[0]["k"], capture[0]["v"], scheme, model.config)
        torch.testing.assert_close(capture[0]["out"], expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="trained with log-n"):
        model(x, PositionScheme(log_n=True))


def _explicit_logits(q, k, rel, inv_freq, layout, factor=1.0):
    """a_ij = q_iᵀ R_{−rel_ij} k_j / √d (times factor²), with dense float64 rotation matrices."""
    seq, d = q.shape
    logits = torch.full((seq, seq), float("-inf"), dtype=torch.float64)
    for i in range(seq):
        for j in range(i + 1):
            R = ropekit.rotation_matrix(-float(rel[i, j]), d, layout=layout, inv_freq=inv_freq)
            logits[i, j] = factor**2 * (q[i] @ R @ k[j]) / math.sqrt(d)
    return logits


@pytest.mark.parametrize("name", ["rope", "pi", "yarn", "rerope", "leaky_rerope"])
@pytest.mark.parametrize("layout", ["half", "paper"])
def test_scheme_matches_explicit_rotation_matrices(name, layout):
    """Independent of rope_attention: softmax over q_iᵀ R_{−P_ij} k_j with P from the paper's rule."""
    model, x = tiny(layout=layout, n_heads=2, n_kv_heads=1, dim=32), tokens(batch=1, seq=12)
    scheme = {**SCHEMES, "rerope": PositionScheme("rerope", window=4),
              "leaky_rerope": PositionScheme("leaky_rerope", window=4, factor=2)}[name]
    capture = []
    model(x, scheme, capture=capture)
    q, k, v = (capture[0][t][0, :, 0] for t in "qkv")
    inv_freq, factor = ropekit.rope_frequencies(16)
    if name == "pi":
        inv_freq = inv_freq / 4  # θ_i / s
    if name == "yarn":
        inv_freq, factor = ropekit.rope_frequencies(16, scaling="yarn", factor=4, original_max_position_embeddings=L)
    i = torch.arange(12, dtype=torch.float64)
    rel = i[:, None] - i[None, :]
    if name == "rerope":
        rel = rel.clamp(max=4)
    if name == "leaky_rerope":
        rel = torch.where(rel < 4, rel, 4 + (rel - 4) / 2)
    weights = _explicit_logits(q, k, rel, inv_freq, layout, factor).softmax(-1)
    torch.testing.assert_close(capture[0]["out"][0, :, 0], weights @ v, rtol=1e-9, atol=1e-9)


# --- decoding with the KV cache ----------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMES)
def test_prefill_then_decode_equals_the_full_forward(name):
    """Logits of a prefill of 6 tokens, then one token at a time, past 1.5 L, equal one forward.

    Up to rounding: cos/sin tables are float32 (rope_cos_sin), and the decode step of ReRoPE
    rotates k by j − i where the full forward rotates q by i and k by j.
    """
    model, x = tiny(), tokens(seq=26)
    scheme = SCHEMES[name]
    seq = L if scheme.depends_on_length else 26  # dynamic NTK: see the next test
    full = model(x[:, :seq], scheme)
    cache = model.new_cache(scheme)
    assert isinstance(cache, KVCache) and cache.rotated == (not scheme.is_rerope)
    steps = [model(x[:, :6], cache=cache)] + [model(x[:, t : t + 1], cache=cache) for t in range(6, seq)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-6, atol=1e-6)
    assert cache.length == seq


def test_dynamic_ntk_decode_past_L_keeps_each_keys_own_base():
    """Past L a cached key keeps the base of the step it was made at, the full forward does not."""
    model, x = tiny(), tokens(seq=22)
    scheme = SCHEMES["dynamic"]
    cache = model.new_cache(scheme)
    model(x[:, :L], cache=cache)
    decoded = torch.cat([model(x[:, t : t + 1], cache=cache) for t in range(L, 22)], dim=1)
    assert (decoded - model(x, scheme)[:, L:]).abs().max() > 1e-4
    # already the first step past L: the full forward re-rotates the cached keys too
    assert (decoded[:, 0] - model(x[:, : L + 1], scheme)[:, -1]).abs().max() > 1e-6


@pytest.mark.parametrize("name", ["rope", "yarn", "rerope", "leaky_rerope", "rerope_log_n"])
def test_greedy_generation_equals_argmax_of_the_full_forward(name):
    model, prompt = tiny(), tokens(batch=2, seq=8)
    generated, logits = model.generate(prompt, 16, SCHEMES[name])  # to 1.5 L
    assert generated.shape == (2, 24) and logits.shape == (2, 16, 256)
    expected = prompt
    for _ in range(16):
        expected = torch.cat((expected, model(expected, SCHEMES[name])[:, -1:].argmax(-1)), dim=1)
    assert torch.equal(generated, expected)
    torch.testing.assert_close(logits, model(generated[:, :-1], SCHEMES[name])[:, 7:], rtol=1e-6, atol=1e-6)


def test_a_cache_refuses_another_scheme():
    model = tiny()
    cache = model.new_cache(PositionScheme("rerope", window=4))
    with pytest.raises(ValueError, match="differs from the cache"):
        model(tokens(seq=3), PositionScheme(), cache=cache)


# --- kernels, layouts, partial rotary ---------------------------------------------------


@pytest.mark.parametrize("name", ["rope", "yarn", "nope", "rerope", "leaky_rerope", "rerope_log_n"])
def test_kernel_path_equals_the_reference(name, device):
    """Triton apply_rope_qk + SDPA / fused ReRoPE (interpreter on CPU) against the reference."""
    pytest.importorskip("triton")
    model = tiny(dim=64, n_heads=2, n_kv_heads=1).float().to(device)  # head_dim 32 for the fused kernel
    x = tokens(batch=1, seq=20).to(device)
    torch.testing.assert_close(model(x, SCHEMES[name], kernels=True), model(x, SCHEMES[name], kernels=False),
                               rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("rotary_dim", [None, 8])
@pytest.mark.parametrize("name", ["rope", "ntk", "rerope", "leaky_rerope"])
def test_permuting_qk_weights_between_layouts_keeps_the_logits(name, rotary_dim):
    paper = tiny(layout="paper", rotary_dim=rotary_dim)
    half = paper.with_layout("half")
    assert half.config.layout == "half"
    assert not torch.equal(half.blocks[0].attn.q_proj.weight, paper.blocks[0].attn.q_proj.weight)
    x = tokens(seq=30)
    torch.testing.assert_close(half(x, SCHEMES[name]), paper(x, SCHEMES[name]), rtol=1e-10, atol=1e-10)
    # running the paper weights with half-layout RoPE (no permutation) is a different model
    wrong = TinyLlama(half.config).double().eval()
    wrong.load_state_dict(paper.state_dict())
    assert (wrong(x, SCHEMES[name]) - paper(x, SCHEMES[name])).abs().max() > 1e-3


# --- save, load, safetensors, Hugging Face -------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    model = tiny(layout="paper", rotary_dim=8, log_n_trained=True)
    save(model, tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt").double()
    assert loaded.config == model.config
    x = tokens(seq=20)
    torch.testing.assert_close(loaded(x, SCHEMES["rerope"]), model(x, SCHEMES["rerope"]), rtol=0, atol=0)
    save(model, tmp_path / "half", dtype=torch.float16)
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < (tmp_path / "ckpt" / "model.safetensors").stat().st_size


def test_our_safetensors_files_are_the_packages_files(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    tensors = {"a": torch.randn(3, 5), "b.half": torch.randn(7).half(), "c": torch.randn(2, 2).bfloat16()}
    write_safetensors(tensors, tmp_path / "ours.safetensors", {"format": "pt"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    ours = read_safetensors(tmp_path / "theirs.safetensors")
    for name, t in tensors.items():
        assert torch.equal(theirs[name], t) and theirs[name].dtype == t.dtype
        assert torch.equal(ours[name], t) and ours[name].dtype == t.dtype


@pytest.mark.parametrize("layout", ["half", "paper"])
def test_hf_export_gives_transformers_the_same_logits(tmp_path, layout):
    transformers = pytest.importorskip("transformers")
    model = tiny(layout=layout).float()
    export_hf(model, tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    x = tokens(seq=40)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x), rtol=1e-5, atol=1e-5)
    back = load_hf(tmp_path)
    assert back.config.layout == "half"
    torch.testing.assert_close(back(x), model(x), rtol=1e-5, atol=1e-5)


def test_hf_export_refuses_what_llama_cannot_express(tmp_path):
    with pytest.raises(ValueError, match="rotary_dim"):
        export_hf(tiny(rotary_dim=8), tmp_path)
    with pytest.raises(ValueError, match="log-n"):
        export_hf(tiny(log_n_trained=True), tmp_path)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="ntk"), "factor must be a number >= 1"),
        (dict(name="leaky_rerope", window=4, factor=1), "factor must be a number > 1"),
        (dict(name="rerope"), "window must be a positive integer"),
        (dict(name="rope", window=4), "window is used only by"),
        (dict(name="rope", factor=2), "factor is not used by"),
        (dict(name="yarn", factor=2, options={"low_freq_factor": 1}), "not used by scheme 'yarn'"),
        (dict(name="alibi"), "name must be one of"),
    ],
)
def test_bad_schemes_are_refused_with_the_argument_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PositionScheme(**kwargs)


def test_bad_configs_and_tokens_are_refused():
    with pytest.raises(ValueError, match="n_kv_heads must divide n_heads"):
        ModelConfig(dim=64, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="rotary_dim"):
        ModelConfig(dim=64, n_heads=4, rotary_dim=7)
    with pytest.raises(ValueError, match="tokens must be an integer tensor"):
        tiny()(torch.randn(2, 5))


# --- the committed checkpoints -----------------------------------------------------------

CHECKPOINTS = sorted(p.parent for p in (ROOT / "checkpoints").glob("*/card.json"))


def test_there_is_a_committed_checkpoint():
    assert CHECKPOINTS, "no checkpoints/*/card.json committed"


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=lambda p: p.name)
def test_committed_checkpoint_reproduces_its_recorded_validation_loss(folder):
    card = json.loads((folder / "card.json").read_text())
    model = load(folder)
    assert model.num_parameters() == card["parameters"]
    assert (folder / "train_log.csv").exists() and (folder / "README.md").exists()
    check = card["check"]
    windows = validation_windows(check["length"], check["windows"])
    with torch.no_grad():
        loss, _ = model.token_scores(windows, PositionScheme(**card["scheme"]))
    assert abs(loss.double().mean().item() - check["loss"]) < 1e-3
    assert card["validation"]["loss"] < 3.0, "a trained model predicts bytes far better than chance (ln 256 = 5.55)"


def test_the_model_imports_without_triton_transformers_or_safetensors():
    import subprocess
    import sys

    code = ("import sys, ropekit.model, ropekit.data, ropekit.train; "
            "print(sorted(m for m in ('triton', 'transformers', 'safetensors', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
