"""A tiny LLaMA whose position scheme is chosen at call time (lesson 06).

    from ropekit.model import TinyLlama, ModelConfig, PositionScheme, load

* :class:`TinyLlama`, :class:`ModelConfig` (``llama.py``): the decoder, RMSNorm, SwiGLU,
  GQA attention through ropekit's RoPE / ReRoPE functions.
* :class:`PositionScheme` (``schemes.py``): rope, pi, ntk, dynamic, yarn, llama3, rerope,
  leaky_rerope, nope, with optional log-n.
* :func:`attend` (``attention.py``): one layer's attention under a scheme, via ropekit's functions.
* :class:`KVCache` (``cache.py``): what a decoder stores for each scheme.
* :func:`save`, :func:`load`, :func:`export_hf`, :func:`load_hf` (``io.py``).
* ``ropekit.model.probes`` (attention entropy, measured long-term decay) and
  ``ropekit.model.costs`` (FLOPs and bytes per operator per token): lesson 06's measurements.

docs/model.md describes the API; ``python -m ropekit.train`` trains it.
"""

from .attention import Positions, attend
from .cache import KVCache
from .io import export_hf, hf_config, load, load_hf, save
from .llama import ModelConfig, RMSNorm, SwiGLU, TinyLlama
from .schemes import SCHEME_NAMES, PositionScheme, as_scheme

__all__ = [
    "TinyLlama", "ModelConfig", "RMSNorm", "SwiGLU", "attend", "Positions", "PositionScheme", "SCHEME_NAMES", "as_scheme",
    "KVCache", "save", "load", "export_hf", "load_hf", "hf_config",
]
