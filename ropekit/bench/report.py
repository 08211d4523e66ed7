"""What the harness prints: which providers it skips and why, its progress, the summary
tables (provider × shape) at the end, and the launch path of issue 14 (:func:`launch_path`)."""

from __future__ import annotations

import math
import sys
import time

import torch

from .results import BASELINES, PASSES, SUITES, fraction_of_baseline


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
    """Tables of the results: provider × shape, one per (suite, pass) and quantity; with the
    GPU and host clocks (a CUDA run), their tables and the launch path too."""
    for suite in SUITES:
        for pass_ in PASSES:
            part = [r for r in rows if r["suite"] == suite and r["pass"] == pass_]
            if not part:
                continue
            _print_table(part, f"{suite} {pass_}: speed vs {BASELINES[suite]} (1.00 = as fast)",
                         lambda r: f"{r['speed_vs_baseline']:.2f}" if r["speed_vs_baseline"] != "" else "n/a")
            if any(_measured(r, "gpu_us") for r in part):
                fractions = dict(zip(map(id, part), fraction_of_baseline(part, "gpu_us")))
                _print_table(part, f"{suite} {pass_}: GPU time (CUDA graph) speed vs {BASELINES[suite]}",
                             lambda r: _fixed(fractions[id(r)], 2))
            if any(_measured(r, "host_us") for r in part):
                _print_table(part, f"{suite} {pass_}: host time per call (µs)",
                             lambda r: _fixed(_number(r.get("host_us")), 1))
            if suite == "rerope":
                _print_table(part, f"{suite} {pass_}: time (ms)", lambda r: f"{r['time_us'] / 1e3:.2f}")
                if any(r["peak_mem_mb"] != "" for r in part):
                    _print_table(part, f"{suite} {pass_}: peak extra memory (MB)",
                                 lambda r: f"{r['peak_mem_mb']:.0f}")
    shape, lines = launch_path(rows)
    if lines:
        print(f"\nrope fwd at B{shape[0]} S{shape[1]}, the launch path: host time per call, and as a "
              "multiple of two copy_ calls' (issue 14: at most 2x without autograd, 3x with)")
        print(f"{'':20}{'no grad µs':>12}{'x copy_':>9}{'autograd µs':>13}{'x copy_':>9}")
        for name, nograd, nograd_x, grad, grad_x in lines:
            cells = (_fixed(nograd, 1), _fixed(nograd_x, 2), _fixed(grad, 1), _fixed(grad_x, 2))
            print(f"{name:20}" + "".join(f"{c:>{w}}" for c, w in zip(cells, (12, 9, 13, 9))))


def launch_path(rows):
    """Issue 14's launch path at the smallest RoPE shape (fewest tokens), forward.

    Returns ``((batch, seq), lines)`` with one line per provider and layout:
    ``(name, host_nograd_us, host_nograd_us / copy_, host_us, host_us / copy_)``, where
    copy_ is the copy row's ``host_nograd_us`` (``q_out.copy_(q); k_out.copy_(k)``); NaN
    where a number is missing. ``(None, [])`` when no row holds ``host_nograd_us``.
    """
    fwd = [r for r in rows if r["suite"] == "rope" and r["pass"] == "fwd" and _measured(r, "host_nograd_us")]
    if not fwd:
        return None, []
    shape = min(((r["batch"], r["seq"]) for r in fwd), key=lambda s: (s[0] * s[1], s))
    here = [r for r in rows
            if r["suite"] == "rope" and r["pass"] == "fwd" and (r["batch"], r["seq"]) == shape]
    floor = next((_number(r.get("host_nograd_us")) for r in here if r["provider"] == "copy"), math.nan)
    lines = []
    for r in here:
        nograd, grad = _number(r.get("host_nograd_us")), _number(r.get("host_us"))
        lines.append((f"{r['provider']} {r['layout']}".strip(), nograd, nograd / floor, grad, grad / floor))
    return shape, lines


def _number(value):
    """A measurement as a float: NaN where there is none ("" in a fresh row, None)."""
    return math.nan if value in ("", None) else float(value)


def _measured(row, column):
    return not math.isnan(_number(row.get(column)))


def _fixed(value, digits):
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


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
