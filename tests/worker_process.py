"""The frame of every worker process of the multi-process tests (``dist_worker.py``, ``train_dist_worker.py``).

A worker is launched as ``python WORKER OUT_DIR`` with RANK and WORLD_SIZE set and GANKERNELS_TEST_INIT
(a ``file://`` rendezvous; without it torchrun's ``env://``), joins a Gloo group, does its work and
writes its results to ``OUT_DIR/rank<r>.pt``; any failure prints a traceback and exits with status 1.
"""
from __future__ import annotations

import os
import sys
import traceback
from datetime import timedelta

import torch


def join_group() -> None:
    """Initialise this rank's Gloo process group (a 60 s timeout: a hang fails the test instead of blocking it)."""
    torch.distributed.init_process_group("gloo", init_method=os.environ.get("GANKERNELS_TEST_INIT", "env://"),
                                         rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                         timeout=timedelta(seconds=60))


def save_and_leave(results, out_dir: str) -> None:
    """Write ``results`` to OUT_DIR/rank<r>.pt, wait for every rank, leave the group."""
    torch.save(results, os.path.join(out_dir, f"rank{torch.distributed.get_rank()}.pt"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def error_of(fn):
    """(type name, message) of the exception ``fn()`` raises, or None; recorded for the test to check."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001
        return type(err).__name__, str(err)
    return None


def run(main) -> None:
    """``main(OUT_DIR)`` with OUT_DIR from the command line."""
    try:
        main(sys.argv[1])
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
