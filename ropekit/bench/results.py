"""The results file: one definition of its columns, the rows the suites fill, and the one
reader (:func:`read_results`) that the pictures, the lessons and any README table use.

A run writes ``results.csv``, one row per (suite, provider, layout, pass, shape). Columns
are declared once, in :data:`SCHEMA`, with their type and meaning; :data:`COLUMNS` is their
order in the file. The GPU and host clocks of issue 14 came later and are declared in
:data:`LATER_COLUMNS`: :func:`write_csv` writes them when rows carry them (a CUDA run), and
:func:`read_results` reads them, as NaN (or empty text) from files written before or
without them. :func:`fraction_of_baseline` turns any time column into a fraction of the
baseline's speed, the number the tables, the summary figure and the README quote.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

# column -> (type, meaning); the order is the file's column order
SCHEMA = {
    "suite": (str, "'rope' (RoPE on q and k) or 'rerope' (ReRoPE attention)"),
    "provider": (str, "who computed it: copy, torch_eager, ropekit, liger, sdpa_rope, reference, ..."),
    "layout": (str, "'half' or 'paper' feature pairs; empty where the layout plays no role"),
    "pass": (str, "'fwd', 'bwd' or 'fwd+bwd'"),
    "batch": (int, "batch size"),
    "seq": (int, "sequence length (tokens)"),
    "q_heads": (int, "query heads"),
    "kv_heads": (int, "key/value heads"),
    "head_dim": (int, "features per head"),
    "dtype": (str, "storage dtype of q, k, v: bf16, fp16 or fp32"),
    "window": (int, "ReRoPE window w; empty in the RoPE suite"),
    "time_us": (float, "median time of one call in µs, as the device sees it (measure.time_us)"),
    "gbps": (float, "bytes the pass must move (measure.rope_bytes / attention_bytes) per second, in GB/s"),
    "baseline": (str, "the provider speed_vs_baseline compares with: copy or sdpa_rope"),
    "speed_vs_baseline": (float, "baseline time / time at the same shape and pass: 1.0 is as fast"),
    "peak_mem_mb": (float, "extra memory of one call at its peak, MiB (CUDA only)"),
    "status": (str, "'ok', or 'skipped: <why>'"),
}
# the kernel and the host apart (issue 14): written by CUDA runs, after the SCHEMA columns
LATER_COLUMNS = {
    "gpu_us": (float, "GPU time of one call in µs: a CUDA graph of several calls replayed, per call "
                      "(ropekit.bench.clocks); time_us where gpu_clock says 'events'"),
    "host_us": (float, "host time per call in µs: wall clock of a short loop of eager calls, stopped when "
                       "the last call returns, before waiting for the GPU (ropekit.bench.clocks)"),
    "host_nograd_us": (float, "RoPE fwd rows: host_us of the forward without autograd (inputs that do not "
                              "require grad); for copy, two copy_ calls into outputs allocated once"),
    "gpu_clock": (str, "how gpu_us was measured: 'graph of N calls', or 'events: not capturable (<why>)'"),
}
COLUMNS = tuple(SCHEMA)

PASSES = ("fwd", "bwd", "fwd+bwd")
SUITES = ("rope", "rerope")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BASELINES = {"rope": "copy", "rerope": "sdpa_rope"}


# --- writing ---------------------------------------------------------------------------------


def new_row(suite, provider, layout, pass_, batch, seq, q_heads, kv_heads, head_dim, dtype, window=None):
    """A row with the shape filled in, status ``ok`` and empty measurements."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(suite=suite, provider=provider, layout=layout, batch=batch, seq=seq, q_heads=q_heads,
               kv_heads=kv_heads, head_dim=head_dim, dtype=dtype_name(dtype), baseline=BASELINES[suite],
               status="ok")
    row["pass"] = pass_
    if window is not None:
        row["window"] = window
    return row


def fill_timing(row, t_us, nbytes, peak_mb):
    """Time, bandwidth (``nbytes`` moved in ``t_us``) and peak extra memory of one row."""
    row["time_us"] = t_us
    row["gbps"] = nbytes / (t_us * 1e3)  # bytes / (µs · 1e3) = GB/s
    row["peak_mem_mb"] = "" if peak_mb is None else peak_mb


