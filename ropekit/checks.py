"""Argument checks shared by every public function of ropekit.

Each check raises a ``TypeError`` or ``ValueError`` whose message names the argument and
what was expected, so a shape or type mistake never turns into a silent wrong answer or a
failure deep inside torch. Everything here reads only Python attributes of tensors
(shape, dtype, device, stride, data pointer): no ``.item()``, no host synchronisation, so
the kernels' fast paths can call these checks too. Shape comparisons are plain ``==`` so
that torch.compile can decide them on symbolic (dynamic) sizes. 

What needs more than attributes (overlapping memory, values such as cu_seqlens or
positions outside the table) is in :mod:`ropekit.validation`, with the one policy for
positions outside the cos/sin table.

The tensor-order rule of the whole library is stated here once and followed everywhere:
queries, keys and values are ``(batch, seq, heads, head_dim)`` (``QKV_ORDER``), the
memory order of ``q_proj(x).view(batch, seq, heads, head_dim)``; Hugging Face's
``(batch, heads, seq, head_dim)`` tensors are passed as ``x.transpose(1, 2)`` (a view, no
copy).
"""

from __future__ import annotations

import numbers

import torch

from .validation import check_inplace

LAYOUTS = ("paper", "half")
ANGLES = ("float32", "exact")  # how the angle m·θ_i is formed (ropekit.exact_angles, lesson 09)
QKV_ORDER = "(batch, seq, heads, head_dim)"


def describe(value) -> str:
    """A short description of a value for an error message: a tensor's shape, else its type."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def is_integer(value) -> bool:
    """True for Python and numpy integers and 0-d integer tensors; False for bools."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return False
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_floating_point() and not value.is_complex()
    return isinstance(value, numbers.Integral)


