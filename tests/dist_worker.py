"""Scenarios of tests/test_distributed.py, and the worker process that runs them on one rank.

The worker is launched K times with a torchrun-style environment (RANK, WORLD_SIZE,
and MASTER_ADDR, MASTER_PORT -- or GANKERNELS_TEST_INIT, a ``file://`` rendezvous,
which the test uses to avoid racing for a free port): ``python dist_worker.py OUT_DIR``.  It builds the global
float64 batch from fixed seeds, takes its rank's shard (uneven shard sizes), runs
every scenario with ``api = gankernels.distributed`` and writes
``{scenario: result}`` to ``OUT_DIR/rank<r>.pt``.  The test runs the *same*
scenario functions single-process on the global batch with ``api = gankernels``
(and the float64 reference), so both sides compute the same loss by construction:
a scenario's loss on a rank is a sum over that rank's rows, so the sum over ranks
of the per-rank losses is the single-process loss -- except for the replicated
``mmd2`` value, which rank r weights by ``c_r`` (the c_r sum to 1).
"""
from __future__ import annotations

import torch

import gankernels as gk
from gankernels.kernels import Energy, Gaussian, InverseMultiquadric, Polynomial, RationalQuadratic
from worker_process import error_of, join_group, run, save_and_leave

D = 3
F64 = torch.float64
# shard sizes per world size: uneven, and rank 0 of K = 2 holds a single x row
SIZES = {
    2: {"x": [1, 6], "y": [5, 2], "z": [2, 3]},
    3: {"x": [3, 1, 4], "y": [2, 5, 2], "z": [1, 2, 2]},
}
LOSS_WEIGHTS = {2: [0.3, 0.7], 3: [0.2, 0.3, 0.5]}
LEAVES = ("x", "y", "z", "w", "wm")


def global_batch(world: int):
    """The global float64 inputs and cotangents for ``world`` ranks."""
    g = torch.Generator().manual_seed(1000 + world)
    n, m, k = (sum(SIZES[world][s]) for s in ("x", "y", "z"))

    def randn(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=F64) * scale + shift

    return {
        "x": randn(n, D, scale=0.8), "y": randn(m, D, scale=0.8, shift=0.4), "z": randn(k, D),
        "w": randn(m).abs() + 0.1, "wm": randn(m, 2),
        "g_flow": randn(n, D), "g_sum": randn(n, 2), "g_z": randn(k),
    }


def shard(batch, world: int, rank: int):
    """Rank ``rank``'s rows of every tensor of ``batch`` (x-, y- or z-indexed by their first dimension)."""
    out = {}
    for name, t in batch.items():
        owner = {"x": "x", "y": "y", "z": "z", "w": "y", "wm": "y", "g_flow": "x", "g_sum": "x", "g_z": "z"}[name]
        sizes = SIZES[world][owner]
        start = sum(sizes[:rank])
        out[name] = t[start:start + sizes[rank]]
    return out


def _mmd2(kernel, estimator):
    def run(api, t):
        value = api.mmd2(t["x"], t["y"], kernel, estimator)
        return value, t["c"] * value
    return run


def _kernel_sum(api, t):
    out = api.kernel_sum(t["x"], t["y"], RationalQuadratic(), t["wm"])
    return out, (out * t["g_sum"]).sum()


def _kernel_flow(kernel, weighted):
    def run(api, t):
        out = api.kernel_flow(t["x"], t["y"], kernel, t["w"] if weighted else None)
        return out, (out * t["g_flow"]).sum()
    return run


def _witness(api, t):
    out = api.witness(t["z"], t["x"], t["y"], Gaussian((0.7, 1.4)))
    return out, (out * t["g_z"]).sum()


def _witness_penalty(api, t):
    """Gradient penalty on the witness (double backward through the gather)."""
    (g,) = torch.autograd.grad(api.witness(t["z"], t["x"], t["y"], Gaussian((0.7, 1.4))).sum(), t["z"],
                               create_graph=True)
    return g, ((g.norm(dim=1) - 1) ** 2).sum()


def _smoothed_score(api, t):
    out = api.smoothed_score(t["x"], t["y"], 0.8, t["w"])
    return out, (out * t["g_flow"]).sum()


