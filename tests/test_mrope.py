"""M-RoPE (ropekit.mrope) against transformers' Qwen2-VL, Qwen2.5-VL and Qwen3-VL code, and
against the definition written pair by pair."""

import inspect
import types

import pytest
import torch

import ropekit
from ropekit import mrope

transformers = pytest.importorskip("transformers")

T, I, V = mrope.TEXT, mrope.IMAGE, mrope.VIDEO


def hf_model_class(name):
    module = pytest.importorskip(f"transformers.models.{name}.modeling_{name}")
    return module


def hf_get_rope_index(model_cls, spatial_merge_size, tokens_per_second=None):
    """transformers' get_rope_index as a function: it reads only these config fields."""
    if "mm_token_type_ids" not in inspect.signature(model_cls.get_rope_index).parameters:
        pytest.skip("this transformers' get_rope_index finds vision tokens by token id (before mm_token_type_ids)")
    vision = types.SimpleNamespace(spatial_merge_size=spatial_merge_size, tokens_per_second=tokens_per_second)
    fake = types.SimpleNamespace(config=types.SimpleNamespace(vision_config=vision))
    fake.get_vision_position_ids = lambda *a, **kw: model_cls.get_vision_position_ids(fake, *a, **kw)
    return lambda *a, **kw: model_cls.get_rope_index(fake, *a, **kw)


def prompt(*parts):
    """Token types of a prompt written as (kind, count) runs."""
    return torch.tensor([[kind for kind, n in parts for _ in range(n)]])


# --- position ids ------------------------------------------------------------------------------


def test_text_image_video_prompt_matches_qwen2_vl_get_rope_index():
    module = hf_model_class("qwen2_vl")
    get_rope_index = hf_get_rope_index(module.Qwen2VLModel, spatial_merge_size=2)
    image, video = torch.tensor([[1, 4, 6]]), torch.tensor([[3, 4, 4]])
    types_ = prompt((T, 3), (I, 6), (T, 2), (V, 12), (T, 4))
    ours, deltas = mrope.mrope_position_ids(types_, image, video, spatial_merge_size=2)
    theirs, hf_deltas = get_rope_index(torch.zeros_like(types_), types_, image, video)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(deltas, hf_deltas, rtol=0, atol=0)


def test_video_time_intervals_and_padding_match_qwen2_5_vl_get_rope_index():
    module = hf_model_class("qwen2_5_vl")
    get_rope_index = hf_get_rope_index(module.Qwen2_5_VLModel, spatial_merge_size=2, tokens_per_second=2)
    rows = [[T] * 2 + [V] * 8 + [T] * 3 + [V] * 2 + [T] * 2, [T] * 3 + [V] * 2 + [T] * 12]
    types_ = torch.tensor(rows)
    mask = torch.ones_like(types_)
    mask[1, -3:] = 0  # right padding in the second row
    types_[1, -3:] = T
    # Videos are numbered over the whole batch: two in the first row, one in the second.
    video = torch.tensor([[4, 2, 4], [2, 2, 2], [2, 2, 2]])
    seconds = [1.5, 2.0, 0.5]
    ours, deltas = mrope.mrope_position_ids(types_, None, video, spatial_merge_size=2,
                                            video_time_intervals=[2 * s for s in seconds], attention_mask=mask)
    theirs, hf_deltas = get_rope_index(torch.zeros_like(types_), types_, None, video, attention_mask=mask,
                                       second_per_grid_ts=seconds)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(deltas, hf_deltas, rtol=0, atol=0)


def test_qwen3_vl_frames_are_separate_videos_with_timestamps_between():
    """Qwen3-VL splits a (T, H, W) video into T grids of (1, H, W), one per timestamped frame."""
    module = hf_model_class("qwen3_vl")
    get_rope_index = hf_get_rope_index(module.Qwen3VLModel, spatial_merge_size=2)
    video = torch.tensor([[3, 4, 2]])
    types_ = prompt((T, 2), (V, 2), (T, 1), (V, 2), (T, 1), (V, 2), (T, 3))
    theirs, _ = get_rope_index(torch.zeros_like(types_), types_, None, video)
    ours, _ = mrope.mrope_position_ids(types_, None, torch.tensor([[1, 4, 2]] * 3), spatial_merge_size=2)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_image_ids_written_from_the_paper():
    """Qwen2-VL §2.1: text at s, s+1, ...; an image's token (r, c) at (s, s + r, s + c)."""
    ids, deltas = mrope.mrope_position_ids(prompt((T, 2), (I, 6), (T, 1)), torch.tensor([[1, 2, 3]]))
    expected = torch.tensor([[0, 1, 2, 2, 2, 2, 2, 2, 5],
                             [0, 1, 2, 2, 2, 3, 3, 3, 5],
                             [0, 1, 2, 3, 4, 2, 3, 4, 5]])
    torch.testing.assert_close(ids[:, 0], expected, rtol=0, atol=0)
    assert deltas.item() == 6 - 9


