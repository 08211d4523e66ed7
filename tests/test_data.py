"""Tests for ropekit.data: the committed corpus, evaluation windows and passkey sequences."""

import pytest
import torch

from ropekit.data import (
    FILLER,
    QUESTION,
    load_corpus,
    passkey_accuracy,
    passkey_batch,
    passkey_tokens,
    random_windows,
    validation_windows,
)


def test_the_committed_corpus_is_python_source_split_by_file():
    val, train = load_corpus("validation"), load_corpus("train")
    assert val.dtype == torch.uint8 and val.numel() == 662_118 and train.numel() == 4_040_863
    assert bytes(val[:30].tolist()).startswith(b"# ==== Lib/__future__.py ====")
    assert b"# ==== Lib/argparse.py ====" in bytes(val.tolist())
    assert b"# ==== Lib/argparse.py ====" not in bytes(train.tolist())


def test_validation_windows_are_fixed_and_span_the_text():
    data = load_corpus("validation")
    w = validation_windows(64, 5, data)
    assert w.shape == (5, 64) and w.dtype == torch.long
    assert torch.equal(w[0], data[:64].long()) and torch.equal(w[-1], data[-64:].long())
    assert torch.equal(w, validation_windows(64, 5))


def test_random_windows_follow_the_generator():
    data = torch.arange(100, dtype=torch.uint8)
    a = random_windows(data, 3, 10, torch.Generator().manual_seed(1))
    b = random_windows(data, 3, 10, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 10)
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(3, 9, dtype=torch.long))  # contiguous slices


@pytest.mark.parametrize("length", [128, 1000])
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_passkey_holds_the_key_at_its_depth_and_asks_for_it_last(length, depth):
    tokens, answer = passkey_tokens(length, depth, 48213)
    text = bytes(tokens.tolist())
    assert len(text) == length and text[answer] == b"48213"
    assert text[: answer.start].endswith(QUESTION)
    needle = text.index(b"The pass key is 48213.")
    filler = length - len(QUESTION) - 5 - len(b"The pass key is 48213. Keep 48213 in mind. ")
    assert abs(needle - depth * filler) <= len(FILLER)
    assert text.count(b"48213") == 3


def test_passkey_batches_draw_keys_and_depths_from_the_generator():
    a, answer = passkey_batch(4, 200, torch.Generator().manual_seed(0))
    b, _ = passkey_batch(4, 200, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (4, 200)
    keys = {bytes(row[answer].tolist()) for row in a}
    assert len(keys) == 4 and all(k.isdigit() for k in keys)


def test_bad_passkey_arguments_are_refused():
    with pytest.raises(ValueError, match="key must be a 5-digit integer"):
        passkey_tokens(200, 0.5, 123)
    with pytest.raises(ValueError, match="depth must be in"):
        passkey_tokens(200, 1.5, 12345)
    with pytest.raises(ValueError, match="length must be at least"):
        passkey_tokens(20, 0.5, 12345)
    with pytest.raises(ValueError, match="split must be"):
        load_corpus("test")


class _Oracle:
    """Predicts every token right, except (optionally) the key's last digit of odd rows."""

    def __init__(self, miss_last_digit=False):
        self.miss = miss_last_digit

    def token_scores(self, tokens, scheme=None):
        correct = torch.ones(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.bool)
        if self.miss:
            correct[1::2, -1] = False
        return torch.zeros(correct.shape), correct


def test_passkey_accuracy_counts_a_row_only_when_every_digit_is_right():
    assert passkey_accuracy(_Oracle(), 150, 0.3, n=4) == 1.0
    assert passkey_accuracy(_Oracle(miss_last_digit=True), 150, 0.3, n=4) == 0.5
