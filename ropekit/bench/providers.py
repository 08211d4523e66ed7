"""Who computes RoPE (and ReRoPE attention) in the benchmark: each provider is a builder
that returns the call to time, with every provider seeing the same tensors.

RoPE providers: ``builder(layout, cos, sin, inv_freq) -> fn(q, k) -> (q_out, k_out)``, with
q: ``(batch, seq, q_heads, head_dim)``, k: ``(batch, seq, kv_heads, head_dim)``, contiguous;
cos, sin: ``(seq, head_dim // 2)`` float32 from ``rope_cos_sin``. Every provider supports
autograd. ReRoPE providers: :func:`rerope_call`.
"""

from __future__ import annotations

import os
from importlib import import_module

import torch

from ..reference import apply_rope_complex, apply_rope_qk, rope_cos_sin
from .report import one_line


class _CopyQK(torch.autograd.Function):
    """The bandwidth ceiling: copy q and k forward, copy their gradients backward."""

    @staticmethod
    def forward(ctx, q, k):
        return q.clone(), k.clone()

    @staticmethod
    def backward(ctx, dq, dk):
        return dq.clone(), dk.clone()


def _copy(layout, cos, sin, inv_freq):
    return _CopyQK.apply


def torch_eager(layout, cos, sin, inv_freq):
    """:func:`ropekit.reference.apply_rope_qk`, the kernel's plain-torch twin, called as the
    kernel is: the reference every other provider is checked against."""
    return lambda q, k: apply_rope_qk(q, k, cos, sin, layout=layout)


def _torch_complex(layout, cos, sin, inv_freq):
    # (seq, 1): one angle per token for every head, as LLaMA's reshape_for_broadcast does
    positions = torch.arange(cos.shape[0], device=cos.device)[:, None]
    return lambda q, k: (
        apply_rope_complex(q, positions, inv_freq), apply_rope_complex(k, positions, inv_freq)
    )


def _torch_compile(layout, cos, sin, inv_freq, dynamic=False):
    # dynamic=False: code specialised to this shape (GPU runs); True: one compile serves
    # every size (CPU runs, where Inductor's C++ compile costs seconds per shape)
    return torch.compile(torch_eager(layout, cos, sin, inv_freq), dynamic=dynamic)


def _ropekit(layout, cos, sin, inv_freq):
    from ..kernels import apply_rope_qk as kernel  # the same call as torch_eager's twin

    return lambda q, k: kernel(q, k, cos, sin, layout=layout)


def _liger(layout, cos, sin, inv_freq):
    from liger_kernel.transformers.rope import liger_rotary_pos_emb

    # Hugging Face style: (1, seq, head_dim) tables with the half-size table repeated,
    # and q, k as (batch, heads, seq, head_dim) views of (batch, seq, heads, head_dim)
    # memory. Liger rotates in place and computes in the tables' dtype (float32 here).
    full_cos, full_sin = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]

    def liger(q, k):
        q_out, k_out = liger_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), full_cos, full_sin)
        return q_out.transpose(1, 2), k_out.transpose(1, 2)

    return liger


def _flash_attn(layout, cos, sin, inv_freq):
    from flash_attn.layers.rotary import apply_rotary_emb

    interleaved = layout == "paper"  # flash-attn's "interleaved" pairs (2i, 2i+1)
    tables = {}  # flash-attn wants cos/sin in x's dtype, as Hugging Face models keep them

    def flash_attn(q, k):
        if q.dtype not in tables:
            tables[q.dtype] = cos.to(q.dtype), sin.to(q.dtype)
        c, s = tables[q.dtype]
        return (apply_rotary_emb(q, c, s, interleaved=interleaved),
                apply_rotary_emb(k, c, s, interleaved=interleaved))

    return flash_attn


# name -> (layouts it runs in, "" where layout plays no role; builder)
ROPE_PROVIDERS = {
    "copy": (("",), _copy),
    "torch_eager": (("half", "paper"), torch_eager),
    "torch_complex": (("paper",), _torch_complex),
    "torch_compile": (("half", "paper"), _torch_compile),
    "ropekit": (("half", "paper"), _ropekit),
    "liger": (("half",), _liger),
    "flash_attn": (("half", "paper"), _flash_attn),
}
REROPE_PROVIDERS = ("sdpa_rope", "reference", "ropekit_fused")
CPU_QUICK_PROVIDERS = ("copy", "torch_eager", "torch_complex", "torch_compile")  # --quick without a GPU
GPU_ONLY = ("ropekit", "liger", "flash_attn", "ropekit_fused")  # Triton kernels
_IMPORTS = {  # provider -> (module to import, what to install)
    "ropekit": ("ropekit.kernels.rope", "triton"),
    "liger": ("liger_kernel.transformers.rope", "pip install liger-kernel"),
    "flash_attn": ("flash_attn.layers.rotary", "pip install flash-attn"),
    "reference": ("ropekit.attention", "ropekit.attention"),
    "ropekit_fused": ("ropekit.kernels.rerope", "triton"),
}


def no_grad_call(provider, fn, q, k):
    """The forward call without autograd whose host time ``host_nograd_us`` records: ``fn``
    on copies of q and k that do not require grad (Liger rotates in place: its copies, not
    the suite's tensors). For ``copy``, the floor issue 14 measures the launch path against:
    ``q_out.copy_(q); k_out.copy_(k)`` into outputs allocated once."""
    q, k = q.detach().clone(), k.detach().clone()
    if provider != "copy":
        return lambda: fn(q, k)
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)

    def copy_into():
        q_out.copy_(q)
        k_out.copy_(k)
        return q_out, k_out

    return copy_into


def unavailable(provider, device):
    """Why ``provider`` cannot run here (a one-line reason), or None when it can."""
    if provider in GPU_ONLY:
        if device != "cuda":
            return ("needs a CUDA GPU: a Triton kernel runs on CPU only under TRITON_INTERPRET=1, "
                    "whose timings mean nothing")
        if os.environ.get("TRITON_INTERPRET") == "1":
            return "TRITON_INTERPRET=1 is set: interpreter timings mean nothing; unset it"
    if provider in _IMPORTS:
        module, install = _IMPORTS[provider]
        try:
            import_module(module)
        except Exception as err:  # ImportError, or a broken install failing at import time
            return f"{module} not importable ({one_line(err)}); needs {install}"
    return None


def rerope_call(provider, q, k, v, inv_freq, window):
    """The call to time for one ReRoPE provider: causal attention of q, k, v
    ``(batch, seq, heads, head_dim)`` with window w. ``reference`` and ``ropekit_fused``
    (twins with one signature) take them as they are; ``sdpa_rope``, the baseline, is
    plain RoPE attention: q and k rotated beforehand, then torch's SDPA, which wants
    ``(batch, heads, seq, head_dim)`` views and gives its output in that order."""
    if provider == "sdpa_rope":
        cos, sin = rope_cos_sin(torch.arange(q.shape[1], device=q.device), inv_freq)
        q_rot, k_rot = apply_rope_qk(q, k, cos, sin)
        q_rot, k_rot, v_sdpa = q_rot.transpose(1, 2), k_rot.transpose(1, 2), v.transpose(1, 2)
        attend = torch.nn.functional.scaled_dot_product_attention
        return lambda: attend(q_rot, k_rot, v_sdpa, is_causal=True).transpose(1, 2)
    module = "ropekit.attention" if provider == "reference" else "ropekit.kernels"
    rerope = import_module(module).rerope_attention
    return lambda: rerope(q, k, v, inv_freq, window, causal=True)