# --- which axis each pair follows ---------------------------------------------------------------


def test_pair_axes_sectioned_and_interleaved_written_out():
    assert mrope.mrope_pair_axes([1, 2, 3]).tolist() == [0, 1, 1, 2, 2, 2]
    assert mrope.mrope_pair_axes([3, 2, 2], interleaved=True).tolist() == [0, 1, 2, 0, 1, 2, 0]
    axes = mrope.mrope_pair_axes([24, 20, 20], interleaved=True)  # Qwen3-VL, head_dim 128
    assert [int((axes == a).sum()) for a in range(3)] == [24, 20, 20]
    assert axes[60:].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("sections", [[1, 2], [2, -1, 3], [1.5, 1, 1], [0, 0, 0], "abc"])
def test_bad_sections_are_named(sections):
    with pytest.raises(ValueError, match="sections must be three non-negative integers"):
        mrope.mrope_pair_axes(sections)


# --- cos/sin and rotation against transformers ----------------------------------------------------


def hf_rotary(module, config_cls, head_dim, sections, rope_theta=10000.0):
    config = config_cls(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                        rope_parameters={"rope_type": "default", "rope_theta": rope_theta, "mrope_section": sections})
    name = [n for n in dir(module) if n.endswith("RotaryEmbedding") and "Vision" not in n][0]
    return getattr(module, name)(config)


CASES = [
    ("qwen2_vl", "Qwen2VLTextConfig", 32, [4, 6, 6], False),
    ("qwen2_5_vl", "Qwen2_5_VLTextConfig", 32, [4, 6, 6], False),
    ("qwen3_vl", "Qwen3VLTextConfig", 32, [6, 5, 5], True),
    ("qwen3_vl", "Qwen3VLTextConfig", 128, [24, 20, 20], True),
]