def add_speedups(rows):
    """speed_vs_baseline = baseline time / time, within one shape and pass."""
    base = {r["pass"]: r["time_us"] for r in rows if r["provider"] == r["baseline"] and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and r["pass"] in base:
            r["speed_vs_baseline"] = base[r["pass"]] / r["time_us"]


def fraction_of_baseline(rows, column="time_us"):
    """The baseline's ``column`` / each row's ``column``, at the same suite, pass and shape:
    1.0 is as fast as the baseline (copy, or sdpa_rope), 0.5 twice as slow.

    ``rows``: as the suites return them or :func:`read_results` gives them; ``column``: a
    time (``time_us``, ``gpu_us``, ``host_us``). One float per row, in order; NaN where the
    row or its baseline lacks the time (skipped, or a column the file predates).
    """
    def key(r):
        return tuple(r[c] for c in ("suite", "pass", "batch", "seq", "q_heads", "kv_heads", "head_dim",
                                    "dtype", "window"))

    def value(r):
        v = r.get(column, "")
        return math.nan if v in ("", None) or r["status"] != "ok" else float(v)

    base = {key(r): value(r) for r in rows if r["provider"] == r["baseline"]}
    return [base.get(key(r), math.nan) / value(r) if value(r) > 0 else math.nan for r in rows]


def write_csv(rows, path):
    """Write rows (dicts with the ``COLUMNS`` keys, and any ``LATER_COLUMNS`` they carry) to ``path``."""
    later = [c for c in LATER_COLUMNS if any(c in r for r in rows)]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + tuple(later), restval="")
        writer.writeheader()
        writer.writerows(rows)


def dtype_name(dtype):
    """``torch.bfloat16`` -> ``"bf16"``, the name the file uses."""
    return {v: k for k, v in DTYPES.items()}[dtype]


# --- reading ---------------------------------------------------------------------------------


def read_results(data):
    """Rows of a benchmark results file as dicts with typed values.

    Args:
        data: a ``results.csv`` path, a list of row dicts (strings are fine, as
            ``csv.DictReader`` gives them), or a pandas DataFrame.

    Returns:
        one dict per row with every column of :data:`SCHEMA` and :data:`LATER_COLUMNS`:
        ``int`` columns as int (``window`` None when empty), ``float`` columns as float
        (NaN when empty: a skipped row, or a column the file predates), the rest as str.
        Used by :func:`ropekit.viz.plot_benchmark` and lesson 05.
    """
    if isinstance(data, (str, os.PathLike)):
        with open(data, newline="") as f:
            raw = list(csv.DictReader(f))
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        raw = data.fillna("").to_dict("records")
    elif isinstance(data, Sequence) and all(isinstance(r, Mapping) for r in data):
        raw = list(data)
    else:
        raise TypeError(
            f"data must be a CSV path, a list of row dicts or a pandas DataFrame, got {type(data).__name__}"
        )
    missing = [c for c in COLUMNS if raw and c not in raw[0]]
    if missing:
        raise ValueError(f"benchmark data lacks the column(s) {missing}; expected {list(COLUMNS)}")
    return [_typed(r, n) for n, r in enumerate(raw)]


def results_files(folder):
    """Every ``results.csv`` under ``folder`` that ``python -m ropekit.bench`` wrote (its header
    holds every column of :data:`SCHEMA`), sorted by path. Other scripts in ``benchmarks/``
    keep their own files there with other columns; this leaves them out."""
    found = []
    for path in sorted(Path(folder).glob("**/results.csv")):
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if set(COLUMNS) <= set(header):
            found.append(path)
    return found


def _typed(raw, n):
    row = {}
    for column, (kind, _) in {**SCHEMA, **LATER_COLUMNS}.items():
        value = raw.get(column)
        text = "" if value is None else str(value).strip()
        try:
            if kind is int:
                row[column] = int(float(text)) if text else None
            elif kind is float:
                row[column] = float(text) if text not in ("", "nan") else math.nan
            else:
                row[column] = text
        except ValueError:
            raise ValueError(f"benchmark row {n}, column {column!r}: {text!r} is not a number") from None
    return row
