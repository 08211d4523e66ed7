"""Rows of dicts out to a file or a page: what the GPU scripts in ``benchmarks/`` write next to
their results (``results.csv`` and the tables of their ``README.md``). The harness's own CSV,
with its fixed columns, is :func:`ropekit.bench.results.write_csv`."""

import csv


def write_rows(rows, path):
    """Write ``rows`` (dicts with the same keys, in order) to the CSV file ``path``, one column
    per key of the first row."""
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows, columns):
    """A Markdown table of ``rows`` (dicts), one column per name in ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