@pytest.mark.parametrize("name,config_name,head_dim,sections,interleaved", CASES)
def test_rotation_matches_transformers_rotary_embedding_and_apply_rotary_pos_emb(name, config_name, head_dim,
                                                                              sections, interleaved):
    module = hf_model_class(name)
    config_module = pytest.importorskip(f"transformers.models.{name}.configuration_{name}")
    rotary = hf_rotary(module, getattr(config_module, config_name), head_dim, sections)
    torch.manual_seed(0)
    batch, seq, heads, kv_heads = 2, 11, 4, 2
    types_ = torch.tensor([[T] * 3 + [I] * 4 + [T] * 4, [T] * 1 + [I] * 8 + [T] * 2])
    positions, _ = mrope.mrope_position_ids(types_, torch.tensor([[1, 2, 2], [1, 2, 4]]))
    q, k = torch.randn(batch, seq, heads, head_dim), torch.randn(batch, seq, kv_heads, head_dim)

    cos, sin = rotary(q, positions)
    inv_freq, _ = ropekit.rope_frequencies(head_dim, 10000.0)
    if hasattr(module, "apply_multimodal_rotary_pos_emb"):
        # older transformers: per-axis cos/sin (3, batch, seq, head_dim), sections applied here
        q_hf, k_hf = module.apply_multimodal_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin,
                                                            list(sections))
        q_hf, k_hf = q_hf.transpose(1, 2), k_hf.transpose(1, 2)
    else:
        # transformers 5: cos/sin (batch, seq, head_dim) already recomposed, both halves repeated
        q_hf, k_hf = module.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)
        ours_cos, ours_sin = mrope.mrope_cos_sin(positions, inv_freq, sections, interleaved)
        torch.testing.assert_close(ours_cos, cos[..., : head_dim // 2], rtol=0, atol=1e-6)
        torch.testing.assert_close(ours_sin, sin[..., : head_dim // 2], rtol=0, atol=1e-6)
    q_out, k_out = mrope.apply_mrope_qk(q, k, positions, inv_freq, sections, interleaved)
    torch.testing.assert_close(q_out, q_hf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k_out, k_hf, rtol=1e-5, atol=1e-5)


# --- properties -------------------------------------------------------------------------------------


@pytest.mark.parametrize("interleaved", [False, True])
def test_loop_twin_agrees_and_each_pair_uses_only_its_axis(interleaved):
    torch.manual_seed(1)
    positions = torch.randint(0, 50, (3, 2, 7))
    inv_freq, _ = ropekit.rope_frequencies(24, 100.0)
    sections = [4, 4, 4]
    cos, sin = mrope.mrope_cos_sin(positions, inv_freq, sections, interleaved)
    cos_l, sin_l = mrope.mrope_cos_sin_loop(positions, inv_freq, sections, interleaved)
    torch.testing.assert_close(cos, cos_l, rtol=0, atol=0)
    torch.testing.assert_close(sin, sin_l, rtol=0, atol=0)
    axes = mrope.mrope_pair_axes(sections, interleaved)
    angle = positions.double()[axes, :, :].permute(1, 2, 0) * inv_freq.double()  # float64 definition
    torch.testing.assert_close(cos.double(), angle.cos(), rtol=0, atol=2e-5)
    torch.testing.assert_close(sin.double(), angle.sin(), rtol=0, atol=2e-5)


@pytest.mark.parametrize("interleaved", [False, True])
def test_exact_angles_are_within_1e_6_of_float64_with_one_axis_near_2_31(interleaved):
    """angles='exact': each pair turned by its own axis's position, one axis just below 2^31;
    the loop twin agrees, and float32 angles are visibly off there."""
    g = torch.Generator().manual_seed(2)
    positions = torch.randint(0, 50, (3, 2, 7), generator=g)
    positions[2] += 2**31 - 64
    inv_freq = ropekit.rope_frequencies(24, 10_000.0)[0].double()
    sections = [4, 4, 4]
    cos, sin = mrope.mrope_cos_sin(positions, inv_freq, sections, interleaved, angles="exact")
    cos_l, sin_l = mrope.mrope_cos_sin_loop(positions, inv_freq, sections, interleaved, angles="exact")
    torch.testing.assert_close(cos, cos_l, rtol=0, atol=0)
    torch.testing.assert_close(sin, sin_l, rtol=0, atol=0)
    axes = mrope.mrope_pair_axes(sections, interleaved)
    # float64 m·θ_i at m < 2^31 is off by at most 2^31·2^-53 ≈ 2.4e-7 rad
    angle = positions.double()[axes, :, :].permute(1, 2, 0) * inv_freq
    torch.testing.assert_close(cos.double(), angle.cos(), rtol=0, atol=1e-6)
    torch.testing.assert_close(sin.double(), angle.sin(), rtol=0, atol=1e-6)
    # float32 holds positions near 2^31 only to a multiple of 128: 10^4 times the error at least
    cos_32, _ = mrope.mrope_cos_sin(positions, inv_freq.float(), sections, interleaved)
    assert (cos_32.double() - angle.cos()).abs().max() > 1e-2


def test_text_only_positions_reduce_to_plain_rope():
    torch.manual_seed(2)
    x = torch.randn(1, 6, 2, 16)
    positions = torch.arange(6).expand(3, 1, 6)
    inv_freq, _ = ropekit.rope_frequencies(16)
    cos, sin = ropekit.rope_cos_sin(6, inv_freq)
    expected = ropekit.apply_rope(x, cos[:, None], sin[:, None])
    for interleaved in (False, True):
        torch.testing.assert_close(mrope.apply_mrope(x, positions, inv_freq, [3, 3, 2], interleaved), expected,
                                   rtol=0, atol=0)


def test_scores_depend_only_on_the_difference_of_each_axis():
    """⟨R(p) q, R(p') k⟩ is unchanged when every axis of p and p' shifts by its own amount."""
    torch.manual_seed(3)
    q, k = torch.randn(1, 1, 1, 24, dtype=torch.float64), torch.randn(1, 1, 1, 24, dtype=torch.float64)
    inv_freq, _ = ropekit.rope_frequencies(24)
    p, p2, shift = torch.tensor([3, 5, 7]), torch.tensor([1, 9, 2]), torch.tensor([4, -2, 11])
    def score(a, b):
        qa = mrope.apply_mrope(q, a.view(3, 1, 1), inv_freq, [4, 4, 4], True)
        kb = mrope.apply_mrope(k, b.view(3, 1, 1), inv_freq, [4, 4, 4], True)
        return (qa * kb).sum()
    torch.testing.assert_close(score(p, p2), score(p + shift, p2 + shift), rtol=1e-5, atol=1e-5)
    assert not torch.isclose(score(p, p2), score(p + shift, p2), atol=1e-3)


def test_inplace_twin_writes_into_q_and_k():
    torch.manual_seed(4)
    q, k = torch.randn(1, 3, 2, 8), torch.randn(1, 3, 1, 8)
    positions = torch.randint(0, 9, (3, 1, 3))
    inv_freq, _ = ropekit.rope_frequencies(8)
    q_ref, k_ref = mrope.apply_mrope_qk(q, k, positions, inv_freq, [2, 1, 1])
    q_out, k_out = mrope.apply_mrope_qk(q, k, positions, inv_freq, [2, 1, 1], inplace=True)
    assert q_out is q and k_out is k
    torch.testing.assert_close(q, q_ref, rtol=0, atol=0)
    torch.testing.assert_close(k, k_ref, rtol=0, atol=0)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda q, k, p, f: mrope.apply_mrope_qk(q, k, p[:2], f, [2, 1, 1]), r"positions must be an integer \(3, batch, seq\)"),
        (lambda q, k, p, f: mrope.apply_mrope_qk(q, k, p.float(), f, [2, 1, 1]), "positions must be an integer"),
        (lambda q, k, p, f: mrope.apply_mrope_qk(q, k, p[:, :, :2], f, [2, 1, 1]), r"positions must have shape \(3, 1 or 1, 3\)"),
        (lambda q, k, p, f: mrope.apply_mrope_qk(q, k, p, f, [2, 2, 1]), "sections must sum to len"),
        (lambda q, k, p, f: mrope.apply_mrope_qk(q, k[:, :2], p, f, [2, 1, 1]), "must agree on batch, seq"),
        (lambda q, k, p, f: mrope.apply_mrope_qk(q[0], k, p, f, [2, 1, 1]), r"q must be a floating-point \(batch"),
        (lambda q, k, p, f: mrope.mrope_pair_axes([1, 3, 0], interleaved=True), "do not fit"),
    ],
)
def test_bad_arguments_are_named(call, match):
    q, k = torch.randn(1, 3, 2, 8), torch.randn(1, 3, 1, 8)
    positions = torch.zeros(3, 1, 3, dtype=torch.int64)
    inv_freq, _ = ropekit.rope_frequencies(8)
    with pytest.raises(ValueError, match=match):
        call(q, k, positions, inv_freq)


def test_position_id_mistakes_are_named():
    with pytest.raises(ValueError, match="does not match its image_grid_thw grid"):
        mrope.mrope_position_ids(prompt((T, 1), (I, 5)), torch.tensor([[1, 2, 2]]))
    with pytest.raises(ValueError, match="more runs of vision tokens than video_grid_thw"):
        mrope.mrope_position_ids(prompt((V, 4),))
    with pytest.raises(ValueError, match="not divisible by spatial_merge_size=2"):
        mrope.mrope_position_ids(prompt((I, 1),), torch.tensor([[1, 3, 2]]), spatial_merge_size=2)
    with pytest.raises(ValueError, match="token_types must hold only"):
        mrope.mrope_position_ids(torch.tensor([[0, 3]]))


def test_the_interleave_fit_rule_agrees_with_counting_the_cycle():
    """checks.check_sections accepts interleaved sections exactly when cycling t, h, w over
    the pairs (Qwen3-VL's rule, counted here pair by pair) gives each axis its count."""
    from ropekit.checks import check_sections

    for total in range(1, 13):
        for n_h in range(total + 1):
            for n_w in range(total + 1 - n_h):
                n_t = total - n_h - n_w
                counts = [0, 0, 0]
                for i in range(total):
                    counts[1 if i % 3 == 1 and i < 3 * n_h else 2 if i % 3 == 2 and i < 3 * n_w else 0] += 1
                fits = counts == [n_t, n_h, n_w]
                try:
                    check_sections((n_t, n_h, n_w), interleaved=True)
                    accepted = True
                except ValueError:
                    accepted = False
                assert accepted == fits, (n_t, n_h, n_w, counts)
