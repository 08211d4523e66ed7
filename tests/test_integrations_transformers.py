"""Tests for ropekit.integrations.transformers: ropekit inside Hugging Face models.

Small randomly initialised models of each supported family; the kernel runs under the Triton
interpreter on the CPU (tests/conftest.py) and on CUDA unchanged.
"""

import pytest
import torch

transformers = pytest.importorskip("transformers")
rk = pytest.importorskip("ropekit.integrations.transformers")

import ropekit  # noqa: E402

FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
}


def tiny_model(family="llama", attn="eager", seed=0, **overrides):
    config_name, model_name, extra = FAMILIES[family]
    config = getattr(transformers, config_name)(
        vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, **{**extra, **overrides})
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return getattr(transformers, model_name)(config).eval()


def tokens(batch=2, seq=12, seed=1):
    return torch.randint(0, 64, (batch, seq), generator=torch.Generator().manual_seed(seed))


def greedy_by_full_forward(model, prompt, steps):
    """The reference generation: every step runs the whole sequence again, no cache."""
    seq = prompt
    for _ in range(steps):
        seq = torch.cat((seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return seq


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_kernel_patch_gives_the_unpatched_logits(family, attn, monkeypatch):
    # The kernel runs where the model is: on the GPU when there is one, else on the CPU
    # under Triton's interpreter (conftest.py sets TRITON_INTERPRET=1 there).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ids = tiny_model(family, attn).to(device), tokens().to(device)
    with torch.no_grad():
        expected = model(ids).logits
        calls = []
        kernels = pytest.importorskip("ropekit.kernels")
        real = kernels.apply_rope_qk
        monkeypatch.setattr(kernels, "apply_rope_qk", lambda *a, **k: calls.append(1) or real(*a, **k))
        rk.patch(model, kernel=True)
        got = model(ids).logits
    assert len(calls) == model.config.num_hidden_layers  # the kernel really ran, once per layer
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    rk.unpatch(model)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, expected)
    assert all("forward" not in layer.__dict__ for layer in model.modules())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_rerope_with_a_window_covering_the_input_is_plain_rope(family):
    model, ids = tiny_model(family), tokens()
    with torch.no_grad():
        expected = model(ids).logits
        rk.patch(model, window=ids.shape[1])
        torch.testing.assert_close(model(ids).logits, expected, rtol=1e-5, atol=1e-5)
        rk.patch(model, window=3)  # a short window really changes the later logits
        narrow = model(ids).logits
    torch.testing.assert_close(narrow[:, :4], expected[:, :4], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(narrow[:, 4:], expected[:, 4:], atol=1e-4)


@pytest.mark.parametrize("options", [dict(window=3), dict(window=4, leaky_factor=2.0),
                                     dict(window=3, log_n_train_length=4), dict(log_n_train_length=4)])
def test_greedy_generation_with_rerope_equals_the_full_forward_step_by_step(options):
    model, prompt = tiny_model("llama"), tokens(1, 7)
    rk.patch(model, **options)
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=8, do_sample=False, min_new_tokens=8)
        expected = greedy_by_full_forward(model, prompt, 8)
    assert torch.equal(generated, expected)


def test_rerope_caches_keys_before_rotation():
    model, prompt = tiny_model("llama"), tokens(1, 6)
    rk.patch(model, window=2)
    with torch.no_grad():
        out = model(prompt, use_cache=True)
        hidden = model.model.layers[0].input_layernorm(model.model.embed_tokens(prompt))
        raw_keys = model.model.layers[0].self_attn.k_proj(hidden).view(1, 6, 2, 16).transpose(1, 2)
    cached = out.past_key_values.layers[0].keys
    torch.testing.assert_close(cached, raw_keys)  # unrotated: a decode step never re-rotates them


def test_left_padded_batches_generate_as_each_row_alone():
    model = tiny_model("llama")
    rk.patch(model, window=3, leaky_factor=2.0)
    short, long = tokens(1, 4, seed=2), tokens(1, 7, seed=3)
    batch = torch.cat((torch.cat((torch.zeros(1, 3, dtype=torch.long), short), 1), long))
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    with torch.no_grad():
        together = model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False, min_new_tokens=6,
                                   pad_token_id=0)
        alone = [model.generate(p, max_new_tokens=6, do_sample=False, min_new_tokens=6, pad_token_id=0)
                 for p in (short, long)]
    assert torch.equal(together[0, 3:], alone[0][0])
    assert torch.equal(together[1], alone[1][0])


