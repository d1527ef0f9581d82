"""Moved into the package: ``python -m bench.bench_mmd ARGS`` runs ``gankernels bench --ops mmd2 ARGS``.

The options are those of ``gankernels bench --help`` (``--sizes``, ``--dims``, ``--impl``,
``--modes``, ``--threads``, ``--out`` / ``--json``, ``--md``, ``--mem-cap-gb``, ``--time-limit``,
``--budget-s``, ``--max-reps``, ``--slow-s``, ``--seed``, ``--from-json``); the defaults are its
defaults (N = 4096, D = 64).  The regenerating command of bench/RESULTS.md is ``make bench``.
"""
import sys

from gankernels.bench import main

if __name__ == "__main__":
    sys.exit(main(["--ops", "mmd2"] + sys.argv[1:]))
