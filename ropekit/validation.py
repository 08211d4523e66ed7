"""Checks that look past a tensor's shape: its memory and, when asked, its values.

:mod:`ropekit.checks` reads shapes, dtypes and devices. Two mistakes need more:

* In place, q and k must not share memory (``k = q[:, :, :1]`` would rotate the shared
  elements twice, Liger-Kernel #342) and must not be leaves that require grad. Both are
  decided from pointers, strides and flags, before anything is written: no host sync.
* Values: cu_seqlens must start at 0, never decrease and end within the tokens, and every
  position must have a row in the cos/sin table. Reading values costs a host sync on a
  GPU, so the kernel checks them only when asked.

Positions outside the cos/sin table: one policy for every form. It is an error. Forms
checked from attributes (None, an int offset, also negative) raise at once, in the kernel
and its twin; the twin (:func:`ropekit.reference.apply_rope_qk`) checks tensor positions
too (``(batch,)`` offsets, position_ids, packed offsets) and raises; the kernel cannot read
a tensor's values without a host sync, so by default its out-of-table tokens come out NaN
(loud, never a plausible value), and with ``validate=True`` or the environment variable
``ROPEKIT_VALIDATE=1`` it raises the twin's ValueError. cu_seqlens values follow the same
rule.
"""

from __future__ import annotations

import os

import numpy as np
import torch

def check_inplace(q, k) -> None:
    """inplace=True needs q and k that autograd lets us overwrite and that share no memory.

    Both checks read only Python attributes (requires_grad, pointers, strides): no sync.
    """
    if q is k:
        raise ValueError("inplace=True needs q and k to be different tensors")
    if torch.is_grad_enabled():
        for name, t in (("q", q), ("k", k)):
            base = t if t._base is None else t._base
            if t.requires_grad and base.is_leaf:
                what = "a leaf tensor" if t is base else "a view of a leaf tensor"
                raise ValueError(f"inplace=True cannot overwrite {name}: it is {what} that requires grad "
                                 "(autograd forbids it); use inplace=False, or rotate a non-leaf (e.g. a projection's output)")
    if not torch.compiler.is_compiling() and share_memory(q, k):
        raise ValueError("inplace=True needs q and k in separate memory, but they overlap (e.g. k = q[:, :, :1]): "
                         "the shared elements would be rotated twice; use inplace=False or separate tensors")


class _Strided:
    """numpy's view of a tensor's addresses (pointer, shape, byte strides); no data is read."""

    def __init__(self, t):
        self.__array_interface__ = {"data": (t.data_ptr(), False), "shape": tuple(t.shape), "version": 3,
                                    "strides": tuple(x * t.element_size() for x in t.stride()),
                                    "typestr": f"|V{t.element_size()}"}


def share_memory(a, b) -> bool:
    """True when tensors a and b have at least one element at the same address.

    Exact for the usual cases (slices of a packed qkv tensor do not overlap, k = q[:, :, :1]
    does): different storages never overlap, disjoint head slices of one tensor and disjoint
    byte ranges neither, and otherwise numpy's shares_memory solves it from pointers and
    strides (tens of microseconds on the host, only for such unusual views). No sync.
    """
    if a.numel() == 0 or b.numel() == 0 or a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    if _disjoint_head_slices(a, b) or _disjoint_head_slices(b, a):
        return False
    ends = []
    for t in (a, b):
        last = sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
        ends.append((t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()))
    (a0, a1), (b0, b1) = ends
    if a1 <= b0 or b1 <= a0:
        return False
    try:
        return bool(np.shares_memory(np.asarray(_Strided(a)), np.asarray(_Strided(b)), max_work=100_000))
    except np.exceptions.TooHardError:
        return True  # cannot prove them apart: refuse rather than risk a double rotation


def _disjoint_head_slices(a, b) -> bool:
    """True when a and b are provably disjoint head slices (a first) of one
    (batch, seq, heads, head_dim) tensor that does not overlap itself, e.g. q and k of a
    packed qkv projection: the common case, decided in a few integer operations."""
    if a.dim() != 4 or a.stride() != b.stride() or a.shape[:2] != b.shape[:2] or a.shape[3] != b.shape[3]:
        return False
    sb, ss, sh, sf = a.stride()
    batch, seq, _, head_dim = a.shape
    gap = b.storage_offset() - a.storage_offset()
    if sf != 1 or sh < head_dim or gap % sh or gap < a.shape[2] * sh:
        return False  # b must start at a head past a's last one, in the same token
    heads = gap // sh + b.shape[2]  # heads of the parent tensor the two are cut from
    return (seq == 1 or ss >= heads * sh) and (batch == 1 or sb >= max(seq, 1) * ss)


# --- values: checks that need a host sync, opt-in on the kernel ----------------------------

VALIDATE_ENV = "ROPEKIT_VALIDATE"


def validate_requested(validate) -> bool:
    """validate=True, or validate=None with the environment variable ROPEKIT_VALIDATE=1."""
    if validate is None:
        return os.environ.get(VALIDATE_ENV, "0") not in ("", "0")
    if not isinstance(validate, bool):
        raise TypeError(f"validate must be True, False or None (None: the {VALIDATE_ENV} environment variable), "
                        f"got {validate!r}")
    return validate


def check_rope_qk_values(q, cos, positions, offset, cu_seqlens) -> None:
    """The value checks of apply_rope_qk: cu_seqlens starts at 0, never decreases and ends
    at most at the token count; every position m lies inside the cos/sin table.

    These read tensor values, a host synchronisation on a GPU: the reference twin always
    runs them, the kernel only when asked (``validate=True`` or ``ROPEKIT_VALIDATE=1``).
    Arguments as returned by :func:`check_rope_qk` (shapes already checked).
    """
    if cu_seqlens is not None:
        cu = cu_seqlens.long()
        if int(cu[0]) != 0 or bool((cu[1:] < cu[:-1]).any()) or int(cu[-1]) > q.shape[0]:
            raise ValueError(f"cu_seqlens must start at 0, never decrease and end at most at the {q.shape[0]} "
                             f"tokens, got {cu.tolist()}")
    if cos is None or cos.dim() != 2:
        return  # angles computed from positions, or a table already gathered per token
    rows = cos.shape[0]
    if cu_seqlens is None:
        seq = q.shape[1]
        if positions is None or seq == 0:
            return
        if positions.dim() == 1:  # per-sequence offsets: positions p .. p + seq - 1
            low, high = positions.long() + offset, positions.long() + offset + seq - 1
        else:
            low = high = positions.long() + offset
    else:
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        start = offset + (positions.long() if positions is not None else torch.zeros_like(lengths))
        start = start.expand(lengths.shape)
        nonempty = lengths > 0
        low, high = start[nonempty], (start + lengths - 1)[nonempty]
    if low.numel() and (int(low.min()) < 0 or int(high.max()) >= rows):
        raise ValueError(f"positions reach {int(low.min())} .. {int(high.max())}, outside the cos/sin table of "
                         f"{rows} rows (0 .. {rows - 1})")
