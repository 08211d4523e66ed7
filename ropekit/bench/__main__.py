"""``python -m ropekit.bench``: see :mod:`ropekit.bench.cli`."""

from .cli import main

main()