SCENARIOS = {
    "mmd2_biased_gaussian": _mmd2(Gaussian((0.5, 1.0, 2.0)), "biased"),
    "mmd2_unbiased_gaussian": _mmd2(Gaussian((0.5, 1.0, 2.0)), "unbiased"),
    "mmd2_unbiased_polynomial": _mmd2(Polynomial(3), "unbiased"),
    "mmd2_biased_energy": _mmd2(Energy(), "biased"),
    "kernel_sum_weights_mc": _kernel_sum,
    "kernel_flow_weights": _kernel_flow(InverseMultiquadric(beta=-1.5), True),
    "kernel_flow_unweighted": _kernel_flow(Gaussian(0.9), False),
    "witness": _witness,
    "witness_penalty": _witness_penalty,
    "smoothed_score": _smoothed_score,
}
# the K = 3 run checks the odd-K block schedule of mmd2 and one gather
SCENARIOS_K3 = ("mmd2_biased_gaussian", "mmd2_unbiased_polynomial", "kernel_flow_weights")


def available(name: str) -> bool:
    return name != "smoothed_score" or hasattr(gk, "smoothed_score")


def run_scenario(fn, api, tensors, c):
    """-> (output, {leaf: grad or None}) for the loss of ``fn``."""
    t = {k: (v.clone().requires_grad_(True) if k in LEAVES else v) for k, v in tensors.items()}
    t["c"] = c
    out, loss = fn(api, t)
    leaves = [t[k] for k in LEAVES]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return out.detach(), {k: (None if g is None else g.detach()) for k, g in zip(LEAVES, grads)}


# ----------------------------------------------------------------------------- the worker

def _error_scenarios(gkd, local, rank):
    """Bad setups; each must raise the same exception on every rank (and not hang)."""
    x, y = local["x"], local["y"]
    k = Gaussian()
    other_d = torch.zeros(x.shape[0], D + 1, dtype=F64)
    return {
        "err_dim": error_of(lambda: gkd.mmd2(x if rank == 0 else other_d, y if rank == 0 else other_d[:2], k)),
        "err_dtype": error_of(lambda: gkd.mmd2(x.to(torch.float32 if rank == 1 else F64),
                                             y.to(torch.float32 if rank == 1 else F64), k)),
        "err_integer_on_one_rank": error_of(lambda: gkd.kernel_flow(x, y.long() if rank == 1 else y, k)),
        "err_kernel": error_of(lambda: gkd.mmd2(x, y, Gaussian(1.0 + rank))),
        "err_estimator": error_of(lambda: gkd.mmd2(x, y, k, "unbiased" if rank == 0 else "nope")),
        "err_requires_grad": error_of(lambda: gkd.witness(x, x, y.clone().requires_grad_(rank == 0), k)),
        "err_weights_layout": error_of(lambda: gkd.kernel_sum(x, y, k, local["w"] if rank == 0 else None)),
        "err_different_ops": error_of(lambda: gkd.mmd2(x, y, k) if rank == 0 else gkd.witness(x, x, y, k)),
        "err_weights_shape": error_of(lambda: gkd.kernel_flow(x, y, k, local["wm"])),
    }


def _ddp_generator(gkd, local, world):
    """A tiny generator trained data-parallel with the distributed mmd2 as its loss: parameter gradients.

    DDP's reduction is applied by hand -- all-reduce the parameter gradients and
    divide by the world size -- because constructing a real DDP module imports
    torch._dynamo (3-6 s per process here), too slow for the test suite.
    """
    torch.manual_seed(7)
    gen = torch.nn.Linear(D, D, dtype=F64)
    loss = gkd.mmd2(gen(local["x"]), local["y"], Gaussian((0.5, 1.0, 2.0)))
    loss.backward()
    for p in gen.parameters():
        torch.distributed.all_reduce(p.grad)
        p.grad /= world
    return {"value": loss.detach(), "weight": gen.weight.grad.clone(), "bias": gen.bias.grad.clone()}


def main(out_dir: str) -> None:
    from gankernels import distributed as gkd

    join_group()
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    local = shard(global_batch(world), world, rank)
    results = {}
    if world == 2:
        results.update(_error_scenarios(gkd, local, rank))
    names = SCENARIOS if world == 2 else SCENARIOS_K3
    for name in names:
        if not available(name):
            continue
        with gkd.count_communication() as stats:
            out, grads = run_scenario(SCENARIOS[name], gkd, local, LOSS_WEIGHTS[world][rank])
        results[name] = {"out": out, "grads": grads, "comm": (stats.calls, stats.payload_bytes, stats.sent_bytes)}
    if world == 2:
        xg = local["x"].clone().requires_grad_(True)
        gathered = gkd.all_gather_rows(xg)
        (gathered * global_batch(world)["g_flow"]).sum().backward()
        results["all_gather_rows"] = {"out": gathered.detach(), "grad": xg.grad}
        results["ddp"] = _ddp_generator(gkd, local, world)
    save_and_leave(results, out_dir)


if __name__ == "__main__":
    run(main)
