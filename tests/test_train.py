"""Tests for python -m ropekit.train: a 20-step CPU run lowers the loss and leaves a loadable
checkpoint, a CSV log and a model card whose numbers the checkpoint reproduces."""

import csv
import json

import pytest
import torch

from ropekit.data import validation_windows
from ropekit.model import PositionScheme, load
from ropekit.train import learning_rate, main, parse_args

TINY = ["--quick", "--steps", "20", "--dim", "32", "--layers", "1", "--heads", "2", "--kv-heads", "1",
        "--hidden-dim", "64", "--seq-len", "96", "--batch-size", "8", "--eval-every", "10", "--eval-windows", "4",
        "--warmup", "5", "--lr", "3e-3", "--threads", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    val = main(TINY + ["--out", str(out)])
    return out, val


def test_twenty_cpu_steps_lower_the_validation_loss(run):
    out, _ = run
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(21))
    val = {int(r["step"]): float(r["val_loss"]) for r in rows if r["val_loss"]}
    assert sorted(val) == [0, 10, 20]
    assert abs(val[0] - torch.log(torch.tensor(256.0)).item()) < 0.3, "an untrained model is near uniform over bytes"
    assert val[20] < val[10] < val[0] - 0.5
    train = [float(r["train_loss"]) for r in rows[1:]]
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5


def test_the_card_records_what_the_checkpoint_reproduces(run):
    out, val = run
    card = json.loads((out / "card.json").read_text())
    assert card["steps"] == 20 and card["config"]["train_length"] == 96 and card["tokenisation"].startswith("bytes")
    assert card["command"].startswith("python -m ropekit.train --quick --steps 20")
    assert "CPU" in card["device"] and card["validation"]["loss"] == round(val, 5)
    model = load(out)
    assert model.num_parameters() == card["parameters"]
    with torch.no_grad():
        loss, _ = model.token_scores(validation_windows(96, card["check"]["windows"]), PositionScheme())
    assert abs(loss.double().mean().item() - card["check"]["loss"]) < 1e-4
    readme = (out / "README.md").read_text()
    assert "final validation loss" in readme and f"{val:.4f}" in readme


def test_without_a_terminal_progress_is_a_few_plain_lines(tmp_path, capsys):
    main(TINY + ["--steps", "10", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "\r" not in printed
    assert sum(line.startswith("step ") for line in printed.splitlines()) == 10  # one per tenth of the run


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    args = parse_args(["--out", "x", "--steps", "100", "--warmup", "10", "--lr", "1.0"])
    assert learning_rate(0, args) == pytest.approx(0.1)
    assert learning_rate(9, args) == pytest.approx(1.0)
    assert learning_rate(100, args) == pytest.approx(0.1)
    assert all(learning_rate(s, args) >= learning_rate(s + 1, args) for s in range(10, 100))


def test_a_sequence_too_short_for_the_passkey_task_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--seq-len", "32"])
    assert "--seq-len must be at least" in capsys.readouterr().err


def test_fine_tuning_a_checkpoint_with_pi_at_twice_its_length(run, tmp_path):
    out, _ = run
    main(["--init", str(out), "--scheme", "pi", "--factor", "2", "--seq-len", "192", "--steps", "4", "--batch-size", "4",
          "--eval-every", "2", "--eval-windows", "2", "--warmup", "1", "--lr", "1e-3", "--threads", "1", "--out", str(tmp_path)])
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["init"] == str(out) and card["scheme"] == {"name": "pi", "factor": 2.0, "window": None}
    assert card["config"]["train_length"] == 96 and card["seq_len"] == 192  # L stays the pre-training length
    model = load(tmp_path)
    with torch.no_grad():
        loss, _ = model.token_scores(validation_windows(192, card["check"]["windows"]), PositionScheme("pi", factor=2))
    assert abs(loss.double().mean().item() - card["check"]["loss"]) < 1e-4
