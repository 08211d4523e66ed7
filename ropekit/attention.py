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

import torch

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


# --- argument checks -----------------------------------------------------------------


def _check_window(window):
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive integer (the ReRoPE window w), got {window!r}")


def _check_factor(factor, name, scheme):
    minimum = 1 if scheme == "leaky_rerope" else 0
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > minimum:
        what = "the slope 1/k beyond the window needs k > 1" if minimum else "a positive ratio"
        raise ValueError(f"{name} must be a number > {minimum} for {scheme!r} ({what}), got {factor!r}")
