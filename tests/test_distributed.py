"""gankernels.distributed: sharded ops over 2 (and 3) Gloo processes on CPU equal the single-process ops.

One launch of K worker processes (``dist_worker.py``, torchrun-style environment)
runs every scenario on uneven float64 shards; here the same scenarios run
single-process on the concatenated batch (``gankernels``) and through the float64
oracle (``gankernels.reference``), and values and gradients (x, y, z, weights)
must agree tightly.  Also: bad setups raise the same error on every rank (no
hang: the launch has a deadline), the gradient convention under DDP, the block
schedule of the sharded mmd2, and the communication formula against the bytes
counted in the collectives.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gankernels as gk
from gankernels import distributed as gkd
from gankernels import reference as ref

import dist_worker as W
from conftest import child_env

WORKER = Path(__file__).with_name("dist_worker.py")
LAUNCH_TIMEOUT = 120  # seconds; a hang in a collective fails the test instead of blocking it


def _launch(world: int, out_dir: Path, worker: Path = WORKER):
    """Run ``worker`` on ``world`` ranks; -> [results of rank r] (the ``rank<r>.pt`` it writes)."""
    # rendezvous through a file in the fresh directory: no port to pick, so no race for one
    env = child_env(WORLD_SIZE=str(world), GANKERNELS_TEST_INIT=f"file://{out_dir / 'store'}")
    logs = [open(out_dir / f"rank{r}.log", "w") for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(worker), str(out_dir)], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=logs[r], stderr=subprocess.STDOUT) for r in range(world)]
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    output = "\n".join(f"--- rank {r} (exit {p.returncode}):\n" + (out_dir / f"rank{r}.log").read_text()[-3000:]
                       for r, p in enumerate(procs))
    assert all(p.returncode == 0 for p in procs), f"distributed workers failed or hung:\n{output}"
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    return _launch(2, tmp_path_factory.mktemp("dist2"))


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    return _launch(3, tmp_path_factory.mktemp("dist3"))


def _close(actual, expected, what, rtol=1e-12):
    """float64: |actual - expected| <= rtol * max|expected| (+ tiny), the summation order being the only difference."""
    assert actual.dtype == torch.float64 and actual.shape == expected.shape, what
    scale = max(float(expected.abs().max()), 1e-300)
    err = float((actual - expected).abs().max())
    assert err <= rtol * scale, f"{what}: max |error| {err:.3e} > {rtol:.0e} * {scale:.3e}"


def _concat(parts):
    return parts[0].unsqueeze(0) if parts[0].dim() == 0 else torch.cat(parts)


def _check_scenario(results, world, name):
    batch = W.global_batch(world)
    single_out, single_grads = W.run_scenario(W.SCENARIOS[name], gk, batch, 1.0)
    per_rank = [res[name] for res in results]
    if single_out.dim() == 0:  # a replicated value: bitwise the same on every rank
        for r, res in enumerate(per_rank):
            assert torch.equal(res["out"], per_rank[0]["out"]), f"{name}: rank {r} differs from rank 0"
        out = per_rank[0]["out"]
    else:
        out = torch.cat([res["out"] for res in per_rank])
    _close(out, single_out, f"{name} value")
    for leaf, expected in single_grads.items():
        got = [res["grads"][leaf] for res in per_rank]
        if expected is None:
            assert all(g is None for g in got), f"{name}: gradient w.r.t. {leaf} should not exist"
            continue
        _close(torch.cat(got), expected, f"{name} gradient w.r.t. {leaf}")
    if name != "smoothed_score" or hasattr(ref, "smoothed_score"):  # and the float64 oracle (Gram matrices)
        oracle_out, oracle_grads = W.run_scenario(W.SCENARIOS[name], ref, batch, 1.0)
        _close(out, oracle_out, f"{name} value vs the oracle", rtol=1e-9)
        for leaf, expected in oracle_grads.items():
            if expected is not None:
                _close(torch.cat([res["grads"][leaf] for res in per_rank]), expected,
                       f"{name} gradient w.r.t. {leaf} vs the oracle", rtol=1e-9)


# ----------------------------------------------------------------------------- values and gradients

@pytest.mark.parametrize("name", list(W.SCENARIOS))
def test_two_ranks_equal_single_process(run2, name):
    _check_scenario(run2, 2, name)


@pytest.mark.parametrize("name", W.SCENARIOS_K3)
def test_three_ranks_equal_single_process(run3, name):
    _check_scenario(run3, 3, name)


def test_data_parallel_parameter_gradients_are_those_of_the_global_mmd2(run2):
    """With DDP's averaging of gradients over ranks, backprop of the replicated mmd2 gives the gradient of mmd2."""
    batch = W.global_batch(2)
    torch.manual_seed(7)
    gen = torch.nn.Linear(W.D, W.D, dtype=torch.float64)
    loss = gk.mmd2(gen(batch["x"]), batch["y"], gk.Gaussian((0.5, 1.0, 2.0)))
    loss.backward()
    for res in run2:
        _close(res["ddp"]["value"], loss.detach(), "DDP mmd2 value")
        _close(res["ddp"]["weight"], gen.weight.grad, "DDP weight gradient")
        _close(res["ddp"]["bias"], gen.bias.grad, "DDP bias gradient")


