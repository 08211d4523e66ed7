"""Triton kernels for RoPE and ReRoPE attention, with autograd and torch.compile support.

Imported on first use (``ropekit.kernels.apply_rope_qk``), so ``import ropekit`` needs no
triton. The kernels want CUDA tensors; on a CPU they run only under the Triton
interpreter (set ``TRITON_INTERPRET=1`` before triton is imported), which is how the
lessons and CI check them. Each kernel's plain-torch specification is in
``ropekit.reference`` / ``ropekit.attention``.
"""

import importlib

# public name -> submodule that defines it
_EXPORTS = {
    "apply_rope_qk": "rope",
    "apply_mrope_qk": "mrope",
    "rerope_attention": "rerope",
    "rope_decode_append": "decode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        try:
            module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        except ImportError as err:
            if "triton" in str(err):
                raise ImportError(
                    f"ropekit.kernels.{name} needs triton (Linux wheels: pip install triton). "
                    "Without it, use the reference functions in ropekit (apply_rope, rerope_attention)."
                ) from err
            raise
        globals()[name] = getattr(module, name)  # later lookups skip __getattr__
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
