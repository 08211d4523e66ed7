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
them, the log-n scaling of the queries and the one-product decode step.
"""

from __future__ import annotations

import math

import torch

from .frequencies import rope_frequencies
from .reference import _check_layout, _shape, apply_rope, rope_cos_sin

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
        _check_window(window)
    elif window is not None:
        raise ValueError(f"window is used only by 'rerope' and 'leaky_rerope', not by scheme={scheme!r}")
    if uses_factor:
        _check_factor(factor, "factor", scheme)
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
        q: ``(batch, heads, seq, head_dim)`` queries, not yet rotated.
        k: ``(batch, kv_heads, seq, head_dim)`` keys, not yet rotated. kv_heads must
            divide heads (grouped-query attention): key/value head h serves query heads
            h·g .. h·g + g − 1 with g = heads / kv_heads, as Hugging Face's repeat_kv does.
        v: ``(batch, kv_heads, seq, v_dim)``.
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

    Returns:
        ``(batch, heads, seq, v_dim)`` in q's dtype; rotation, logits and softmax run in
        float32 (float64 for float64 inputs), the scale is 1/√head_dim.

    Lesson 03 shows the logit depending on p_i − p_j only.
    """
    _check_qkv(q, k, v)
    _check_layout(layout)
    _check_inv_freq(inv_freq, q.shape[-1])
    batch, _, seq, _ = q.shape
    positions = _positions_or_arange(positions, "positions", batch, seq, q.device)
    if xpos_scale_base is not None and (
        isinstance(xpos_scale_base, bool) or not isinstance(xpos_scale_base, (int, float)) or not xpos_scale_base > 0
    ):
        raise ValueError(f"xpos_scale_base must be a positive number (512 in xPos) or None, got {xpos_scale_base!r}")
    compute = _compute_dtype(q)
    q, k = q.to(compute), k.to(compute)
    positions = positions.to(q.device)
    if xpos_scale_base is not None:
        zeta_power = _xpos_scale(positions, inv_freq, q.shape[-1], xpos_scale_base, layout).to(compute)
        q, k = q * zeta_power, k / zeta_power
    rotated_q = _rotate(q, positions, inv_freq, layout, attention_factor)
    rotated_k = _rotate(k, positions, inv_freq, layout, attention_factor)
    return _attend(_logits(rotated_q, rotated_k), v, causal)


def _xpos_scale(positions, inv_freq, head_dim, scale_base, layout):
    """ζ^{p/scale_base} per feature, shaped to broadcast against (batch, heads, seq, head_dim).

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
    power = (p - (p.max() + p.min()) / 2)[..., None] / scale_base
    scale = zeta**power
    return scale[:, None] if scale.dim() == 3 else scale


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
        q: ``(batch, heads, seq, head_dim)``; k: ``(batch, kv_heads, seq, head_dim)``;
            v: ``(batch, kv_heads, seq, v_dim)``; none rotated. kv_heads divides heads (GQA).
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
        ``(batch, heads, seq, v_dim)`` in q's dtype; math in float32 (float64 for float64).

    Lesson 04 derives both forms and the log-n factor.
    """
    _check_qkv(q, k, v)
    _check_layout(layout)
    _check_inv_freq(inv_freq, q.shape[-1])
    _check_window(window)
    _check_rerope_options(leaky_factor, log_n_train_length)
    compute = _compute_dtype(q)
    q, k = q.to(compute), k.to(compute)
    positions = torch.arange(q.shape[-2], device=q.device)
    if log_n_train_length is not None:
        q = q * log_n_scale(positions, log_n_train_length)[:, None].to(compute)
    rotated_q = _rotate(q, positions, inv_freq, layout)
    rotated_k = _rotate(k, positions, inv_freq, layout)
    a1 = _logits(rotated_q, rotated_k)
    if leaky_factor is None:
        a2 = _logits(_rotate(q, torch.full_like(positions, window), inv_freq, layout), k)
    else:
        q_line = (positions - window) / leaky_factor + window
        a2 = _logits(_rotate(q, q_line, inv_freq, layout), _rotate(k, positions / leaky_factor, inv_freq, layout))
    inside = (positions[:, None] - positions[None, :]) < window  # i − j < w
    return _attend(torch.where(inside, a1, a2), v, causal)


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


# --- ReRoPE decoding: one product per key (lesson 04) --------------------------------


