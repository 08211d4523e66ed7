"""What the Triton kernels share: the dtypes they take, whether Triton runs interpreted,
and strides named by the library's tensor order.

Kept free of any one kernel's logic, so that ``rope.py`` and ``rerope.py`` (and kernels
added later) read the same facts the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton

# Storage dtypes the kernels accept; their math is float32 whatever the storage.
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _probe():
    pass


# Triton decides when a kernel is decorated whether it runs compiled or in its interpreter
# (TRITON_INTERPRET=1 before triton is imported: kernels run on CPU tensors with numpy).
# Asking a decorated function is the one test that always agrees with the kernels.
INTERPRETED = type(_probe).__name__ == "InterpretedFunction"


class QKVStrides(NamedTuple):
    """Element strides of a ``(batch, seq, heads, head_dim)`` tensor, by name."""

    batch: int
    seq: int
    heads: int
    feature: int


def qkv_strides(t: torch.Tensor) -> QKVStrides:
    """The strides of a ``(batch, seq, heads, head_dim)`` tensor, named; a packed
    ``(total_tokens, heads, head_dim)`` tensor gets batch stride 0."""
    if t.dim() == 3:
        return QKVStrides(0, *t.stride())
    return QKVStrides(*t.stride())
