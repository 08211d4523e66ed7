"""Attention with RoPE, ReRoPE and Leaky ReRoPE, written to be read.

RoPE makes the attention logit of query i and key j a function of i − j alone
(RoFormer eq. 16): ⟨R_i q, R_j k⟩ = qᵀ R_{j−i} k. Context-extension tricks change which
relative position a pair of tokens "sees". Written as a (seq, seq) Toeplitz matrix of
effective relative positions (lesson 03 plots it):

    rope          i − j
    pi            (i − j) / factor                       (Position Interpolation)
    rerope        min(i − j, w)                          (ReRoPE)
    leaky_rerope  i − j if i − j < w else w + (i − j − w) / k   (Leaky ReRoPE)

ReRoPE and Leaky ReRoPE come from Su Jianlin's blog post "Rectified Rotary Position
Embeddings" (kexue.fm, 2023): positions inside the window w stay exact, so local order is
as sharp as in training, and beyond it they stop growing (or grow with slope 1/k), so no
pair ever sees a relative position much larger than the trained ones. Lesson 04 derives
them and the log-n scaling of the queries; the one-product decode step is in
:mod:`ropekit.decode`.

Tensors are ``(batch, seq, heads, head_dim)``, as everywhere in ropekit.
"""

from __future__ import annotations

import math

import torch

from .checks import (
    check_inv_freq,
    check_layout,
    check_leaky_factor,
    check_log_n_train_length,
    check_qkv,
    check_window,
    describe,
    positions_or_arange,
    real,
)
from .frequencies import rope_frequencies
from .reference import apply_rope, rope_cos_sin

SCHEMES = ("rope", "pi", "rerope", "leaky_rerope")


# --- relative positions (lesson 03) ---------------------------------------------------