def rerope_decode_step(
    q, k_cache, v_cache, position, inv_freq, window, leaky_factor=None, layout="half", log_n_train_length=None
):
    """One new query against keys cached *before* rotation: the single-product form of ReRoPE.

    With one query there is nothing to merge: each key needs one product. Writing
    ⟨R_i q, R_j k⟩ = qᵀ R_{j−i} k and the effective position of
    :func:`relative_position_matrix`, the blog's decode formula is

        ReRoPE: a_ij = q_iᵀ R_{max(j−i, −w)} k_j
        Leaky:  a_ij = q_iᵀ R_{max(j−i, (j−i+w)/k − w)} k_j

    The w keys inside the window (i − w < j ≤ i) each need their own rotation R_{j−i}.
    Every older key shares one rotation, which moves onto the query instead:
    q_iᵀ R_{−w} k_j = ⟨R_w q_i, k_j⟩, so ReRoPE rotates q once by +w and dots it with the
    raw cached keys. For Leaky, q_iᵀ R_{(j−i+w)/k − w} k_j = ⟨R_{(i−w)/k + w} q_i, R_{j/k} k_j⟩:
    q is rotated once, and the old keys by j/k (a decoder that keeps a second cache of
    R_{j/k} k_j skips that too). This is why ReRoPE caches keys unrotated: a cache of
    R_j k_j would have to be un-rotated at every step.

    Args:
        q: ``(batch, heads, 1, head_dim)``, the new query, not rotated.
        k_cache: ``(batch, kv_heads, position + 1, head_dim)``, keys at positions
            0 .. position (the new key included), not rotated.
        v_cache: ``(batch, kv_heads, position + 1, v_dim)``.
        position: i, the 0-based position of the new query.
        inv_freq, window, leaky_factor, layout, log_n_train_length: as in
            :func:`rerope_attention` (log-n multiplies q by max(1, ln(i + 1) / ln L)).

    Returns:
        ``(batch, heads, 1, v_dim)``, equal (up to rounding) to the last row of
        :func:`rerope_attention` over the whole sequence. Lesson 04 checks that.
    """
    _check_qkv(q, k_cache, v_cache, same_length=False)
    _check_layout(layout)
    _check_inv_freq(inv_freq, q.shape[-1])
    _check_window(window)
    _check_rerope_options(leaky_factor, log_n_train_length)
    if q.shape[2] != 1:
        raise ValueError(f"q must hold one new query, shape (batch, heads, 1, head_dim), got {tuple(q.shape)}")
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError(f"position must be a non-negative integer (the new query's index), got {position!r}")
    if k_cache.shape[2] != position + 1:
        raise ValueError(
            f"k_cache must hold the keys of positions 0 .. position = {position} (position + 1 tokens), "
            f"got {k_cache.shape[2]} tokens"
        )
    compute = _compute_dtype(q)
    q, k = q.to(compute), k_cache.to(compute)
    if log_n_train_length is not None:
        q = q * max(1.0, math.log(position + 1) / math.log(log_n_train_length))
    first_near = max(0, position - window + 1)  # keys j >= first_near have i − j < w
    device = q.device
    near_offsets = torch.arange(first_near - position, 1, device=device)  # j − i, in (−w, 0]
    near = _logits(q, _rotate(k[:, :, first_near:], near_offsets, inv_freq, layout))
    old = k[:, :, :first_near]
    if leaky_factor is None:
        far = _logits(_rotate(q, torch.tensor([window], device=device), inv_freq, layout), old)
    else:
        q_line = torch.tensor([(position - window) / leaky_factor + window], device=device)
        k_line = torch.arange(first_near, device=device) / leaky_factor
        far = _logits(_rotate(q, q_line, inv_freq, layout), _rotate(old, k_line, inv_freq, layout))
    return _attend(torch.cat((far, near), dim=-1), v_cache, causal=False)


# --- shared pieces -------------------------------------------------------------------


def _compute_dtype(x):
    return torch.promote_types(x.dtype, torch.float32)


def _rotate(x, positions, inv_freq, layout, attention_factor=1.0):
    """R_p x for x ``(batch, heads, seq, head_dim)`` and positions ``(seq,)`` or ``(batch, seq)``."""
    cos, sin = rope_cos_sin(positions, inv_freq.to(x.device), attention_factor)
    if cos.dim() == 3:  # (batch, seq, r/2): add the heads axis
        cos, sin = cos[:, None], sin[:, None]
    return apply_rope(x, cos, sin, layout)


def _logits(q, k):
    """q kᵀ / √head_dim, with k's heads repeated for grouped-query attention."""
    return q @ _repeat_kv(k, q.shape[1]).transpose(-1, -2) / math.sqrt(q.shape[-1])


