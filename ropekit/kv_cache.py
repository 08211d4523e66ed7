"""Kept so that ``from ropekit.kv_cache import ...`` still works: the decode functions
now live in :mod:`ropekit.decode`, with everything else about decoding."""

from .decode import rope_decode_step, rotate_as_if_first

__all__ = ["rope_decode_step", "rotate_as_if_first"]
