"""Train the tiny LLaMA on bytes of the CPython standard library: ``python -m ropekit.train``.

    python -m ropekit.train --quick --out runs/quick          # 0.6 M parameters: 2-5 min on one CPU thread
    python -m ropekit.train --out runs/main                    # 2.9 M parameters: 22 s on one H200

Writes into ``--out``: ``config.json`` + ``model.safetensors`` (``ropekit.model.load``
reads them), ``train_log.csv`` (step, tokens, lr, train loss, validation loss, seconds),
``card.json`` and ``README.md`` (the model card: data, tokenisation, size, steps, command,
device, date, final validation loss of the *saved* weights). Seeds are fixed, batches are
drawn on the CPU, so a run's data order does not depend on the device.

The recipe: AdamW (β = 0.9, 0.95, weight decay 0.1 on matrices), linear warm-up then
cosine decay to a tenth of the peak learning rate, gradient clipping at 1, float32
(TF32 matmuls on CUDA). Lesson 06 uses the committed checkpoints.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .data import MIN_PASSKEY_LENGTH, load_corpus, passkey_batch, random_windows, validation_windows
from .model import SCHEME_NAMES, ModelConfig, PositionScheme, TinyLlama, load, save

CHECK_WINDOWS = 8  # the card also records the loss on these few windows, cheap to recheck
PRESETS = {  # --quick is the laptop model; the default is the main model
    "quick": dict(dim=128, layers=3, heads=4, kv_heads=2, hidden_dim=344, seq_len=128, batch_size=16, steps=500, lr=2e-3),
    # 1500 steps = 6 passes over the 4 MB training text: a 4000-step run overfit (validation
    # loss lowest near step 1200, then rising; checkpoints/README.md)
    "main": dict(dim=256, layers=4, heads=8, kv_heads=2, hidden_dim=688, seq_len=256, batch_size=64, steps=1500, lr=1e-3),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m ropekit.train", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoint, log and model card")
    p.add_argument("--quick", action="store_true", help="the small laptop preset (defaults below follow it)")
    for name, kind in (("dim", int), ("layers", int), ("heads", int), ("kv_heads", int), ("hidden_dim", int),
                       ("seq_len", int), ("batch_size", int), ("steps", int), ("lr", float)):
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                       help=f"default {PRESETS['main'][name]} ({PRESETS['quick'][name]} with --quick)")
    p.add_argument("--base", type=float, default=10000.0, help="RoPE base (default 10000)")
    p.add_argument("--layout", choices=("half", "paper"), default="half")
    p.add_argument("--log-n", action="store_true", help="train with log-n query scaling log_L n (Su, kexue.fm 8823)")
    p.add_argument("--init", type=Path, default=None,
                   help="fine-tune this checkpoint folder (its sizes are kept; --dim, --layers, ... are ignored)")
    p.add_argument("--scheme", choices=SCHEME_NAMES, default="rope",
                   help="position scheme to train with, e.g. pi or yarn for a context-extension fine-tune (default rope)")
    p.add_argument("--factor", type=float, default=None, help="the scheme's factor (pi, ntk, yarn, llama3, leaky_rerope)")
    p.add_argument("--window", type=int, default=None, help="the scheme's window (rerope, leaky_rerope)")
    p.add_argument("--passkey-fraction", type=float, default=0.1,
                   help="share of each batch that is a synthetic passkey sequence (default 0.1)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up steps (default 100)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=200, help="validation every N steps (default 200)")
    p.add_argument("--eval-windows", type=int, default=64, help="validation windows of seq_len tokens (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--save-dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--time-limit", type=float, default=None,
                   help="stop after this many minutes even if --steps is not reached (the card says so)")
    args = p.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "main"]
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 0 <= args.passkey_fraction <= 1:
        p.error(f"--passkey-fraction must be in [0, 1], got {args.passkey_fraction}")
    try:
        args.position_scheme = PositionScheme(args.scheme, factor=args.factor, window=args.window)
    except ValueError as err:
        p.error(f"--scheme {args.scheme}: {err}")
    if args.passkey_fraction > 0 and args.seq_len < MIN_PASSKEY_LENGTH:
        p.error(f"--seq-len must be at least {MIN_PASSKEY_LENGTH} to hold a passkey sequence (or pass --passkey-fraction 0)")
    return args


def learning_rate(step, args):
    """Linear warm-up to args.lr, then cosine decay to args.lr / 10 at the last step."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def batch_for_step(train, args, generator):
    """Text windows of seq_len tokens, the last rows replaced by passkey sequences."""
    n_passkey = round(args.batch_size * args.passkey_fraction)
    tokens = random_windows(train, args.batch_size - n_passkey, args.seq_len, generator)
    if n_passkey:
        tokens = torch.cat((tokens, passkey_batch(n_passkey, args.seq_len, generator)[0]))
    return tokens


