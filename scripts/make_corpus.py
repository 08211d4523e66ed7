"""Build data/cpython_stdlib/ from a CPython standard library (run once; its output is committed).

    python scripts/make_corpus.py /path/to/lib/python3.11

Takes every top-level ``Lib/*.py`` file in sorted order; every tenth file (sorted index
% 10 == 0) goes to the validation split, the rest to training. Each file is preceded by
one header line ``# ==== Lib/<name> ====``. Validation is stored as plain text (it is
what the lessons evaluate on), training gzip-compressed (deterministic: no name, mtime 0).
"""

import argparse
import gzip
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "cpython_stdlib"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stdlib", type=Path, help="the Lib/ folder of a CPython install, e.g. .../lib/python3.11")
    args = parser.parse_args()
    files = sorted(args.stdlib.glob("*.py"))
    if not files:
        sys.exit(f"no .py files in {args.stdlib}")
    splits = {"train": [], "validation": []}
    for index, path in enumerate(files):
        split = "validation" if index % 10 == 0 else "train"
        splits[split].append(f"# ==== Lib/{path.name} ====\n".encode() + path.read_bytes())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "validation.txt").write_bytes(b"".join(splits["validation"]))
    with open(OUT / "train.txt.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(b"".join(splits["train"]))
    shutil.copyfile(args.stdlib / "LICENSE.txt", OUT / "LICENSE.txt")
    for split, parts in splits.items():
        print(f"{split}: {len(parts)} files, {sum(map(len, parts))} bytes")


if __name__ == "__main__":
    main()
