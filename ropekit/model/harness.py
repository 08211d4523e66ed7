"""One harness for every position scheme: does decoding through the KV cache give the full forward?

For a batch of prompts of different lengths (right padded), :func:`decode_against_forward`
prefills the cache, then feeds the rest of each row one token at a time, and compares every
logit with a full forward of that row alone; :func:`greedy_against_forward` compares
``TinyLlama.generate`` with greedy decoding by full forwards (no cache at all). Lesson 07
runs it over every scheme; ``tests/test_kv_cache.py`` asserts it.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def decode_against_forward(model, tokens, lengths, steps: int, scheme, store=None):
    """Prefill ``tokens[b, :lengths[b]]``, decode ``steps`` more tokens per row (teacher forced).

    Args:
        model: a :class:`ropekit.model.TinyLlama`.
        tokens: ``(batch, seq)`` ids; row b is read up to ``lengths[b] + steps`` (≤ seq).
        lengths: ``(batch,)`` prompt lengths (≥ 1).
        steps: decode steps after the prefill.
        scheme, store: as in ``TinyLlama.new_cache``.

    Returns:
        ``(cached, full)``: two lists of ``(lengths[b] + steps, vocab)`` logits per row, from the
        cache and from the full forward of the row alone.
    """
    lengths = torch.as_tensor(lengths)
    batch = tokens.shape[0]
    if lengths.shape != (batch,) or int((lengths + steps).max()) > tokens.shape[1]:
        raise ValueError(f"lengths must be ({batch},) with lengths + steps <= seq = {tokens.shape[1]}")
    cache = model.new_cache(scheme, store)
    prompt_width = int(lengths.max())
    prefill = model(tokens[:, :prompt_width], cache=cache, lengths=lengths)
    rows = torch.arange(batch)
    decoded = [model(tokens[rows, lengths + t][:, None], cache=cache)[:, 0] for t in range(steps)]
    cached, full = [], []
    for b in range(batch):
        n = int(lengths[b])
        steps_b = torch.stack([d[b] for d in decoded]) if decoded else prefill.new_zeros(0, prefill.shape[-1])
        cached.append(torch.cat((prefill[b, :n], steps_b)))
        full.append(model(tokens[b : b + 1, : n + steps], scheme)[0])
    return cached, full


@torch.no_grad()
def greedy_against_forward(model, prompt, lengths, steps: int, scheme, store=None):
    """Greedy tokens of ``model.generate`` (cache, right-padded batch) and of full forwards per row.

    Returns ``(generated, expected)``: two lists of ``(lengths[b] + steps,)`` token ids.
    """
    lengths = torch.as_tensor(lengths)
    out, _ = model.generate(prompt, steps, scheme, lengths=lengths, store=store)
    generated, expected = [], []
    for b in range(prompt.shape[0]):
        n = int(lengths[b])
        generated.append(out[b, : n + steps])
        seq = prompt[b : b + 1, :n]
        for _ in range(steps):
            seq = torch.cat((seq, model(seq, scheme)[:, -1:].argmax(-1)), dim=1)
        expected.append(seq[0])
    return generated, expected