@torch.no_grad()
def validation_loss(model, windows, device, scheme=None, batch=16):
    """Mean next-token loss (nats) over every position of the validation windows."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, windows.shape[0], batch):
        loss, _ = model.token_scores(windows[start : start + batch].to(device), scheme, kernels=False)
        total, count = total + loss.double().sum().item(), count + loss.numel()
    model.train()
    return total / count


class Progress:
    """A tqdm bar on a terminal; plain lines every tenth of the run otherwise (logs, CI)."""

    def __init__(self, total):
        self.total, self.bar = total, None
        if sys.stdout.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, step, message):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(message)
        elif (step + 1) % max(1, self.total // 10) == 0 or step + 1 == self.total:
            print(f"step {step + 1}/{self.total} {message}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def main(argv=None):
    args = parse_args(argv)
    command = "python -m ropekit.train " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    if args.init is not None:  # fine-tune: the checkpoint's sizes and training length L stay
        model = load(args.init, device).train()
        config = model.config
    else:
        config = ModelConfig(dim=args.dim, n_layers=args.layers, n_heads=args.heads, n_kv_heads=args.kv_heads,
                             hidden_dim=args.hidden_dim, rope_base=args.base, layout=args.layout,
                             train_length=args.seq_len, log_n_trained=args.log_n)
        model = TinyLlama(config).to(device)
    scheme = args.position_scheme
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    train = load_corpus("train")
    windows = validation_windows(args.seq_len, args.eval_windows)
    generator = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "train_log.csv"
    print(f"{model.num_parameters():,} parameters on {device}; {args.steps} steps of "
          f"{args.batch_size} x {args.seq_len} tokens", flush=True)

    progress, start, step = Progress(args.steps), time.perf_counter(), 0
    with open(log_path, "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["step", "tokens", "lr", "train_loss", "val_loss", "seconds"])
        log.writerow([0, 0, "", "", f"{validation_loss(model, windows, device, scheme):.5f}", "0.0"])
        for step in range(args.steps):
            lr = learning_rate(step, args)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tokens = batch_for_step(train, args, generator).to(device)
            loss, _ = model.token_scores(tokens, scheme, kernels=False)
            loss = loss.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            last = step + 1 == args.steps
            timed_out = args.time_limit is not None and time.perf_counter() - start > 60 * args.time_limit
            evaluate = (step + 1) % args.eval_every == 0 or last or timed_out
            val = validation_loss(model, windows, device, scheme) if evaluate else None
            seconds = time.perf_counter() - start
            log.writerow([step + 1, (step + 1) * args.batch_size * args.seq_len, f"{lr:.6g}", f"{loss.item():.5f}",
                          "" if val is None else f"{val:.5f}", f"{seconds:.1f}"])
            progress.update(step, f"loss {loss.item():.3f}" + ("" if val is None else f" val {val:.3f}"))
            if timed_out:
                break
    progress.close()
    train_seconds = time.perf_counter() - start
    steps_done = step + 1

    dtype = torch.float16 if args.save_dtype == "float16" else torch.float32
    save(model, args.out, dtype)
    reloaded = load(args.out, device)
    torch.backends.cuda.matmul.allow_tf32 = False  # the card's numbers in plain float32, as a CPU computes them
    val = validation_loss(reloaded, windows, device, scheme)
    check = validation_loss(reloaded, validation_windows(args.seq_len, CHECK_WINDOWS), device, scheme)
    write_card(args, config, model, command, device, steps_done, train_seconds, val, check, scheme)
    print(f"done: {steps_done} steps in {train_seconds:.0f} s, validation loss {val:.4f} nats/byte "
          f"({val / math.log(2):.3f} bits/byte) -> {args.out}", flush=True)
    return val


def describe(scheme):
    """``pi, factor=4`` for PositionScheme("pi", factor=4): the scheme as the card names it."""
    parts = [scheme.name] + [f"{k}={getattr(scheme, k):g}" for k in ("factor", "window") if getattr(scheme, k) is not None]
    return ", ".join(parts)


def write_card(args, config, model, command, device, steps, seconds, val, check, scheme):
    """card.json (what tests read) and README.md (what people read)."""
    threads = torch.get_num_threads()
    cpu = f"CPU ({platform.processor() or platform.machine()}, {threads} thread{'s' if threads > 1 else ''})"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    card = {
        "model": "ropekit.model.TinyLlama",
        "config": asdict(config),
        "parameters": model.num_parameters(),
        "data": "data/cpython_stdlib (CPython 3.11.7 Lib/*.py, PSF licence): train split; "
                f"{args.passkey_fraction:.0%} of each batch synthetic passkey sequences (ropekit.data.passkey_batch)",
        "tokenisation": "bytes (vocabulary 256, token id = byte value)",
        "steps": steps, "steps_requested": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
        "tokens_seen": steps * args.batch_size * args.seq_len,
        "lr": args.lr, "warmup": args.warmup, "weight_decay": args.weight_decay, "seed": args.seed,
        "saved_dtype": args.save_dtype,
        "command": command,
        "device": device_name, "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "train_seconds": round(seconds, 1),
        "init": None if args.init is None else str(args.init),
        "scheme": {"name": args.scheme, "factor": args.factor, "window": args.window},
        "validation": {"windows": args.eval_windows, "length": args.seq_len,
                       "definition": "ropekit.data.validation_windows(length, windows); mean TinyLlama.token_scores "
                                     "loss under the card's scheme",
                       "loss": round(val, 5)},
        "check": {"windows": CHECK_WINDOWS, "length": args.seq_len, "loss": round(check, 5),
                  "definition": "the same on validation_windows(length, 8): what tests recompute on a CPU"},
    }
    (args.out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    c = config
    lines = [
        f"# TinyLlama checkpoint `{args.out.name}`",
        "",
        f"A {model.num_parameters() / 1e6:.2f} M-parameter LLaMA-style byte-level model ({c.n_layers} layers, dim {c.dim}, "
        f"{c.n_heads} query heads / {c.n_kv_heads} key-value heads of {c.head_dim}, SwiGLU {c.hidden_dim}), RoPE base "
        f"{c.rope_base:g}, {c.layout} layout, trained at L = {c.train_length} tokens"
        + (" with log-n query scaling" if c.log_n_trained else "") + "."
        + ("" if args.init is None else f" Fine-tuned from `{args.init}` at {args.seq_len} tokens.")
        + ("" if args.scheme == "rope" else f" Trained with the position scheme `{describe(scheme)}`: evaluate it with the same."),
        "",
        "| | |", "| --- | --- |",
        f"| data | {card['data']} |",
        f"| tokenisation | {card['tokenisation']} |",
        f"| steps | {steps} of {args.steps} requested, batch {args.batch_size} x {args.seq_len} tokens "
        f"({card['tokens_seen']:,} tokens) |",
        f"| optimiser | AdamW, peak lr {args.lr:g}, warm-up {args.warmup}, cosine to lr/10, "
        f"weight decay {args.weight_decay}, clip 1.0, seed {args.seed} |",
        f"| command | `{command}` |",
        f"| device | {device_name}; torch {torch.__version__}, Python {platform.python_version()} |",
        f"| date | {card['date']} |",
        f"| training time | {seconds:.0f} s |",
        f"| saved as | {args.save_dtype} (`ropekit.model.load` gives float32) |",
        f"| final validation loss | **{val:.4f} nats/byte** ({val / math.log(2):.3f} bits/byte) "
        f"at {args.seq_len} tokens, scheme {args.scheme}, "
        f"on `validation_windows({args.seq_len}, {args.eval_windows})` of the saved weights |",
        "",
        "`train_log.csv` holds the loss curve. Load with `ropekit.model.load(folder)`.",
        "",
    ]
    (args.out / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
