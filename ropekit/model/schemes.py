"""Position schemes a trained model can be evaluated with, chosen at call time.

A model trained with RoPE at length L holds weights that do not depend on positions: the
position scheme only decides which rotation each query and key gets (and, for ReRoPE,
which logit each pair keeps). So one checkpoint can be run under every scheme of lesson
04 without retraining:

    name            frequencies (ropekit.rope_frequencies)        attention (ropekit.attention)
    rope            θ_i = base^(−2i/d)                             rope_attention
    pi              scaling="linear" (θ_i / factor)                rope_attention
    ntk             scaling="ntk"                                  rope_attention
    dynamic         scaling="dynamic", seq_len = current length    rope_attention
    yarn            scaling="yarn" (+ its attention factor)        rope_attention
    llama3          scaling="llama3"                               rope_attention
    rerope          θ_i, window w                                  rerope_attention
    leaky_rerope    θ_i, window w, slope 1/factor                  rerope_attention
    nope            no rotation (θ_i = 0: R_m is the identity)     rope_attention

``log_n=True`` adds Su's log-n query scaling max(1, log_L n) at test time (the "logn†" rows
of the ReRoPE post); a model *trained* with log-n (``ModelConfig.log_n_trained``) always
applies its training form log_L n instead. Lessons 04 and 06.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..frequencies import rope_frequencies

SCHEME_NAMES = ("rope", "pi", "ntk", "dynamic", "yarn", "llama3", "rerope", "leaky_rerope", "nope")
_SCALING = {"pi": "linear", "ntk": "ntk", "dynamic": "dynamic", "yarn": "yarn", "llama3": "llama3"}
_OPTIONS = {
    "yarn": ("beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate"),
    "llama3": ("low_freq_factor", "high_freq_factor"),
}
_LLAMA3_DEFAULTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0}


@dataclass
class PositionScheme:
    """Which positions a model's attention sees: a name and the few numbers it needs.

    Args:
        name: one of ``SCHEME_NAMES`` (see the module docstring).
        factor: the context-extension ratio s ≥ 1 of ``pi``, ``ntk``, ``dynamic``, ``yarn``,
            ``llama3`` (typically new length / L); the k > 1 of ``leaky_rerope`` (slope 1/k
            beyond the window). Not used by the others.
        window: w, a positive integer, for ``rerope`` and ``leaky_rerope`` only.
        log_n: multiply the query of token n by max(1, log_L n) (L = the model's training
            length): the log-n scaling "added at test time" of the ReRoPE post.
        base: evaluate with another RoPE base than the one the model was trained with
            (default: the model's).
        options: extra ``rope_frequencies`` parameters: ``yarn`` takes beta_fast, beta_slow,
            attention_factor, mscale, mscale_all_dim, truncate; ``llama3`` takes
            low_freq_factor (default 1) and high_freq_factor (default 4).

    ``original_max_position_embeddings`` is always the model's training length L. Lesson 04
    derives every scheme; lesson 06 runs them on a trained model.

    Example:
        >>> PositionScheme("yarn", factor=8)
        >>> PositionScheme("rerope", window=64, log_n=True)
    """

    name: str = "rope"
    factor: float | None = None
    window: int | None = None
    log_n: bool = False
    base: float | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.name not in SCHEME_NAMES:
            raise ValueError(f"name must be one of {SCHEME_NAMES}, got {self.name!r}")
        needs_factor = self.name in _SCALING or self.name == "leaky_rerope"
        if needs_factor:
            minimum = 1 if self.name == "leaky_rerope" else 1 - 1e-12
            if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or not self.factor > minimum:
                expected = "> 1 (the k of slope 1/k)" if self.name == "leaky_rerope" else ">= 1 (new length / L)"
                raise ValueError(f"factor must be a number {expected} for scheme {self.name!r}, got {self.factor!r}")
        elif self.factor is not None:
            raise ValueError(f"factor is not used by scheme {self.name!r}; leave it None")
        if self.name in ("rerope", "leaky_rerope"):
            if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window <= 0:
                raise ValueError(f"window must be a positive integer for scheme {self.name!r}, got {self.window!r}")
        elif self.window is not None:
            raise ValueError(f"window is used only by 'rerope' and 'leaky_rerope', not by {self.name!r}")
        if not isinstance(self.log_n, bool):
            raise ValueError(f"log_n must be True or False, got {self.log_n!r}")
        if self.base is not None and (
            isinstance(self.base, bool) or not isinstance(self.base, (int, float)) or not self.base > 1
        ):
            raise ValueError(f"base must be a number > 1 or None (the model's own), got {self.base!r}")
        unknown = set(self.options) - set(_OPTIONS.get(self.name, ()))
        if unknown:
            raise ValueError(
                f"options {sorted(unknown)} are not used by scheme {self.name!r}; "
                f"it accepts {list(_OPTIONS.get(self.name, ())) or 'none'}"
            )

    @property
    def is_rerope(self) -> bool:
        """True for the two schemes whose attention merges two logit matrices."""
        return self.name in ("rerope", "leaky_rerope")

    @property
    def depends_on_length(self) -> bool:
        """True when the frequencies change with the sequence length (dynamic NTK)."""
        return self.name == "dynamic"

    @property
    def leaky_factor(self):
        """k of Leaky ReRoPE, None for every other scheme (rerope_attention's argument)."""
        return self.factor if self.name == "leaky_rerope" else None

    def frequencies(self, rotary_dim: int, base: float, train_length: int, seq_len: int):
        """``(inv_freq, attention_factor)`` of this scheme for a sequence of ``seq_len`` tokens.

        Calls :func:`ropekit.rope_frequencies` with ``original_max_position_embeddings =
        train_length``; ``nope`` returns zeros (every rotation is the identity) and 1.0.
        """
        base = self.base if self.base is not None else base
        if self.name == "nope":
            return torch.zeros(rotary_dim // 2), 1.0
        if self.name not in _SCALING:
            return rope_frequencies(rotary_dim, base)
        params = {"factor": float(self.factor)}
        if self.name == "dynamic":
            params.update(seq_len=seq_len, original_max_position_embeddings=train_length)
        elif self.name in ("yarn", "llama3"):
            params["original_max_position_embeddings"] = train_length
            if self.name == "llama3":
                params.update(_LLAMA3_DEFAULTS)
            params.update(self.options)
        return rope_frequencies(rotary_dim, base, _SCALING[self.name], **params)


def as_scheme(scheme) -> PositionScheme:
    """A PositionScheme from a PositionScheme, a name (``"ntk"`` needs a factor: use the
    class), or None (plain RoPE)."""
    if scheme is None:
        return PositionScheme()
    if isinstance(scheme, str):
        return PositionScheme(scheme)
    if not isinstance(scheme, PositionScheme):
        raise TypeError(f"scheme must be a PositionScheme, a scheme name or None, got {type(scheme).__name__}")
    return scheme
