"""``gankernels`` / ``python -m gankernels``: facts about this install.

Subcommands: ``info`` (default) prints the version, torch, the compiled CPU
extension and whether CUDA kernels (Triton) are available; ``bench`` runs the
benchmark (``gankernels bench --help``, ``gankernels.bench``).
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="gankernels", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="info", choices=["info", "bench"])
    parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
