"""The heavy measurements of lesson 06, run once on a CPU and stored as a small JSON file.

    python scripts/lesson06_sweeps.py --out lessons/data/lesson06_sweeps.json

Loads the committed checkpoints (``tiny-llama-main``, ``tiny-llama-logn``,
``tiny-llama-yarn-x4``; L = 256) and, with no fine-tuning, measures:

* the ReRoPE post's table (kexue.fm/archives/9708): next-byte accuracy at L (on the 64
  windows of ``validation_windows(L, 64)``, the model cards' set), at 8L on
  repeated text and at 8L on non-repeated text, for RoPE, PI, NTK, YaRN, ReRoPE (windows
  L/8 .. L), Leaky ReRoPE, with log-n added at test time (the post's log n†) and with the
  log-n-trained checkpoint (the post's log n); per sequence, so the lesson can re-check one;
* per-position loss curves from 1 to 8L for the same rows (means over bins of 64 positions);
* passkey retrieval against length and depth for RoPE, NTK and ReRoPE;
* attention entropy against position for RoPE, RoPE + log n† and the log-n-trained model;
* the YaRN x4 fine-tune against no fine-tune, per-position loss at 4L.

"Non-repeated" text is ``validation_windows(8L, n)``; "repeated" text is the first L bytes
of each of those windows written 8 times in a row. ``acc_L`` is also reported on the 8L
sequences themselves (their first L − 1 predictions: the model is causal and every scheme
here rotates by position only, so these equal a run on L tokens; the lesson checks this).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ropekit.data import passkey_accuracy, validation_windows  # noqa: E402
from ropekit.model import PositionScheme, load  # noqa: E402
from ropekit.model.probes import attention_entropy  # noqa: E402

BIN = 64


def table_rows(L):
    """(label, checkpoint, scheme) of every row of the table, in the post's order."""
    main, logn = "tiny-llama-main", "tiny-llama-logn"
    s = 8  # extension factor 8L / L
    rows = [
        ("RoPE", main, PositionScheme("rope")),
        ("RoPE-logn†", main, PositionScheme("rope", log_n=True)),
        ("RoPE-logn", logn, PositionScheme("rope")),
        ("PI", main, PositionScheme("pi", factor=s)),
        ("NTK", main, PositionScheme("ntk", factor=s)),
        ("NTK-logn†", main, PositionScheme("ntk", factor=s, log_n=True)),
        ("NTK-logn", logn, PositionScheme("ntk", factor=s)),
        ("YaRN", main, PositionScheme("yarn", factor=s)),
    ]
    for w in (L // 8, L // 4, L // 2, L):
        rows.append((f"ReRoPE-w{w}", main, PositionScheme("rerope", window=w)))
    for w in (L // 4, L // 2):
        rows.append((f"ReRoPE-w{w}-logn†", main, PositionScheme("rerope", window=w, log_n=True)))
        rows.append((f"ReRoPE-w{w}-logn", logn, PositionScheme("rerope", window=w)))
    rows.append((f"Leaky ReRoPE-w{L // 4}-k16", main, PositionScheme("leaky_rerope", window=L // 4, factor=16)))
    rows.append((f"Leaky ReRoPE-w{L // 4}-k16-logn†", main, PositionScheme("leaky_rerope", window=L // 4, factor=16, log_n=True)))
    return rows


def describe(scheme):
    return {"name": scheme.name, "factor": scheme.factor, "window": scheme.window, "log_n": scheme.log_n}


def binned(x, size=BIN):
    """Means of consecutive bins of ``size`` positions (the last bin may be shorter)."""
    return [round(chunk.mean().item(), 5) for chunk in x.split(size)]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lessons/data/lesson06_sweeps.json")
    parser.add_argument("--sequences", type=int, default=2, help="sequences of 8L tokens per table cell")
    parser.add_argument("--passkey-n", type=int, default=2, help="passkey prompts per (length, depth) cell")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    start = time.time()
    ckpt = ROOT / "checkpoints"
    models = {name: load(ckpt / name) for name in ("tiny-llama-main", "tiny-llama-logn", "tiny-llama-yarn-x4")}
    L = models["tiny-llama-main"].config.train_length
    long = validation_windows(8 * L, args.sequences)
    texts = {"non_repeated": long, "repeated": long[:, :L].repeat(1, 8)}
    short = validation_windows(L, 64)  # the model cards' validation set, for the column at L

    table, curves = [], {}
    for label, name, scheme in table_rows(L):
        row = {"label": label, "checkpoint": name, "scheme": describe(scheme)}
        with torch.no_grad():
            loss, correct = models[name].token_scores(short, scheme)
        row["acc_L_64"] = round(correct.double().mean().item(), 5)
        row["loss_L_64"] = round(loss.mean().item(), 5)
        for kind, tokens in texts.items():
            with torch.no_grad():
                loss, correct = models[name].token_scores(tokens, scheme)
            correct = correct.double()
            row[f"acc_8L_{kind}"] = round(correct.mean().item(), 5)
            row[f"acc_8L_{kind}_per_sequence"] = [round(v, 5) for v in correct.mean(1).tolist()]
            if kind == "non_repeated":
                row["acc_L"] = round(correct[:, : L - 1].mean().item(), 5)
                row["acc_L_per_sequence"] = [round(v, 5) for v in correct[:, : L - 1].mean(1).tolist()]
                row["loss_L"] = round(loss[:, : L - 1].mean().item(), 5)
                row["loss_8L"] = round(loss.mean().item(), 5)
            curves.setdefault(kind, {})[label] = binned(loss.mean(0))
        table.append(row)
        print(f"{time.time() - start:7.1f} s  {label:32s} L {row['acc_L_64']:.4f}  8L rep {row['acc_8L_repeated']:.4f}"
              f"  8L non-rep {row['acc_8L_non_repeated']:.4f}", flush=True)

    lengths, depths = [L, 2 * L, 4 * L, 8 * L], [0.0, 0.5, 1.0]
    passkey = {"lengths": lengths, "depths": depths, "n": args.passkey_n, "accuracy": {}}
    for label, scheme in (("RoPE", PositionScheme("rope")), ("NTK", PositionScheme("ntk", factor=8)),
                          (f"ReRoPE-w{L // 2}", PositionScheme("rerope", window=L // 2))):
        grid = [[passkey_accuracy(models["tiny-llama-main"], n, d, scheme, n=args.passkey_n, seed=0) for n in lengths]
                for d in depths]
        passkey["accuracy"][label] = grid
        print(f"{time.time() - start:7.1f} s  passkey {label}: {grid}", flush=True)

    entropy_tokens = validation_windows(4 * L, 1)
    entropy = {"length": 4 * L, "bin": BIN, "curves": {}}
    for label, name, scheme in (("RoPE", "tiny-llama-main", PositionScheme("rope")),
                                ("RoPE-logn†", "tiny-llama-main", PositionScheme("rope", log_n=True)),
                                ("RoPE-logn (trained)", "tiny-llama-logn", PositionScheme("rope"))):
        h = attention_entropy(models[name], entropy_tokens, scheme)  # (layers, heads, seq)
        entropy["curves"][label] = [binned(h[layer].mean(0)) for layer in range(h.shape[0])]
    print(f"{time.time() - start:7.1f} s  entropy", flush=True)

    tokens_4l = validation_windows(4 * L, args.sequences)
    finetune = {"length": 4 * L, "bin": BIN, "curves": {}, "loss": {}}
    for label, name, scheme in (("RoPE, no fine-tune", "tiny-llama-main", PositionScheme("rope")),
                                ("YaRN x4, no fine-tune", "tiny-llama-main", PositionScheme("yarn", factor=4)),
                                ("YaRN x4, fine-tuned 300 steps", "tiny-llama-yarn-x4", PositionScheme("yarn", factor=4))):
        with torch.no_grad():
            loss, _ = models[name].token_scores(tokens_4l, scheme)
        finetune["curves"][label] = binned(loss.mean(0))
        finetune["loss"][label] = {"first_L": round(loss[:, : L - 1].mean().item(), 5),
                                   "beyond_L": round(loss[:, L - 1 :].mean().item(), 5)}
    print(f"{time.time() - start:7.1f} s  fine-tune", flush=True)

    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seed": 0,
        "device": f"CPU, {args.threads} threads ({platform.machine()}); torch {torch.__version__}",
        "checkpoints": {name: sha256(ckpt / name / "model.safetensors") for name in models},
        "train_length": L,
        "sequences": args.sequences,
        "text": "non_repeated = validation_windows(8L, sequences); repeated = its first L bytes written 8 times",
        "bin": BIN,
        "table": table,
        "loss_curves": curves,
        "passkey": passkey,
        "entropy": entropy,
        "finetune": finetune,
        "seconds": round(time.time() - start, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out} in {result['seconds']} s")


if __name__ == "__main__":
    main()
