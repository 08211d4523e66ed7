"""The text the tiny LLaMA reads, as bytes, and a synthetic passkey task.

* :func:`load_corpus`: a fixed slice of CPython 3.11.7's standard library (top-level
  ``Lib/*.py``, PSF licence), committed in ``data/cpython_stdlib/`` so every machine trains
  and evaluates on the same bytes (see that folder's README). Tokenisation is byte-level:
  token id = byte value, vocabulary 256, nothing to download or fit.
* :func:`random_windows`, :func:`validation_windows`: training batches and the fixed
  evaluation windows that model cards quote.
* :func:`passkey_tokens`, :func:`passkey_batch`: the passkey-retrieval prompt (Mohtashami &
  Jaggi 2023, "Landmark Attention", §4.2): a key hidden at a chosen depth in filler text,
  asked for at the end; :func:`passkey_accuracy` scores a model on it.

Lesson 06 evaluates on these; ``python -m ropekit.train`` trains on them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "cpython_stdlib"
_FILES = {"train": "train.txt.gz", "validation": "validation.txt"}

FILLER = b"The tide comes in. The tide goes out. Gulls circle over the pier. "
NEEDLE = b"The pass key is {key}. Keep {key} in mind. "
QUESTION = b"What is the pass key? The pass key is "
KEY_DIGITS = 5
MIN_PASSKEY_LENGTH = len(NEEDLE.replace(b"{key}", b"0" * KEY_DIGITS)) + len(QUESTION) + KEY_DIGITS  # no filler


def load_corpus(split: str = "validation", folder=None) -> torch.Tensor:
    """The bytes of one split as a ``(n_bytes,)`` uint8 tensor (token ids 0..255).

    split: ``"train"`` (about 4.0 MB, 151 files) or ``"validation"`` (about 0.66 MB,
    17 other files). folder: default ``data/cpython_stdlib`` of this repository.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    path = Path(folder or CORPUS_DIR) / _FILES[split]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; the corpus is committed in the ropekit repository under data/")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def random_windows(data: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``(batch, length)`` int64 token windows starting at uniformly random offsets of data."""
    if data.numel() < length:
        raise ValueError(f"data holds {data.numel()} tokens, fewer than length={length}")
    starts = torch.randint(0, data.numel() - length + 1, (batch,), generator=generator)
    return torch.stack([data[s : s + length] for s in starts.tolist()]).long()


def validation_windows(length: int, count: int, data: torch.Tensor | None = None) -> torch.Tensor:
    """``(count, length)`` int64 windows spread evenly over the validation text.

    Window i starts at i · (n − length) // (count − 1) (the first at 0, the last at the end),
    so the set depends only on (length, count): the windows behind every model card's
    "validation loss at L".
    """
    data = load_corpus("validation") if data is None else data
    if not (isinstance(count, int) and count >= 1) or not (isinstance(length, int) and 1 <= length <= data.numel()):
        raise ValueError(f"need count >= 1 and 1 <= length <= {data.numel()}, got count={count!r}, length={length!r}")
    span = data.numel() - length
    starts = [0] if count == 1 else [i * span // (count - 1) for i in range(count)]
    return torch.stack([data[s : s + length] for s in starts]).long()


def passkey_tokens(length: int, depth: float, key: int):
    """One passkey-retrieval sequence of exactly ``length`` byte tokens.

    Layout: filler sentences, with ``NEEDLE`` (holding the 5-digit key) inserted at the
    start of the filler group (``FILLER``, 66 bytes) at or below ``depth`` · (filler
    length), so depths less than 66 tokens apart can give one sequence; then ``QUESTION`` and the
    key's digits as the last 5 tokens. A model has found the key when it predicts those 5
    digits (teacher-forced argmax, equivalently greedy decoding).

    Args:
        length: total tokens (at least the needle, question and answer: about 90).
        depth: where the needle goes, 0.0 (start) to 1.0 (just before the question).
        key: an integer in [10000, 99999].

    Returns:
        ``(tokens, answer)``: ``(length,)`` int64 and the slice of the answer tokens.
    """
    if not (isinstance(key, int) and 10000 <= key <= 99999):
        raise ValueError(f"key must be a 5-digit integer, got {key!r}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth!r}")
    digits = str(key).encode()
    needle = NEEDLE.replace(b"{key}", digits)
    n_filler = length - len(needle) - len(QUESTION) - KEY_DIGITS
    if n_filler < 0:
        raise ValueError(f"length must be at least {length - n_filler} to hold the needle, question and key, got {length}")
    filler = (FILLER * (n_filler // len(FILLER) + 1))[:n_filler]
    cut = int(depth * n_filler)
    cut -= cut % len(FILLER)  # back to the start of a filler group (what the checkpoints trained on)
    text = filler[:cut] + needle + filler[cut:] + QUESTION + digits
    tokens = torch.tensor(list(text), dtype=torch.long)
    return tokens, slice(length - KEY_DIGITS, length)


def passkey_batch(batch: int, length: int, generator: torch.Generator, depth: float | None = None):
    """``(batch, length)`` passkey sequences with random keys (and random depths unless given).

    Returns ``(tokens, answer)`` with the answer slice shared by every row.
    """
    keys = torch.randint(10000, 100000, (batch,), generator=generator).tolist()
    depths = torch.rand(batch, generator=generator).tolist() if depth is None else [depth] * batch
    rows = [passkey_tokens(length, d, k)[0] for d, k in zip(depths, keys)]
    return torch.stack(rows), slice(length - KEY_DIGITS, length)


@torch.no_grad()
def passkey_accuracy(model, length: int, depth: float, scheme=None, n: int = 8, seed: int = 0) -> float:
    """Share of ``n`` passkey sequences of ``length`` tokens whose key a model retrieves.

    A sequence counts when the model's argmax prediction is right at all 5 digits of the
    key (teacher-forced, so it equals greedy decoding of the 5 digits). Keys come from a
    generator seeded with ``seed``; the needle sits at ``depth``. ``model`` is a
    ``ropekit.model.TinyLlama`` (anything with ``token_scores(tokens, scheme)``); scheme as
    in its forward. Lesson 06 draws accuracy against length and depth.
    """
    tokens, answer = passkey_batch(n, length, torch.Generator().manual_seed(seed), depth=depth)
    device = next(model.parameters()).device if hasattr(model, "parameters") else "cpu"
    _, correct = model.token_scores(tokens.to(device), scheme)
    # correct[:, t] scores the prediction of token t + 1
    return correct[:, answer.start - 1 : answer.stop - 1].all(dim=1).float().mean().item()
