"""``gankernels`` / ``python -m gankernels``: facts about this install, and the trainer.

Subcommands: ``info`` (default) prints the version, torch, the compiled CPU
extension and whether CUDA kernels (Triton) are available; ``train`` and
``sample`` run the GAN recipes of ``gankernels.train`` (``--help`` on each).
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
    print("ops: " + ", ".join(sorted(n for n in ("ksum", "ksum_backward", "kflow", "kflow_backward")
                                     if hasattr(torch.ops.gankernels, n))))
    return 0


def main(argv=None) -> int:
    from .train import cli

    parser = argparse.ArgumentParser(prog="gankernels", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="versions, threads, compiled ops (the default)")
    cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in (None, "info"):
        return info()
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
