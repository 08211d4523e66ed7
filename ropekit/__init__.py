"""ropekit: Rotary Position Embedding, taught.

The reference math is imported here; the Triton kernels live in ``ropekit.kernels`` and
are imported only when used, so ``import ropekit`` works without triton (e.g. on macOS).
"""

from .attention import relative_position_matrix, rerope_attention, rope_attention
from .decode import rerope_decode_step, rope_decode_step, rotate_as_if_first
from .exact_angles import exact_cos_sin, fixed_point_turns
from .frequencies import rope_frequencies, wavelengths
from .reference import (
    apply_rope,
    apply_rope_complex,
    permute_qk_weight,
    rope_cos_sin,
    rotation_matrix,
    to_half_layout,
    to_paper_layout,
)

__version__ = "0.1.0"

__all__ = [
    "rope_frequencies",
    "wavelengths",
    "rope_cos_sin",
    "exact_cos_sin",
    "fixed_point_turns",
    "apply_rope",
    "apply_rope_complex",
    "rotation_matrix",
    "to_half_layout",
    "to_paper_layout",
    "permute_qk_weight",
    "relative_position_matrix",
    "rope_attention",
    "rerope_attention",
    "rerope_decode_step",
    "rope_decode_step",
    "rotate_as_if_first",
]