def test_all_gather_rows(run2):
    """Every rank gets all rows; the backward sums the ranks' gradients on the owner (here 2 x the cotangent)."""
    batch = W.global_batch(2)
    for res in run2:
        assert torch.equal(res["all_gather_rows"]["out"], batch["x"])
    grads = torch.cat([res["all_gather_rows"]["grad"] for res in run2])
    assert torch.equal(grads, 2 * batch["g_flow"])


# ----------------------------------------------------------------------------- bad setups

ERRORS = {  # scenario: (exception, words the message must contain)
    "err_dim": ("ValueError", ("x", "dimension", "rank 1")),
    "err_dtype": ("TypeError", ("dtype", "float32", "rank 1")),
    "err_integer_on_one_rank": ("TypeError", ("y", "rank 1")),
    "err_kernel": ("ValueError", ("kernel",)),
    "err_estimator": ("ValueError", ("estimator", "rank 1")),
    "err_requires_grad": ("ValueError", ("y", "requires grad")),
    "err_weights_layout": ("ValueError", ("weights", "None")),
    "err_different_ops": ("ValueError", ("mmd2", "witness")),
    "err_weights_shape": ("ValueError", ("weights",)),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_setup_raises_the_same_error_on_every_rank(run2, name):
    exc, words = ERRORS[name]
    got = [res[name] for res in run2]
    assert got[0] is not None, f"{name}: no error raised"
    assert all(g == got[0] for g in got), f"{name}: ranks raised different errors: {got}"
    assert got[0][0] == exc, got[0]
    for word in words:
        assert word in got[0][1], f"{name}: {word!r} not in {got[0][1]!r}"


def test_no_process_group():
    if torch.distributed.is_initialized():
        pytest.skip("a process group is initialised in this process")
    x = torch.randn(3, 2, dtype=torch.float64)
    for call in (lambda: gkd.mmd2(x, x, gk.Gaussian()), lambda: gkd.kernel_flow(x, x, gk.Gaussian()),
                 lambda: gkd.kernel_sum(x, x, gk.Gaussian()), lambda: gkd.witness(x, x, x, gk.Gaussian()),
                 lambda: gkd.smoothed_score(x, x, 1.0), lambda: gkd.all_gather_rows(x)):
        with pytest.raises(RuntimeError, match="init_process_group"):
            call()


# ----------------------------------------------------------------------------- the mmd2 block schedule

@pytest.mark.parametrize("world", [1, 2, 3, 4, 5, 6])
def test_mmd2_blocks_cover_every_cross_rank_pair_once(world):
    g = torch.Generator().manual_seed(world)
    sizes = (torch.randint(1, 6, (world,), generator=g)).tolist()
    offsets = [sum(sizes[:r]) for r in range(world)]
    total = sum(sizes)
    count = torch.zeros(total, total, dtype=torch.int64)
    for r in range(world):
        for q0, q1, s, c0, c1 in gkd._mmd2_blocks(r, world, sizes):
            assert s != r and 0 <= q0 < q1 <= sizes[r] and 0 <= c0 < c1 <= sizes[s]
            a = slice(offsets[r] + q0, offsets[r] + q1)
            b = slice(offsets[s] + c0, offsets[s] + c1)
            count[a, b] += 1
            count[b, a] += 1
    owner = torch.repeat_interleave(torch.arange(world), torch.tensor(sizes))
    cross = owner[:, None] != owner[None, :]
    assert torch.equal(count[cross], torch.ones_like(count[cross])), "a cross-rank pair is missed or counted twice"
    assert torch.equal(count[~cross], torch.zeros_like(count[~cross]))


def test_mmd2_blocks_balanced_for_equal_shards():
    for world in range(1, 9):
        work = [sum((q1 - q0) * (c1 - c0) for q0, q1, _, c0, c1 in gkd._mmd2_blocks(r, world, [100] * world))
                for r in range(world)]
        assert max(work) - min(work) <= 100 and abs(sum(work) - 100 * 100 * world * (world - 1) / 2) < 1, work


# ----------------------------------------------------------------------------- communication volume

COMM = {  # scenario: (op, weight columns)
    "mmd2_biased_gaussian": ("mmd2", 0), "mmd2_unbiased_polynomial": ("mmd2", 0),
    "kernel_sum_weights_mc": ("kernel_sum", 2), "kernel_flow_weights": ("kernel_flow", 1),
    "kernel_flow_unweighted": ("kernel_flow", 0), "witness": ("witness", 0), "witness_penalty": ("witness", 0),
}


@pytest.mark.parametrize("name", list(COMM))
def test_counted_communication_matches_the_formula(run2, name):
    op, cols = COMM[name]
    sizes = W.SIZES[2]
    for rank, res in enumerate(run2):
        want = gkd.communication_bytes(op, W.D, torch.float64, sizes["x"], sizes["y"], weight_cols=cols, rank=rank)
        assert res[name]["comm"] == (want.calls, want.payload_bytes, want.sent_bytes), (rank, res[name]["comm"], want)


def test_communication_is_linear_in_the_batch():
    """Doubling N and M doubles the bytes beyond the constant metadata -- O((N + M) D), never N x M."""
    def sent(n):
        return gkd.communication_bytes("mmd2", 64, torch.float32, [n, n], [n, n]).sent_bytes

    assert sent(4096) - sent(2048) == 2 * (sent(2048) - sent(1024)) > 0
