"""What the harness prints: which providers it skips and why, its progress, and the
summary tables (provider × shape) at the end."""

from __future__ import annotations

import sys
import time

import torch

from .results import BASELINES, PASSES, SUITES


class Progress:
    """Progress over the cases of one suite.

    In a terminal: a tqdm bar (or, without tqdm, one line rewritten in place). When the
    output is a file, a pipe or a notebook (a log, CI), nothing per case and one line
    when the suite is done, so that logs hold results, not bars.
    """

    def __init__(self, total, desc, stream=None):
        self.total, self.desc, self.count = total, desc, 0
        self.stream = sys.stdout if stream is None else stream
        self.began = time.perf_counter()
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        if self.terminal:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc=desc, unit="case", file=self.stream)

    def start(self, label):
        if self.bar is not None:
            self.bar.set_postfix_str(label)
        elif self.terminal:
            line = f"[{self.desc} {self.count + 1}/{self.total}] {label}"
            print(f"\r{line:<78}", end="", file=self.stream, flush=True)

    def done(self):
        self.count += 1
        if self.bar is not None:
            self.bar.update()
            if self.count == self.total:
                self.bar.close()
            return
        if self.count == self.total:
            ending = f"{self.desc}: {self.total} cases timed in {time.perf_counter() - self.began:.0f} s"
            print(f"\r{ending:<78}" if self.terminal else ending, file=self.stream, flush=True)


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