def _repeat_kv(x, heads):
    return x.repeat_interleave(heads // x.shape[1], dim=1) if x.shape[1] != heads else x


def _attend(logits, v, causal):
    """softmax over keys, then the weighted sum of values; returns v's dtype.

    logits: ``(batch, heads, n_queries, n_keys)``; the queries are the last n_queries
    tokens, so with ``causal`` query t (at index n_keys − n_queries + t) sees keys up to it.
    """
    n_queries, n_keys = logits.shape[-2:]
    if causal:
        future = torch.ones(n_queries, n_keys, dtype=torch.bool, device=logits.device).triu(n_keys - n_queries + 1)
        logits = logits.masked_fill(future, float("-inf"))
    weights = logits.softmax(dim=-1)
    values = _repeat_kv(v, logits.shape[1]).to(weights.dtype)
    return (weights @ values).to(v.dtype)


# --- argument checks -----------------------------------------------------------------


def _check_window(window):
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive integer (the ReRoPE window w), got {window!r}")


def _check_factor(factor, name, scheme):
    minimum = 1 if scheme == "leaky_rerope" else 0
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > minimum:
        what = "the slope 1/k beyond the window needs k > 1" if minimum else "a positive ratio"
        raise ValueError(f"{name} must be a number > {minimum} for {scheme!r} ({what}), got {factor!r}")


def _check_rerope_options(leaky_factor, log_n_train_length):
    if leaky_factor is not None:
        _check_factor(leaky_factor, "leaky_factor", "leaky_rerope")
    if log_n_train_length is not None and (
        isinstance(log_n_train_length, bool) or not isinstance(log_n_train_length, int) or log_n_train_length < 2
    ):
        raise ValueError(
            f"log_n_train_length must be an integer >= 2 (the training length L of log_L n) or None, "
            f"got {log_n_train_length!r}"
        )


def _positions_or_arange(positions, name, batch, seq, device):
    """A (seq,) or (batch, seq) positions tensor as given, or arange(seq) for None."""
    if positions is None:
        return torch.arange(seq, device=device)
    if not isinstance(positions, torch.Tensor) or positions.shape not in ((seq,), (batch, seq)):
        raise ValueError(
            f"{name} must be a tensor of shape (seq,) = ({seq},) or (batch, seq) = ({batch}, {seq}), "
            f"got {_shape(positions)}"
        )
    return positions


def _check_inv_freq(inv_freq, head_dim):
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1 or inv_freq.numel() == 0:
        raise ValueError(f"inv_freq must be a non-empty 1-D tensor (rotary_dim // 2,), got {_shape(inv_freq)}")
    if 2 * inv_freq.shape[0] > head_dim:
        raise ValueError(
            f"inv_freq has {inv_freq.shape[0]} frequencies, so rotary_dim = {2 * inv_freq.shape[0]} "
            f"exceeds head_dim = {head_dim}"
        )


def _check_qkv(q, k, v, same_length=True):
    """q ``(batch, heads, n_q, head_dim)``, k ``(batch, kv_heads, n_k, head_dim)``,
    v ``(batch, kv_heads, n_k, v_dim)``; n_q = n_k unless ``same_length`` is False."""
    names = ("(batch, heads, seq, head_dim)", "(batch, kv_heads, seq, head_dim)", "(batch, kv_heads, seq, v_dim)")
    for name, t, shape in zip("qkv", (q, k, v), names):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not q.shape[0] == k.shape[0] == v.shape[0]:
        raise ValueError(
            f"q, k and v must have the same batch size, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[1] != v.shape[1] or q.shape[1] % k.shape[1]:
        raise ValueError(
            f"k and v must have the same number of heads, dividing q's {q.shape[1]} (grouped-query attention), "
            f"got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"k and v must hold the same number of tokens, got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"k must have q's head_dim = {q.shape[3]}, got k {tuple(k.shape)}")
    if same_length and q.shape[2] != k.shape[2]:
        raise ValueError(f"q and k must have the same seq (self-attention), got {tuple(q.shape)}, {tuple(k.shape)}")


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
            raise ValueError(f"{name} must be a floating-point tensor of shape (seq, head_dim), got {_shape(t)}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape (seq, head_dim), got {tuple(q.shape)} and {tuple(k.shape)}")
    seq, head_dim = q.shape
    if inv_freq is None:
        inv_freq, _ = rope_frequencies(head_dim)
    P = relative_position_matrix(seq, scheme, **_scheme_options(scheme, window, factor))
    q, k = q.double(), k.double()
    logits = torch.full((seq, seq), float("nan"), dtype=torch.float64)
    for i in range(seq):  # one query row at a time keeps memory at seq·head_dim
        cos, sin = rope_cos_sin(P[i, : i + 1], inv_freq)
        rotated = apply_rope(q[i].expand(i + 1, head_dim), cos, sin, layout)
        logits[i, : i + 1] = (rotated * k[: i + 1]).sum(-1) / math.sqrt(head_dim)
    return logits


def _scheme_options(scheme, window, factor):
    """The window and factor keywords that relative_position_matrix accepts for this scheme."""
    options = {}
    if scheme in ("rerope", "leaky_rerope"):
        options["window"] = window
    if scheme in ("pi", "leaky_rerope"):
        options["factor"] = factor
    return options
