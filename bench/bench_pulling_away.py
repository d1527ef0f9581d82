"""The pulling-away grid: ``python -m bench.bench_pulling_away ARGS`` runs ``gankernels bench`` on
the pulling-away term with the cases of the "CPU: pulling_away" section of
bench/RESULTS.md:

    gankernels bench --ops pulling_away --sizes 1024,8192,32768 --dims 64,256 --modes fwd,fwdbwd
                     --impls fused,fused-gram,fused-covariance,eager,compile --check-max-n 32768
                     --section "## CPU: pulling_away" ARGS

``fused`` is ``algorithm="auto"`` (covariance at every one of these shapes, since 2 D <= N);
``fused-gram`` / ``fused-covariance`` force one exact algorithm.  Eager cases whose N x N temporaries
exceed the memory cap (fwd+bwd at N = 32,768: ~24 GB) are OOM rows, not run.  ARGS are options of
``gankernels bench --help`` and replace the ones above, e.g. ``--md bench/RESULTS.md --json
bench/results_pulling_away_cpu.json`` to regenerate that section (10–15 min on 2 cores), or
``--sizes 1024 --impls fused,fused-gram`` for a quick look.
"""
import sys

from gankernels.bench import main

SECTION = "## CPU: pulling_away"
GRID_ARGS = ["--ops", "pulling_away", "--sizes", "1024,8192,32768", "--dims", "64,256", "--modes", "fwd,fwdbwd",
          "--impls", "fused,fused-gram,fused-covariance,eager,compile", "--check-max-n", "32768",
          "--section", SECTION]

if __name__ == "__main__":
    sys.exit(main(GRID_ARGS + sys.argv[1:]))
