#!/usr/bin/env bash
# Execute every lesson headless RUNS times in a row with nbconvert and with papermill, no cell
# timeout set, as teachers do to prepare material. Each run gets an outer limit (LIMIT_S) that
# turns a hang into a failure. Prints one line per run and a summary; exits 1 if any run hung
# or failed. The suite's tests/test_headless.py is the short version of this.
#
#   scripts/headless_check.sh              # 10 runs per lesson and tool, 600 s limit per run
#   RUNS=2 LIMIT_S=300 scripts/headless_check.sh lessons/01_rotation_in_2d.ipynb
#
# Uses .venv/bin/python (made by `make setup`) unless PYTHON is set.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
RUNS=${RUNS:-10}
LIMIT_S=${LIMIT_S:-600}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
if [ $# -gt 0 ]; then lessons=("$@"); else lessons=(lessons/[0-9][0-9]_*.ipynb); fi

unset DISPLAY WAYLAND_DISPLAY
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
ok=0; hung=0; failed=0
for nb in "${lessons[@]}"; do
    name=$(basename "$nb" .ipynb)
    for tool in nbconvert papermill; do
        for run in $(seq 1 "$RUNS"); do
            out="$OUT/$name.$tool.$run.ipynb"
            if [ "$tool" = nbconvert ]; then
                cmd=("$PYTHON" -m nbconvert --to notebook --execute "$nb" --output-dir "$OUT" --output "$(basename "$out")")
            else
                cmd=("$PYTHON" -m papermill "$nb" "$out" --cwd "$(dirname "$nb")" --no-progress-bar --kernel python3)
            fi
            start=$SECONDS
            timeout --kill-after=10 "$LIMIT_S" "${cmd[@]}" >"$OUT/log" 2>&1
            rc=$?
            took=$((SECONDS - start))
            if [ $rc -eq 0 ]; then
                ok=$((ok + 1)); verdict=ok
            elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
                hung=$((hung + 1)); verdict="HUNG (killed after ${LIMIT_S} s)"
            else
                failed=$((failed + 1)); verdict="FAILED (exit $rc)"; tail -5 "$OUT/log"
            fi
            printf '%-28s %-9s run %2d/%d  %4d s  %s\n' "$name" "$tool" "$run" "$RUNS" "$took" "$verdict"
        done
    done
done
echo "headless: $ok ok, $hung hung, $failed failed (${#lessons[@]} lessons x 2 tools x $RUNS runs)"
[ $((hung + failed)) -eq 0 ]