def relative_position_matrix(length: int, scheme: str = "rope", window=None, factor=None) -> torch.Tensor:
    """The effective relative position that query i uses for key j, for every j ≤ i.

    Args:
        length: sequence length n.
        scheme: ``"rope"`` i − j; ``"pi"`` (i − j)/factor (Position Interpolation, Chen et
            al. 2023); ``"rerope"`` min(i − j, w); ``"leaky_rerope"`` i − j below w, else
            w + (i − j − w)/factor (Su, "Rectified Rotary Position Embeddings", 2023).
        window: w, a positive integer; needed by ``"rerope"`` and ``"leaky_rerope"`` only.
        factor: needed by ``"pi"`` (> 0, the interpolation ratio) and ``"leaky_rerope"``
            (> 1, the k of slope 1/k beyond the window) only.

    Returns:
        ``(length, length)`` float64 tensor P with P[i, j] the relative position for
        j ≤ i and NaN above the diagonal (future keys a causal model never sees). Every
        scheme is Toeplitz: P[i, j] depends on i − j only. Lesson 03 plots it.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    uses_window = scheme in ("rerope", "leaky_rerope")
    uses_factor = scheme in ("pi", "leaky_rerope")
    if uses_window:
        check_window(window)
    elif window is not None:
        raise ValueError(f"window is used only by 'rerope' and 'leaky_rerope', not by scheme={scheme!r}")
    if uses_factor:
        factor = _check_factor(factor, "factor", scheme)
    elif factor is not None:
        raise ValueError(f"factor is used only by 'pi' and 'leaky_rerope', not by scheme={scheme!r}")

    i = torch.arange(length, dtype=torch.float64)
    rel = i[:, None] - i[None, :]  # i − j
    if scheme == "pi":
        rel = rel / factor
    elif scheme == "rerope":
        rel = rel.clamp(max=window)
    elif scheme == "leaky_rerope":
        rel = torch.where(rel < window, rel, window + (rel - window) / factor)
    return rel.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("nan"))


# --- RoPE attention (lessons 02 and 03) ----------------------------------------------


def rope_attention(
    q, k, v, inv_freq, causal=True, positions=None, attention_factor=1.0, layout="half", xpos_scale_base=None
):
    """Softmax attention with RoPE on the queries and keys (RoFormer eq. 16).

        a_ij = ⟨R_{p_i} q_i, R_{p_j} k_j⟩ / √head_dim = q_iᵀ R_{p_j − p_i} k_j / √head_dim,
        out_i = Σ_j softmax_j(a_ij) v_j

    Args:
        q: ``(batch, seq, heads, head_dim)`` queries, not yet rotated.
        k: ``(batch, seq, kv_heads, head_dim)`` keys, not yet rotated. kv_heads must
            divide heads (grouped-query attention): key/value head h serves query heads
            h·g .. h·g + g − 1 with g = heads / kv_heads, as Hugging Face's repeat_kv does.
        v: ``(batch, seq, kv_heads, v_dim)``.
        inv_freq: ``(rotary_dim // 2,)`` from :func:`ropekit.rope_frequencies`; with
            rotary_dim < head_dim only the first rotary_dim features rotate.
        causal: query i sees keys j ≤ i (by index in the sequence, whatever ``positions`` say).
        positions: ``(seq,)`` or ``(batch, seq)`` positions p (integer or fractional);
            default ``arange(seq)``.
        attention_factor: multiplies cos and sin (YaRN's √(1/t)), so the logits by its square.
        layout: ``"half"`` or ``"paper"`` (see :mod:`ropekit.reference`).
        xpos_scale_base: turn on xPos (Sun et al. 2022, "A Length-Extrapolatable
            Transformer", eq. 5-6) with this scale base (512 in the paper): rotary pair i
            of a query at position n is also scaled by ζ_i^{n/scale_base}, of a key at m
            by ζ_i^{−m/scale_base}, with ζ_i = (2i/r + γ)/(1 + γ), γ = 0.4, r = rotary_dim.
            Both features of pair i get ζ_i (``"half"``: [ζ_0..ζ_{r/2−1}, ζ_0..ζ_{r/2−1}];
            ``"paper"``: ζ_0, ζ_0, ζ_1, ζ_1, ...), so pair i's part of a logit gains the
            factor ζ_i^{(n−m)/scale_base}: still a function of n − m only, now decaying
            with distance. Unrotated features (beyond rotary_dim) are not scaled.
            With xPos the scaled q, k and logits are float64: ζ_0^{±p/scale_base} leaves
            float32's range once positions span about 36k tokens at scale_base 512.
            Spans past float64's range (``xpos_max_span``: about 245k tokens at 512)
            raise a ValueError that names the limit.

    Returns:
        ``(batch, seq, heads, v_dim)`` in q's dtype; rotation, logits and softmax run in
        float32 (float64 for float64 inputs), the scale is 1/√head_dim.

    Lesson 03 shows the logit depending on p_i − p_j only.
    """
    check_qkv(q, k, v)
    check_layout(layout)
    check_inv_freq(inv_freq, q.shape[-1])
    batch, seq = q.shape[:2]
    positions = positions_or_arange(positions, "positions", batch, seq, q.device)
    if xpos_scale_base is not None:
        xpos_scale_base = real(xpos_scale_base, "xpos_scale_base", above=0, what=" (512 in xPos) or None")
    compute = compute_dtype(q) if xpos_scale_base is None else torch.float64
    q, k = q.to(compute), k.to(compute)
    positions = positions.to(q.device)
    if xpos_scale_base is not None:
        span = float(positions.max() - positions.min()) if positions.numel() else 0.0
        if span > xpos_max_span(xpos_scale_base):
            raise ValueError(
                f"positions span {span:g} tokens, more than xPos with xpos_scale_base={xpos_scale_base:g} can "
                f"represent: ζ_0^(span/scale_base) must stay within float64, so at most "
                f"{xpos_max_span(xpos_scale_base):,.0f} tokens (raise xpos_scale_base)")
        zeta_power = _xpos_scale(positions, inv_freq, q.shape[-1], xpos_scale_base, layout)
        q, k = q * zeta_power, k / zeta_power
    rotated_q = rotate(q, positions, inv_freq, layout, attention_factor)
    rotated_k = rotate(k, positions, inv_freq, layout, attention_factor)
    return attend(scores(rotated_q, rotated_k), v, causal)


def xpos_max_span(scale_base):
    """The widest span of positions xPos can scale in float64: the slowest-decaying
    pair's ζ_0^(span/scale_base), with ζ_0 = 0.4/1.4 (γ = 0.4), is kept within e^±600,
    leaving float64 (e^709) room for the q·k products themselves."""
    return 600 * scale_base / -math.log(0.4 / 1.4)


def _xpos_scale(positions, inv_freq, head_dim, scale_base, layout):
    """ζ^{p/scale_base} per feature, shaped to broadcast against (batch, seq, heads, head_dim).

    Pair i's two features both get ζ_i, laid out like the pairs; features beyond rotary_dim
    get 1. Positions are first centred (as torchscale does): shifting every position by one
    constant leaves each logit unchanged and halves the exponent, which is what overflows
    float32 first (ζ_0^{−p/512} passes 1e38 near p ≈ 36k uncentred).
    """
    half = inv_freq.shape[0]
    zeta = (torch.arange(half, dtype=torch.float64) * 2 / (2 * half) + 0.4) / 1.4  # ζ_i, γ = 0.4
    zeta = torch.cat((zeta, zeta)) if layout == "half" else zeta.repeat_interleave(2)
    zeta = torch.cat((zeta, torch.ones(head_dim - 2 * half, dtype=torch.float64))).to(positions.device)
    p = positions.to(torch.float64)
    centre = (p.max() + p.min()) / 2 if p.numel() else 0.0
    power = (p - centre)[..., None] / scale_base
    return (zeta**power)[..., None, :]  # a heads axis


# --- ReRoPE and Leaky ReRoPE (lesson 04) ---------------------------------------------


def rerope_attention(
    q, k, v, inv_freq, window, leaky_factor=None, causal=True, log_n_train_length=None, layout="half"
):
    """ReRoPE / Leaky ReRoPE attention, computed as in the blog post: two logit matrices, merged.

    The effective relative position (see :func:`relative_position_matrix`) is no longer
    linear in i − j, so no single pair of rotations R_i q, R_j k produces it. Su's
    "Rectified Rotary Position Embeddings" (kexue.fm, 2023) computes two logit matrices,
    each with a rotation that is linear in the positions, and keeps the right one per pair:

        a⁽¹⁾_ij = ⟨R_i q_i, R_j k_j⟩ = q_iᵀ R_{j−i} k_j              relative position i − j
        ReRoPE: a⁽²⁾_ij = ⟨R_w q_i, k_j⟩ = q_iᵀ R_wᵀ k_j = q_iᵀ R_{−w} k_j    relative position w
        Leaky:  a⁽²⁾_ij = ⟨R_{(i−w)/k + w} q_i, R_{j/k} k_j⟩ = q_iᵀ R_{j/k − (i−w)/k − w} k_j
                                                     relative position w + (i − j − w)/k
        a_ij = a⁽¹⁾_ij if i − j < w else a⁽²⁾_ij,   out_i = Σ_j softmax_j(a_ij / √head_dim) v_j

    Each line uses R_mᵀ R_n = R_{n−m}, so every logit is q_iᵀ R_{−rel_ij} k_j with rel_ij
    from :func:`relative_position_matrix`. The merge is why off-the-shelf FlashAttention
    cannot run it and why this naive version does the work twice;
    ``ropekit.kernels.rerope_attention`` is the fused Triton kernel with this signature.
    With ``window >= seq`` every pair takes a⁽¹⁾, and the result is bit-for-bit
    :func:`rope_attention`. Without ``causal``, keys after the query have i − j < 0 < w and
    use plain RoPE.

    Args:
        q: ``(batch, seq, heads, head_dim)``; k: ``(batch, seq, kv_heads, head_dim)``;
            v: ``(batch, seq, kv_heads, v_dim)``; none rotated. kv_heads divides heads (GQA).
        inv_freq: ``(rotary_dim // 2,)``; positions are ``arange(seq)``.
        window: w, a positive integer, below the training length.
        leaky_factor: k > 1 for Leaky ReRoPE (slope 1/k beyond the window); None for ReRoPE.
        causal: query i sees keys j ≤ i.
        log_n_train_length: L, the training length. Turns on the "log n" scaling of the
            blog's tables: the query at 0-based index i, which is token number n = i + 1
            (1-based, as in the blog's code: ``(position_ids + 1).log()``), is multiplied
            by max(1, log_L n) = max(1, ln(i + 1) / ln L), so queries within the first L
            tokens are unchanged and later ones sharpen their softmax.
        layout: ``"half"`` or ``"paper"``.

    Returns:
        ``(batch, seq, heads, v_dim)`` in q's dtype; math in float32 (float64 for float64).

    Lesson 04 derives both forms and the log-n factor.
    """
    check_qkv(q, k, v)
    check_layout(layout)
    check_inv_freq(inv_freq, q.shape[-1])
    check_window(window)
    leaky_factor = check_leaky_factor(leaky_factor)
    check_log_n_train_length(log_n_train_length)
    compute = compute_dtype(q)
    q, k = q.to(compute), k.to(compute)
    positions = torch.arange(q.shape[1], device=q.device)
    if log_n_train_length is not None:
        q = q * log_n_scale(positions, log_n_train_length)[:, None, None].to(compute)
    a1 = scores(rotate(q, positions, inv_freq, layout), rotate(k, positions, inv_freq, layout))
    if leaky_factor is None:
        a2 = scores(rotate(q, torch.full_like(positions, window), inv_freq, layout), k)
    else:
        q_line = (positions - window) / leaky_factor + window
        a2 = scores(rotate(q, q_line, inv_freq, layout), rotate(k, positions / leaky_factor, inv_freq, layout))
    inside = (positions[:, None] - positions[None, :]) < window  # i − j < w
    return attend(torch.where(inside, a1, a2), v, causal)


def log_n_scale(positions, train_length, clamp=True):
    """The log-n factor that multiplies the query of token number n = position + 1.

        clamp=True:  max(1, log_L n)   (Su, "ReRoPE" post, kexue.fm/archives/9708: added at
                                        test time to a model trained without it; queries
                                        within the first L tokens are unchanged)
        clamp=False: log_L n           (Su, "entropy invariance", kexue.fm/archives/8823: the
                                        form a model is trained with; below 1 inside L)

    Args:
        positions: 0-based positions of any shape (integer or real tensor).
        train_length: L, the training length (an integer >= 2).

    Returns:
        float64 tensor of positions' shape. :func:`rerope_attention` applies the clamped
        form itself (``log_n_train_length``); ``ropekit.model`` uses both. Lesson 04.
    """
    n = positions.to(torch.float64) + 1
    scale = n.log() / math.log(train_length)
    return scale.clamp(min=1.0) if clamp else scale


# --- the pieces every attention function is made of (also used by ropekit.decode) -----


def compute_dtype(x):
    """float32 for half-precision inputs, else x's dtype: the precision of the math."""
    return torch.promote_types(x.dtype, torch.float32)


def rotate(x, positions, inv_freq, layout="half", attention_factor=1.0):
    """R_p x for x ``(batch, seq, heads, head_dim)`` and positions ``(seq,)`` or ``(batch, seq)``."""
    cos, sin = rope_cos_sin(positions, inv_freq.to(x.device), attention_factor)
    # inv_freq narrower than head_dim means partial rotary here (documented per function)
    return apply_rope(x, cos[..., None, :], sin[..., None, :], layout, 2 * inv_freq.shape[0])  # a heads axis


def scores(q, k):
    """q kᵀ / √head_dim: ``(batch, heads, n_queries, n_keys)`` from q ``(batch, n_queries,
    heads, head_dim)`` and k ``(batch, n_keys, kv_heads, head_dim)``, k's heads repeated
    for grouped-query attention (key head h serves query heads h·g .. h·g + g − 1)."""
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    return torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])


def attend(logits, v, causal):
    """softmax over keys, then the weighted sum of values: ``(batch, n_queries, heads, v_dim)``
    in v's dtype from logits ``(batch, heads, n_queries, n_keys)`` and v ``(batch, n_keys,
    kv_heads, v_dim)``. The queries are the last n_queries tokens, so with ``causal`` query
    t (at index n_keys − n_queries + t) sees keys up to it."""
    n_queries, n_keys = logits.shape[-2:]
    if causal:
        future = torch.ones(n_queries, n_keys, dtype=torch.bool, device=logits.device).triu(n_keys - n_queries + 1)
        logits = logits.masked_fill(future, float("-inf"))
    weights = logits.softmax(dim=-1)
    values = v.repeat_interleave(logits.shape[1] // v.shape[2], dim=2).to(weights.dtype)
    return torch.einsum("bhqk,bkhd->bqhd", weights, values).to(v.dtype)


def _check_factor(factor, name, scheme):
    minimum = 1 if scheme == "leaky_rerope" else 0
    what = " for 'leaky_rerope' (the slope 1/k beyond the window needs k > 1)" if minimum else f" for {scheme!r} (a positive ratio)"
    return real(factor, name, above=minimum, what=what)


# --- logits for pictures (lessons 03, 04) -------------------------------------------


def attention_logits(q, k, scheme: str = "rope", inv_freq=None, *, window=None, factor=None, layout: str = "half"):
    """The logit matrix a_ij = ⟨R_{P_ij} q_i, k_j⟩ / √head_dim of one head, for any scheme.

    P = ``relative_position_matrix(seq, scheme, window, factor)``; since
    ⟨R_i q, R_j k⟩ = ⟨R_{i−j} q, k⟩ (RoFormer eq. 16), rotating q_i by P_ij with
    ``rope_cos_sin``/``apply_rope`` gives the logit that ``rope_attention`` (rope, and pi
    with positions / s) or ``rerope_attention`` (rerope, leaky_rerope) softmaxes.

    Args:
        q, k: ``(seq, head_dim)``, not yet rotated.
        inv_freq: ``(rotary_dim // 2,)`` (default: ``rope_frequencies(head_dim)``).

    Returns:
        float64 ``(seq, seq)``, NaN above the diagonal (future keys). O(seq²·head_dim)
        work and memory per row block: for pictures, not for models. Lessons 03 and 04;
        ``ropekit.viz.plot_attention_logits`` draws it.
    """
    for name, t in (("q", q), ("k", k)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor of shape (seq, head_dim), got {describe(t)}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape (seq, head_dim), got {tuple(q.shape)} and {tuple(k.shape)}")
    seq, head_dim = q.shape
    if inv_freq is None:
        inv_freq, _ = rope_frequencies(head_dim)
    P = relative_position_matrix(seq, scheme, **scheme_options(scheme, window, factor))
    q, k = q.double(), k.double()
    logits = torch.full((seq, seq), float("nan"), dtype=torch.float64)
    for i in range(seq):  # one query row at a time keeps memory at seq·head_dim
        cos, sin = rope_cos_sin(P[i, : i + 1], inv_freq)
        rotated = apply_rope(q[i].expand(i + 1, head_dim), cos, sin, layout, 2 * inv_freq.shape[0])
        logits[i, : i + 1] = (rotated * k[: i + 1]).sum(-1) / math.sqrt(head_dim)
    return logits


def scheme_options(scheme, window, factor):
    """The window and factor keywords that relative_position_matrix accepts for this scheme."""
    options = {}
    if scheme in ("rerope", "leaky_rerope"):
        options["window"] = window
    if scheme in ("pi", "leaky_rerope"):
        options["factor"] = factor
    return options


def __getattr__(name):
    # rerope_decode_step moved to ropekit.decode (with every other decode step); this keeps
    # ``from ropekit.attention import rerope_decode_step`` working.
    if name == "rerope_decode_step":
        from .decode import rerope_decode_step

        return rerope_decode_step
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