def is_real(value) -> bool:
    """True for real numbers: Python, numpy and 0-d real tensors; False for bools and complex."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return False
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_complex()
    return isinstance(value, numbers.Real)


def integer(value, name: str, minimum: int | None = None, what: str = "") -> int:
    """value as a Python int, checked to be an integer >= minimum (numpy scalars accepted)."""
    if not is_integer(value) or (minimum is not None and int(value) < minimum):
        kind = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {kind}{what}, got {value!r}")
    return int(value)


def real(value, name: str, above: float | None = None, at_least: float | None = None, what: str = "") -> float:
    """value as a finite Python float (numpy scalars and 0-d tensors accepted), checked
    to be > above and >= at_least when those are given."""
    ok = is_real(value) and float(value) == float(value) and abs(float(value)) != float("inf")
    if ok and above is not None:
        ok = float(value) > above
    if ok and at_least is not None:
        ok = float(value) >= at_least
    if not ok:
        bound = f" > {above:g}" if above is not None else f" >= {at_least:g}" if at_least is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}{what}, got {value!r}")
    return float(value)


def check_layout(layout, name: str = "layout") -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"{name} must be 'paper' or 'half', got {layout!r}")
    return layout


def check_angles(angles) -> str:
    if angles not in ANGLES:
        raise ValueError(f"angles must be 'float32' or 'exact', got {angles!r}")
    return angles


def check_dim(dim, name: str = "dim") -> int:
    if not is_integer(dim) or int(dim) <= 0 or int(dim) % 2:
        raise ValueError(f"{name} must be a positive even integer (features come in pairs), got {dim!r}")
    return int(dim)


def check_inv_freq(inv_freq, head_dim: int) -> None:
    """inv_freq must be a non-empty (rotary_dim // 2,) tensor with rotary_dim <= head_dim."""
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1 or inv_freq.numel() == 0:
        raise ValueError(f"inv_freq must be a non-empty 1-D tensor (rotary_dim // 2,), got {describe(inv_freq)}")
    if 2 * inv_freq.shape[0] > head_dim:
        raise ValueError(
            f"inv_freq has {inv_freq.shape[0]} frequencies, so rotary_dim = {2 * inv_freq.shape[0]} "
            f"exceeds head_dim = {head_dim}"
        )


def check_sections(sections, interleaved: bool = False, pairs: int | None = None) -> tuple[int, int, int]:
    """M-RoPE's pairs per axis (n_t, n_h, n_w): three non-negative integers with a positive sum,
    equal to ``pairs`` (= len(inv_freq)) when given. Interleaved (Qwen3-VL: pair i follows h
    when i % 3 == 1 and i < 3·n_h, w when i % 3 == 2 and i < 3·n_w), the cycle must give each
    axis its count: 3·n_h ≤ total + 1 and 3·n_w ≤ total."""
    try:
        ok = len(sections) == 3 and all(is_integer(s) and int(s) >= 0 for s in sections)
    except TypeError:
        ok = False
    if not ok or sum(int(s) for s in sections) == 0:
        raise ValueError(f"sections must be three non-negative integers (n_t, n_h, n_w) with a positive sum, "
                         f"got {sections!r}")
    n_t, n_h, n_w = (int(s) for s in sections)
    total = n_t + n_h + n_w
    if pairs is not None and total != pairs:
        raise ValueError(f"sections must sum to len(inv_freq) = {pairs}, got {list(sections)}")
    if interleaved and (3 * n_h > total + 1 or 3 * n_w > total):
        raise ValueError(f"interleaved sections {list(sections)} do not fit: cycling t, h, w over {total} pairs "
                         f"gives h at most {(total + 1) // 3} and w at most {total // 3} pairs")
    return n_t, n_h, n_w


def check_mrope_positions(positions, batch: int | None = None, seq: int | None = None) -> None:
    """M-RoPE positions must be an integer ``(3, batch or 1, seq)`` tensor of (t, h, w) ids."""
    if (not isinstance(positions, torch.Tensor) or positions.dim() != 3 or positions.shape[0] != 3
            or positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool):
        raise ValueError(f"positions must be an integer (3, batch, seq) tensor of (t, h, w) ids, "
                         f"got {describe(positions)}")
    if batch is not None and (positions.shape[1] not in (1, batch) or positions.shape[2] != seq):
        raise ValueError(f"positions must have shape (3, {batch} or 1, {seq}), got {tuple(positions.shape)}")


def check_window(window) -> int:
    return integer(window, "window", minimum=1, what=" (the ReRoPE window w)")


def check_leaky_factor(leaky_factor):
    """None (ReRoPE) or k > 1 (Leaky ReRoPE's slope 1/k beyond the window)."""
    if leaky_factor is None:
        return None
    return real(leaky_factor, "leaky_factor", above=1, what=" (Leaky ReRoPE's k; None for ReRoPE)")


def check_log_n_train_length(train_length):
    """None, or the training length L >= 2 of log-n scaling's log_L n."""
    if train_length is None:
        return None
    return integer(train_length, "log_n_train_length", minimum=2, what=" (the training length L of log_L n) or None")


def positions_or_arange(positions, name: str, batch: int, seq: int, device) -> torch.Tensor:
    """A ``(seq,)`` or ``(batch, seq)`` real positions tensor as given, or ``arange(seq)`` for None."""
    if positions is None:
        return torch.arange(seq, device=device)
    if (not isinstance(positions, torch.Tensor) or positions.shape not in ((seq,), (batch, seq))
            or positions.dtype == torch.bool or positions.is_complex()):
        raise ValueError(
            f"{name} must be an integer or real tensor of shape (seq,) = ({seq},) or (batch, seq) = "
            f"({batch}, {seq}), got {describe(positions)}"
        )
    return positions


def check_qkv(q, k, v, same_length: bool = True) -> None:
    """q ``(batch, seq, heads, head_dim)``, k ``(batch, kv_seq, kv_heads, head_dim)``,
    v ``(batch, kv_seq, kv_heads, v_dim)``; seq = kv_seq unless ``same_length`` is False;
    kv_heads divides heads (grouped-query attention)."""
    shapes = ("(batch, seq, heads, head_dim)", "(batch, seq, kv_heads, head_dim)", "(batch, seq, kv_heads, v_dim)")
    for name, t, shape in zip("qkv", (q, k, v), shapes):
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
    if k.shape[2] != v.shape[2] or k.shape[2] == 0 or q.shape[2] % k.shape[2]:
        raise ValueError(
            f"k and v must have the same number of heads, dividing q's {q.shape[2]} (grouped-query attention; "
            f"tensors are {QKV_ORDER}), got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"k and v must hold the same number of tokens, got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"k must have q's head_dim = {q.shape[3]}, got k {tuple(k.shape)}")
    if same_length and q.shape[1] != k.shape[1]:
        raise ValueError(
            f"q and k must have the same seq (self-attention; tensors are {QKV_ORDER}), "
            f"got {tuple(q.shape)}, {tuple(k.shape)}"
        )


# --- apply_rope_qk: the kernel and its reference twin check the same things ---------------

INT_DTYPES = (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)
UNSIGNED_DTYPES = tuple(getattr(torch, name) for name in ("uint8", "uint16", "uint32", "uint64") if hasattr(torch, name))


def check_rope_qk(q, k, cos, sin, layout, inplace, rotary_dim, positions, inv_freq, attention_factor, cu_seqlens,
                  angles="float32"):
    """The checks shared by ``ropekit.kernels.apply_rope_qk`` and its twin
    ``ropekit.reference.apply_rope_qk`` (see either for the arguments).

    Returns ``(rotary_dim, offset, positions, attention_factor)``: positions is None or a
    tensor, and offset the int form of positions (0 when positions is a tensor or None).
    """
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError(f"q and k must be tensors, got {type(q).__name__} and {type(k).__name__}")
    if not q.is_floating_point() or k.dtype != q.dtype:
        raise TypeError(f"q and k must be floating point with the same dtype, got {q.dtype} and {k.dtype}")
    if k.device != q.device:
        raise ValueError(f"q and k must be on the same device, got {q.device} and {k.device}")
    varlen = cu_seqlens is not None
    if varlen:
        if q.dim() != 3 or k.dim() != 3 or k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
            raise ValueError(
                "with cu_seqlens, q must be (total_tokens, q_heads, head_dim) and k (total_tokens, kv_heads, "
                f"head_dim), got {tuple(q.shape)} and {tuple(k.shape)}"
            )
        seq = q.shape[0]
    elif q.dim() != 4 or k.dim() != 4 or k.shape[0] != q.shape[0] or k.shape[1] != q.shape[1] or k.shape[3] != q.shape[3]:
        raise ValueError(
            f"q must be {QKV_ORDER} and k (batch, seq, kv_heads, head_dim), got {tuple(q.shape)} and "
            f"{tuple(k.shape)} (for Hugging Face's (batch, heads, seq, head_dim) tensors pass q.transpose(1, 2); "
            "for packed sequences pass cu_seqlens)"
        )
    else:
        seq = q.shape[1]
    head_dim = q.shape[-1]
    check_layout(layout)
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    if inplace:
        check_inplace(q, k)

    check_angles(angles)
    if cos is not None or sin is not None:
        if angles == "exact":
            raise ValueError("angles='exact' computes the angles from inv_freq; a cos/sin table already holds "
                             "its own (make it with rope_cos_sin(..., angles='exact'))")
        half = _check_table(cos, sin, q, seq, varlen, positions, inv_freq, attention_factor)
    else:
        if not isinstance(inv_freq, torch.Tensor):
            raise ValueError("pass either cos and sin (a table) or inv_freq (angles computed from the positions)")
        # exact angles also take the int64 fixed-point turns of ropekit.fixed_point_turns
        turns = angles == "exact" and inv_freq.dtype == torch.int64
        if inv_freq.dim() != 1 or not (inv_freq.is_floating_point() or turns) or inv_freq.device != q.device:
            raise ValueError(f"inv_freq must be a floating-point (rotary_dim // 2,) tensor on {q.device} (or, "
                             f"with angles='exact', int64 fixed_point_turns), got {describe(inv_freq)} on "
                             f"{inv_freq.device}")
        if inv_freq.requires_grad and torch.is_grad_enabled():
            raise ValueError("apply_rope_qk gives no gradient for inv_freq: pass inv_freq.detach()")
        attention_factor = real(attention_factor, "attention_factor")
        half = inv_freq.shape[0]

    source = "cos/sin" if inv_freq is None else "inv_freq"
    rotary_dim = check_rotary_width(half, head_dim, rotary_dim, source)

    offset = 0
    if isinstance(positions, torch.Tensor):
        _check_positions(positions, q, seq, cu_seqlens)
    elif positions is not None:
        if not is_integer(positions):
            raise TypeError(f"positions must be None, an int or an integer tensor, got {type(positions).__name__}")
        offset, positions = int(positions), None

    if varlen and (not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 2
                   or cu_seqlens.dtype not in (torch.int32, torch.int64) or cu_seqlens.device != q.device):
        raise ValueError(f"cu_seqlens must be an int32 or int64 (n_seqs + 1,) tensor on {q.device}, "
                         f"got {describe(cu_seqlens)}")
    return rotary_dim, offset, positions, float(attention_factor)


def _check_table(cos, sin, q, seq, varlen, positions, inv_freq, attention_factor):
    """Check a cos/sin table; return rotary_dim // 2."""
    for name, t in (("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.device != q.device:
            raise ValueError(f"{name} must be a floating-point tensor on {q.device}, got {describe(t)}")
        if t.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"apply_rope_qk gives no gradient for {name}: pass {name}.detach()")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if inv_freq is not None:
        raise ValueError("pass either cos and sin or inv_freq, not both")
    if attention_factor != 1.0:
        raise ValueError("attention_factor applies to inv_freq; a cos/sin table already includes it")
    if cos.dim() == 3 and not varlen:
        batch = q.shape[0]
        if not one_or(cos.shape[0], batch) or cos.shape[1] != seq:
            raise ValueError(
                f"cos/sin of shape (batch, seq, rotary_dim // 2) must be ({batch} or 1, {seq}, ...), "
                f"got {tuple(cos.shape)}"
            )
        if positions is not None:
            raise ValueError("cos/sin of shape (batch, seq, rotary_dim // 2) are already per token: positions "
                             "must be None (or pass the (n_positions, rotary_dim // 2) table)")
    elif cos.dim() != 2:
        raise ValueError(
            f"cos/sin must be (n_positions, rotary_dim // 2){'' if varlen else ' or (batch, seq, rotary_dim // 2)'}, "
            f"got {tuple(cos.shape)}"
        )
    elif positions is None or (is_integer(positions) and not isinstance(positions, torch.Tensor)):
        first = int(positions or 0)
        if first < 0 or (not varlen and first + seq > cos.shape[0]):
            raise ValueError(
                f"positions {first} .. {first + seq - 1} need cos/sin rows that the table of "
                f"{cos.shape[0]} rows does not have"
            )
    return cos.shape[-1]


def _check_positions(positions, q, seq, cu_seqlens):
    if positions.dtype not in INT_DTYPES or positions.device != q.device:
        raise ValueError(f"positions must be an integer tensor on {q.device}, got {describe(positions)} "
                         f"on {positions.device}")
    if cu_seqlens is not None:
        n_seqs = cu_seqlens.shape[0] - 1 if isinstance(cu_seqlens, torch.Tensor) and cu_seqlens.dim() == 1 else None
        if positions.dim() != 1 or n_seqs is None or not one_or(positions.shape[0], n_seqs):
            raise ValueError(
                f"with cu_seqlens, positions must be an int or (n_seqs,) = ({n_seqs},) per-sequence offsets "
                f"(one per sequence), got shape {tuple(positions.shape)}"
            )
        return
    batch = q.shape[0]
    if positions.dim() == 1 and one_or(positions.shape[0], batch):
        return
    if positions.dim() == 2 and one_or(positions.shape[0], batch) and positions.shape[1] == seq:
        return
    raise ValueError(
        f"positions must be (batch,) offsets or (batch, seq) position_ids with batch = {batch} (or 1) and "
        f"seq = {seq}, got shape {tuple(positions.shape)}"
    )



def one_or(size, n) -> bool:
    """size == 1 or size == n, written so that torch.compile can decide it when n is a
    symbolic (dynamic) size: ``size in (1, n)`` compares by identity first and fails there."""
    return size == 1 or size == n


def check_rotary_width(half, head_dim, rotary_dim, source="cos/sin"):
    """rotary_dim for angles of ``half`` columns (one per feature pair) applied to features
    of size head_dim; returns it as an int.

    Partial rotary (rotary_dim < head_dim) must be asked for by passing rotary_dim, as
    transformers asks for ``partial_rotary_factor``: a table built for the wrong head_dim
    must not quietly leave features unrotated. Tables of Hugging Face's width (the two
    halves repeated: head_dim columns) and transposed tables get a message that says so.
    """
    if 2 * half > head_dim:
        if half == head_dim:
            hint = (f"{source} have head_dim = {half} columns: Hugging Face's tables repeat the two halves; "
                    f"pass cos[..., :{half // 2}] and sin[..., :{half // 2}]")
        else:
            hint = f"{source} have {half} columns, more than the {head_dim // 2} pairs of head_dim = {head_dim}"
        raise ValueError(f"{hint}. ropekit expects (..., seq, rotary_dim // 2): one column per rotated pair, "
                         "rows by position")
    if rotary_dim is None:
        if 2 * half != head_dim:
            raise ValueError(
                f"{source} have {half} columns (rotary_dim = {2 * half}) but head_dim is {head_dim}: pass "
                f"rotary_dim={2 * half} to rotate only the first {2 * half} features (partial rotary), or build "
                f"the angles for all {head_dim} features (rope_frequencies({head_dim}))")
        return 2 * half
    if not is_integer(rotary_dim) or int(rotary_dim) != 2 * half:
        raise ValueError(f"rotary_dim must be 2 * (columns of {source}) = {2 * half}, got {rotary_dim!r}")
    return int(rotary_dim)
