"""Data-parallel training: ``gankernels train`` under ``torchrun --nproc-per-node K``.

One process per rank; the loop is the single-process loop with four switches, all here:

* **Process group.**  ``session`` reads ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` (set by
  torchrun) and initialises the group -- Gloo on CPU, NCCL with ``--device cuda`` (one GPU
  per rank, ``cuda:LOCAL_RANK``) -- and destroys it at the end.  A group the caller has
  initialised already is used as is and left alone.  ``WORLD_SIZE`` unset or 1: no group.
* **Data.**  ``--batch`` is the *global* batch B and must be a multiple of K (a one-line
  error otherwise); rank r gets rows r·B/K ... (r+1)·B/K - 1.  Every rank draws the whole
  global batch (real points, latent noise, interpolation weights) from the run's one seeded
  ``torch.Generator`` and keeps its rows (``Context.shard``), so the union over ranks is
  exactly what the single-process run at the same B and seed draws, the generator state
  stays the same on every rank (one checkpoint resumes all of them), and the cost is
  O(B) memory and RNG work per rank -- negligible next to the networks.
* **Networks.**  ``DistributedDataParallel`` wraps every network of the recipe
  (``Recipe.wrap``); ``Recipe.nets`` keeps the bare modules, so checkpoints are the same
  files as single-process ones and evaluation never enters a collective.
* **Pairwise terms.**  The recipes call their pairwise ops through ``Context.ops``:
  ``gankernels`` in one process, ``pairwise_ops()`` under K > 1 -- the sharded
  ``gankernels.distributed`` ops (every pair of the global batch is counted) and the
  pulling-away term on the codes gathered by ``all_gather_rows`` (every rank evaluates
  the same global term: O(B·code) memory, B² pair work repeated on each rank).

Loss scaling: none is needed, and none is applied.  Each rank's loss L_r is either a mean
over its B/K rows (per-sample terms, penalties, ``follow_loss``) or a replicated global
value (``mmd2``, pulling-away); in both cases mean_r L_r = the single-process loss L.
The collectives' backward gives rank r the gradient of sum_s L_s with respect to its own
inputs, so summing the local parameter gradients over ranks gives d(sum_s L_s)/dθ, and
DDP's average over ranks divides that by K: d(mean_r L_r)/dθ = dL/dθ, the single-process
gradient (``tests/test_train_distributed.py`` checks it through Adam's moment estimates,
which, unlike Adam's steps, would show a wrong scale).  Logged losses are averaged over
ranks (``mean_logs``), which gives the single-process values too.

Evaluation, pictures, ``metrics.jsonl``, ``report.md`` and checkpoints: rank 0 alone
(evaluation on the bare generator, single-process).  ``--resume`` reads the checkpoint on
every rank (on several machines ``--out`` must be on a shared file system).

Limits: tested with Gloo on CPU only; NCCL / GPUs are untested.  Every rank must see the
same data file.  Uneven shards are rejected rather than weighted.  An error on one rank
alone (say rank 0's disk is full) leaves the others waiting in their next collective until
torchrun stops them (it does when a rank fails) or the group's timeout.  The generator
step's backward also all-reduces the critic's gradients, which that step does not use.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Dict, Iterator

import torch
import torch.distributed as dist

import gankernels as gk

from .errors import ConfigError

__all__ = ["World", "current_world", "check_batch", "rank_device", "session", "wrap_ddp", "pairwise_ops", "mean_logs"]


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (torchrun sets it)") from None


def current_world() -> World:
    """The initialised process group, else torchrun's environment, else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_world_size(), dist.get_rank(), _env_int("LOCAL_RANK", 0))
    world = World(_env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0))
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise ConfigError(f"bad torchrun environment: WORLD_SIZE={world.size}, RANK={world.rank}")
    if world.size > 1 and not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={world.size} but this torch build has no torch.distributed")
    return world


def check_batch(batch: int, world: World) -> None:
    if batch % world.size:
        raise ConfigError(f"--batch {batch} (the global batch) is not divisible by the world size {world.size}; "
                          f"use a multiple of {world.size} so that every rank holds batch/{world.size} rows")


def rank_device(device: str, world: World) -> torch.device:
    """``--device`` of this rank: cuda means cuda:LOCAL_RANK under torchrun (one GPU per rank)."""
    dev = torch.device(device)
    if dev.type == "cuda" and world.size > 1 and dev.index is None:
        return torch.device("cuda", world.local_rank)
    return dev


@contextlib.contextmanager
def session(world: World, device: torch.device) -> Iterator[None]:
    """Inside: an initialised process group when world.size > 1 (Gloo on CPU, NCCL on CUDA -- untested)."""
    if world.size == 1:
        yield
        return
    owned = not dist.is_initialized()   # a group the caller initialised is used and left alone
    if owned:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                                world_size=world.size)
    try:
        yield
        dist.barrier()   # every rank returns after rank 0 has written its files
    finally:
        if owned:
            dist.destroy_process_group()


def wrap_ddp(device: torch.device):
    """net -> DistributedDataParallel(net) on this rank's device (the recipes' MLPs have no buffers to sync)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return lambda net: DistributedDataParallel(net, device_ids=ids)


def _gathered_pulling_away(codes: torch.Tensor) -> torch.Tensor:
    from gankernels import distributed as gkd

    return gk.pulling_away(gkd.all_gather_rows(codes))


def pairwise_ops(world: World):
    """The namespace the recipes call their pairwise ops through (``Context.ops``)."""
    if world.size == 1:
        return gk
    from gankernels import distributed as gkd

    return SimpleNamespace(mmd2=gkd.mmd2, witness=gkd.witness, kernel_flow=gkd.kernel_flow,
                           smoothed_score=gkd.smoothed_score, pulling_away=_gathered_pulling_away)


def mean_logs(logs: Dict[str, float], world: World) -> Dict[str, float]:
    """The logged losses averaged over ranks (= the single-process values, see the module docstring)."""
    if world.size == 1 or not logs:
        return logs
    t = torch.tensor(list(logs.values()), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return dict(zip(logs, (t / world.size).tolist()))
