"""Moved into the package: ``python -m bench.bench_score ARGS`` runs
``gankernels bench --ops smoothed_score,langevin_step,kde_langevin ARGS``.

The options are those of ``gankernels bench --help``; the old ``--parts``, ``--langevin-elems``
and ``--chain-n`` are ``--ops``, ``--sizes`` / ``--dims`` of a run of that op.  The regenerating
command of bench/RESULTS.md is ``make bench``.
"""
import sys

from gankernels.bench import main

if __name__ == "__main__":
    sys.exit(main(["--ops", "smoothed_score,langevin_step,kde_langevin"] + sys.argv[1:]))
