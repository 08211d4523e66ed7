"""What the harness prints: which providers it skips and why, its progress, and the
summary tables (provider × shape) at the end."""

from __future__ import annotations

import sys

import torch

from .results import BASELINES, PASSES, SUITES


class Progress:
    """A tqdm bar over the cases, or one printed line per case without tqdm."""

    def __init__(self, total, desc):
        self.total, self.desc, self.count = total, desc, 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, desc=desc, unit="case", file=sys.stdout)

    def start(self, label):
        if self.bar is None:
            print(f"[{self.desc} {self.count + 1}/{self.total}] {label}", flush=True)
        else:
            self.bar.set_postfix_str(label)

    def done(self):
        self.count += 1
        if self.bar is not None:
            self.bar.update()
            if self.count == self.total:
                self.bar.close()


def print_skips(reasons):
    for provider, reason in reasons.items():
        if reason:
            print(f"skipping {provider}: {reason}", flush=True)


def print_summary(rows):
    """Tables of the results: provider × shape, one per (suite, pass) and quantity."""
    for suite in SUITES:
        for pass_ in PASSES:
            part = [r for r in rows if r["suite"] == suite and r["pass"] == pass_]
            if not part:
                continue
            _print_table(part, f"{suite} {pass_}: speed vs {BASELINES[suite]} (1.00 = as fast)",
                         lambda r: f"{r['speed_vs_baseline']:.2f}" if r["speed_vs_baseline"] != "" else "n/a")
            if suite == "rerope":
                _print_table(part, f"{suite} {pass_}: time (ms)", lambda r: f"{r['time_us'] / 1e3:.2f}")
                if any(r["peak_mem_mb"] != "" for r in part):
                    _print_table(part, f"{suite} {pass_}: peak extra memory (MB)",
                                 lambda r: f"{r['peak_mem_mb']:.0f}")


def _print_table(rows, title, cell):
    shapes = list(dict.fromkeys((r["batch"], r["seq"]) for r in rows))
    by_name = {}
    for r in rows:
        by_name.setdefault(f"{r['provider']} {r['layout']}".strip(), {})[(r["batch"], r["seq"])] = r
    print(f"\n{title}")
    print(f"{'':20}" + "".join(f"{f'B{b} S{s}':>12}" for b, s in shapes))
    for name, cells in by_name.items():
        texts = ["" if shape not in cells else cell(cells[shape]) if cells[shape]["status"] == "ok"
                 else "skipped" for shape in shapes]
        print(f"{name:20}" + "".join(f"{t:>12}" for t in texts))


def failure_reason(err):
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        return "out of memory"
    return f"{type(err).__name__}: {one_line(err)}"


def one_line(err):
    text = " ".join(str(err).split())
    return text[:200] + ("…" if len(text) > 200 else "")
