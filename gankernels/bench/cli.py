"""Command line of ``gankernels bench`` (also ``python -m gankernels.bench``).

Without a preset one block of cases is run: --ops x --sizes x --dims x --modes x
--impls (each op takes the modes and implementations it supports).  Presets:

``--sweep``    mmd2 forward, Gaussian mixture, D = 64, N = M = 1,024 ... 131,072,
               fused / eager / compile (cdist and expansion) / KeOps under a 16 GB cap: where
               each implementation stops (out of memory, too slow);
``--results``  what bench/RESULTS.md shows: every op at N = M = 4,096, D = 64, fwd
               and fwd+bwd, langevin_step on 2^20 x 16 elements, pulling_away fwd+bwd
               at N = 32,768, D = 256 (auto = covariance, gram, eager, compile), then
               the sweep.

Options given with a preset replace that field in every block of the preset.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import List, Optional

from . import report, runner
from .registry import IMPLS, MODES, OPS

SWEEP = runner.Group(ops=["mmd2"], sizes=[1024 << k for k in range(8)], dims=[64], modes=["fwd"],
                     impls=["fused", "eager", "eager-expansion", "compile", "compile-expansion", "keops"],
                     name="sweep")
TABLE = runner.Group(ops=[o for o in OPS if o != "langevin_step"], sizes=[4096], dims=[64],
                     modes=["fwd", "fwdbwd"], impls=[i for i in IMPLS if not i.startswith("fused-")], name="table")
STEP = runner.Group(ops=["langevin_step"], sizes=[1 << 20], dims=[16], modes=["fwd"], name="langevin_step")
# eager: over the cap by the memory model (~24 GB), not run; compile ~30 s and ~9 GB, gram ~20 s (2 cores)
PULLING_AWAY = runner.Group(ops=["pulling_away"], sizes=[32768], dims=[256], modes=["fwdbwd"],
                            impls=["fused", "fused-gram", "eager", "compile"], name="pulling_away")
PRESETS = {
    "sweep": ([SWEEP], "mmd2 scaling sweep (gankernels bench --sweep)"),
    "results": ([TABLE, STEP, PULLING_AWAY, SWEEP],
                "every op and the mmd2 scaling sweep (gankernels bench --results)"),
}


def _ints(s: str) -> List[int]:
    return [int(float(v)) for v in s.replace("_", "").split(",") if v]


def _names(allowed, what: str):
    def parse(s: str) -> List[str]:
        vals = list(allowed) if s == "all" else [v.strip() for v in s.split(",") if v.strip()]
        bad = [v for v in vals if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}")
        return vals
    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gankernels bench", description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_argument_group("what to run (default: every op at N = M = 4096, D = 64, fwd and fwd+bwd)")
    what.add_argument("--sweep", action="store_const", dest="preset", const="sweep", help="the mmd2 scaling sweep")
    what.add_argument("--results", action="store_const", dest="preset", const="results",
                      help="the cases of bench/RESULTS.md (every op, pulling_away at N = 32768, "
                           "then the sweep)")
    what.add_argument("--ops", type=_names(list(OPS), "op"), help=f"comma list or 'all': {','.join(OPS)}")
    what.add_argument("--impls", "--impl", type=_names(IMPLS, "implementation"),
                      help=f"comma list: {','.join(IMPLS)} (fused-gram, fused-covariance: pulling_away "
                           "with that algorithm forced)")
    what.add_argument("--modes", type=_names(MODES, "mode"), help="comma list: fwd,bwd,fwdbwd")
    what.add_argument("--sizes", type=_ints, help="N values, comma separated")
    what.add_argument("--m", dest="ms", type=_ints, help="M values (default M = N)")
    what.add_argument("--dims", type=_ints, help="D values")
    what.add_argument("--kernels", type=lambda s: [k for k in s.split(";") if k.strip()],
                      help="';'-separated: gaussian (default: sigmas 1, 2, 4, 8, 16), rq, imq, laplacian, energy, "
                           "polyharmonic, polynomial, linear, or a constructor such as 'Gaussian(sigmas=(1, 2))'")
    what.add_argument("--dtype", choices=["float32", "float64", "float16", "bfloat16"])
    what.add_argument("--device", help="cpu (default) or cuda[:i]")
    how = ap.add_argument_group("how")
    how.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's current setting)")
    how.add_argument("--mem-cap-gb", type=float, default=16.0, help="memory a case may add (default 16)")
    how.add_argument("--time-limit", type=float, default=300.0, help="seconds per case (default 300)")
    how.add_argument("--budget-s", type=float, default=3.0, help="timed seconds per case after warm-up")
    how.add_argument("--max-reps", type=int, default=10)
    how.add_argument("--slow-s", type=float, default=None, help="a call longer than this is timed once")
    how.add_argument("--check-max-n", type=int, default=16384, help="no float64 reference above this N")
    how.add_argument("--no-isolate", dest="isolate", action="store_false",
                     help="CPU: measure memory in this process (faster, no cap, less isolated)")
    how.add_argument("--seed", type=int, default=0)
    out = ap.add_argument_group("output")
    out.add_argument("--json", "--out", dest="json", help="write the results as JSON")
    out.add_argument("--csv", help="write the rows as CSV")
    out.add_argument("--plot", help="write the scaling plot (PNG) of every series of 3+ sizes")
    out.add_argument("--md", help="write (replace) a section of this markdown file, e.g. bench/RESULTS.md")
    out.add_argument("--section", help="heading of that section")
    out.add_argument("--headline", action="store_true",
                     help="also print the README headline table (markdown; ratios against the best eager / "
                          "compile variant)")
    out.add_argument("--note", default="", help="a line for the report (e.g. other load on the machine)")
    out.add_argument("--from-json", help="no run: render an earlier --json file")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def groups_from_args(args) -> List[runner.Group]:
    base = PRESETS[args.preset][0] if args.preset else [runner.Group(ops=list(OPS), sizes=[4096], dims=[64],
                                                                     modes=["fwd", "fwdbwd"])]
    fields = ("ops", "sizes", "ms", "dims", "modes", "impls", "kernels", "dtype", "device")
    over = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    return [runner.Group(**{**vars(g), **over}) for g in base]


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.from_json:
        result = report.read_json(args.from_json)
    else:
        import torch
        settings = runner.Settings(threads=args.threads or torch.get_num_threads(), mem_cap_gb=args.mem_cap_gb,
                                   time_limit_s=args.time_limit, budget_s=args.budget_s, max_reps=args.max_reps,
                                   slow_s=args.slow_s, seed=args.seed, isolate=args.isolate,
                                   check_max_n=args.check_max_n)
        result = runner.run(groups_from_args(args), settings, progress=not args.quiet,
                            command="gankernels bench " + " ".join(shlex.quote(a) for a in argv), note=args.note)
    print(report.render_text(result))
    if args.headline:
        print(report.format_markdown(*report.headline_table(result["rows"])))
    if args.json:
        report.write_json(result, args.json)
    if args.csv:
        report.write_csv(result, args.csv)
    plotted = report.plot(result, args.plot) if args.plot else 0
    if args.plot and not plotted:
        print(f"--plot: no series with 3 or more sizes, {args.plot} not written", file=sys.stderr)
    if args.md:
        device = result["meta"].get("device", "cpu").split(":")[0].upper()
        title = PRESETS[args.preset][1] if args.preset else "gankernels bench"
        heading = args.section or f"## {device}: {title}"
        rel_plot = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.md))) if plotted else None
        from .machine import write_section
        write_section(args.md, heading, report.render_markdown(result, heading, rel_plot))
    return 0
