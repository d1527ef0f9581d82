"""``gankernels bench``: throughput, memory and roofline benchmark of the fused ops.

    gankernels bench [--ops mmd2,kid,...] [--sizes 4096] [--dims 64] [--modes fwd,fwdbwd]
                     [--impls fused,eager,compile,keops,...] [--json F] [--csv F] [--plot F.png]
    gankernels bench --sweep --plot scaling.png        # mmd2, N = 1,024 ... 131,072, 16 GB cap
    python -m gankernels.bench ...                     # the same

Modules: ``registry`` (one entry per op: inputs, fused / eager / compile / KeOps /
torchmetrics calls, pulling_away's gram / covariance algorithms, flop and memory
models), ``runner`` (timing, isolated peak memory, out-of-memory and too-slow
rows), ``machine`` (hardware, roofline ceilings),
``report`` (terminal table, JSON, CSV, markdown, plot), ``cli``.
"""
from .cli import main

__all__ = ["main"]