@pytest.mark.parametrize("scaling, params", [
    ("linear", dict(factor=4.0)),
    ("yarn", dict(factor=4.0, original_max_position_embeddings=16)),
    ("llama3", dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16)),
])
def test_a_ropekit_schedule_gives_the_logits_of_the_same_hugging_face_rope_type(scaling, params):
    ids = tokens(1, 40)
    hf_type = {"linear": "linear", "yarn": "yarn", "llama3": "llama3"}[scaling]
    rope_parameters = {"rope_type": hf_type, "rope_theta": 10000.0, **params}
    hf_model = tiny_model("llama", rope_parameters=rope_parameters)
    ours = tiny_model("llama")
    ours.load_state_dict(hf_model.state_dict())
    rk.patch(ours, scaling=scaling, **params)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf_model(ids).logits, rtol=1e-4, atol=1e-4)
        rk.unpatch(ours)
        assert not torch.allclose(ours(ids).logits, hf_model(ids).logits, atol=1e-3)


def test_dynamic_ntk_recomputes_the_base_for_the_current_length():
    model, ids = tiny_model("llama"), tokens(1, 40)
    inv_freq, _ = ropekit.rope_frequencies(16, 10000.0, "dynamic", factor=2.0, original_max_position_embeddings=16,
                                           seq_len=40)
    rk.patch(model, scaling="dynamic", factor=2.0, original_max_position_embeddings=16)
    rotary = model.model.rotary_emb
    cos, sin = rotary(torch.zeros(1), torch.arange(40)[None])
    expected_cos, _ = ropekit.rope_cos_sin(torch.arange(40)[None], inv_freq)
    torch.testing.assert_close(cos[..., :8], expected_cos)


def test_bad_arguments_are_refused_with_a_clear_error():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="leaky_factor needs window"):
        rk.patch(model, leaky_factor=2.0)
    with pytest.raises(ValueError, match="window"):
        rk.patch(model, window=0)
    with pytest.raises(ValueError, match="scaling"):
        rk.patch(model, scaling="alibi")
    with pytest.raises(ValueError, match="attention factor"):
        rk.patch(model, window=4, scaling="yarn", factor=4.0, original_max_position_embeddings=16)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(ValueError, match="model_type|model must be"):
        rk.patch(gpt2)


@pytest.mark.parametrize("options, scheme_args", [
    (dict(window=16), dict(name="rerope", window=16)),
    (dict(window=16, leaky_factor=2.0), dict(name="leaky_rerope", window=16, factor=2.0)),
    (dict(window=16, log_n_train_length=256), dict(name="rerope", window=16, log_n=True)),
])
def test_the_exported_tiny_llama_patched_with_rerope_generates_the_ropekit_models_tokens(tmp_path, options, scheme_args):
    """Issue 18's first test model: the committed tiny LLaMA, exported to the HF format, loaded
    by transformers, patched, and run through transformers' own generate (its own cache)."""
    from pathlib import Path

    from ropekit.model import PositionScheme, export_hf, load

    model = load(Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-llama-main")
    export_hf(model, tmp_path)
    hf_model = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    rk.patch(hf_model, **options)
    prompt = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = hf_model.generate(prompt, max_new_tokens=24, min_new_tokens=24, do_sample=False)
    ours, _ = model.generate(prompt, 24, PositionScheme(**scheme_args))
    assert torch.equal(theirs, ours)
