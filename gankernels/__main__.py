"""``gankernels`` / ``python -m gankernels``: facts about this install, the trainer and the benchmark.

Subcommands: ``info`` (default) prints the version, torch, the compiled CPU
extension and whether CUDA kernels (Triton) are available; ``train`` and
``sample`` run the GAN recipes of ``gankernels.train``; ``bench`` runs the
benchmark of ``gankernels.bench`` (``--help`` on each).
"""
from __future__ import annotations

import argparse
import sys


def info() -> int:
    import torch

    import gankernels

    try:
        import triton  # noqa: F401

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed (CUDA kernels unavailable)"
    print(f"gankernels {gankernels.__version__}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"triton {triton_version}")
    print(f"cuda available: {torch.cuda.is_available()}")
    names = ("ksum", "kflow", "smoothed_score", "langevin_step", "kernel_langevin", "kde_langevin",
             "pulling_away")
    print("compiled ops: " + ", ".join(n for n in names if hasattr(torch.ops.gankernels, n)))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own, long argument parser
        from .bench import main as bench_main

        return bench_main(argv[1:])
    from .train import cli

    parser = argparse.ArgumentParser(prog="gankernels", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="versions, threads, compiled ops (the default)")
    sub.add_parser("bench", help="throughput and memory benchmark (gankernels bench --help)")
    cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in (None, "info"):
        return info()
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
