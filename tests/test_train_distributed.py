"""gankernels.train data-parallel: 2 Gloo processes (DDP + sharded ops) equal one process at the same global batch.

One launch of ``train_dist_worker.py`` on 2 ranks trains every case of its ``CASES``
(every recipe: mmd-gan with the witness penalty, flow-gan, wgan-gp, ebgan, score-gan, fgan,
alpha-gan; global batch 16,
3 steps, float64) and resumes one of them; here the same configurations train in this
process.  Compared: the checkpoints -- weights *and* Adam's moment estimates, which carry
the gradients' scale (Adam's steps alone are invariant to it, so a loss scaled by the world
size would pass a weights-only check) -- the RNG state, the logged losses and metrics.

Tolerance: float64; the runs differ only in the order of sums (DDP averages two half-batch
gradients, the sharded ops sum their blocks by rank).  Adam's moments must agree to 1e-10 of
the largest of their group and the weights to 1e-10 of each tensor's largest entry; measured
here: <= 1.5e-13 and <= 1.2e-14 after 3 steps.  Adam divides by sqrt(v), so a component with
a tiny gradient has its rounding amplified in its step (hence the margin); a wrong loss scale
or a missed pair is off by percent (checked by breaking each on purpose while writing this).
Also: rank 0 alone writes the run folder, --resume under 2 processes equals the straight
run, a global batch not divisible by the world size is refused, and the README's
``torchrun --standalone --nproc-per-node 2 -m gankernels train ...`` runs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import train_dist_worker as W
from conftest import child_env, torchrun_train
from test_distributed import _launch
from gankernels.train import ConfigError, train
from gankernels.train.parallel import World, check_batch, current_world

WORKER = Path(__file__).with_name("train_dist_worker.py")
CASES = [c for c in W.CASES if c != "mmd-gan-resumed"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(the run folder of the 2-rank launch, [worker results by rank], the single-process run folders)."""
    base = tmp_path_factory.mktemp("ddp")
    results = _launch(2, base, WORKER)
    single = tmp_path_factory.mktemp("single")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for case in CASES:
            if W.available(case):
                train(W.config(case), str(single / case), progress=False, use_matplotlib=False)
    finally:
        torch.set_default_dtype(previous)
    return base, results, single


def _checkpoint(folder: Path):
    return torch.load(folder / "checkpoint.pt", weights_only=True)


def _metrics(folder: Path):
    return [json.loads(line) for line in open(folder / "metrics.jsonl")]


def _close(a, b, what, rtol, scale=0.0):
    """|a - b| <= rtol * max(scale, max |b|), recursively through dicts; other values equal."""
    if isinstance(b, dict):
        assert a.keys() == b.keys(), what
        for k in b:
            _close(a[k], b[k], f"{what}.{k}", rtol, scale)
    elif isinstance(b, torch.Tensor) and b.is_floating_point():
        assert a.dtype == b.dtype == torch.float64 and a.shape == b.shape, what
        err, scale = float((a - b).abs().max()), max(scale, float(b.abs().max()))
        assert err <= rtol * scale, f"{what}: max |error| {err:.2e} > {rtol:.0e} x {scale:.2e}"
    elif isinstance(b, torch.Tensor):
        assert torch.equal(a, b), what
    else:
        assert a == b, what


def _parameter_names(cfg):
    """{optimiser group: [(net, parameter name) in the optimiser's order]} of the recipe of ``cfg``."""
    from gankernels.train import load_data
    from gankernels.train.loop import build

    recipe = build(cfg, load_data(cfg.data))
    names = {id(p): (net, n) for net, m in recipe.nets.items() for n, p in m.named_parameters()}
    return {g: [names[id(p)] for p in opt.param_groups[0]["params"]] for g, opt in recipe.optims.items()}


def _compare_states(got, want, case, cfg):
    """Adam's moments to 1e-10 of the group's largest, then the weights to 1e-10 of each tensor's largest.

    A parameter whose gradient is zero but for rounding -- the critic features' output bias of
    mmd-gan: the Gaussian-kernel MMD and witness do not change when every feature moves by the
    same vector -- random-walks by ~lr per Adam step in both runs (Adam normalises the noise), so
    its weights are not compared; that its moment is rounding noise in both runs is.
    """
    assert got["step"] == want["step"]
    assert torch.equal(got["rng"], want["rng"]), f"{case}: the ranks drew more or less than one process"
    noise = set()
    for group, params in _parameter_names(cfg).items():
        g_state, w_state = got["recipe"]["optims"][group]["state"], want["recipe"]["optims"][group]["state"]
        assert g_state.keys() == w_state.keys() == set(range(len(params)))
        for moment in ("exp_avg", "exp_avg_sq"):
            top = max(float(s[moment].abs().max()) for s in w_state.values())
            for i, (net, name) in enumerate(params):
                _close(g_state[i][moment], w_state[i][moment], f"{case} {net}.{name} {moment}", 1e-10, top)
                if moment == "exp_avg" and float(w_state[i][moment].abs().max()) < 1e-12 * top:
                    noise.add(f"{net}.{name}")
        for i in w_state:
            assert torch.equal(g_state[i]["step"], w_state[i]["step"])
    for net, params in want["recipe"]["nets"].items():
        for name, w in params.items():
            if f"{net}.{name}" not in noise:
                _close(got["recipe"]["nets"][net][name], w, f"{case} {net}.{name}", 1e-10)
    return noise


@pytest.mark.parametrize("case", CASES)
def test_two_ranks_equal_one_process(runs, case):
    base, _, single = runs
    if not W.available(case):
        pytest.skip(f"{case}: its fused op is not in this build")
    got, want = _checkpoint(base / case), _checkpoint(single / case)
    assert got["config"] == want["config"]
    noise = _compare_states(got, want, case, W.config(case))
    # only a critic's output bias may be ignored by the losses (MMD, witness, WGAN's mean difference)
    assert noise <= {"phi.6.bias", "V.6.bias"}, noise
    (got,), (want,) = _metrics(base / case), _metrics(single / case)   # kl: NaN without high-quality samples
    assert got.keys() == want.keys() and got["step"] == want["step"] == W.STEPS
    for k in set(want) - {"time_s"}:   # losses averaged over ranks, metrics evaluated on rank 0
        if isinstance(want[k], float) and math.isnan(want[k]):
            assert math.isnan(got[k]), (case, k, got[k])
        elif isinstance(want[k], float):
            assert abs(got[k] - want[k]) <= 1e-10 * max(1.0, abs(want[k])), (case, k, got[k], want[k])
        else:
            assert got[k] == want[k], (case, k)


def test_resume_under_two_ranks_equals_the_straight_run(runs):
    base, results, single = runs
    _compare_states(_checkpoint(base / "mmd-gan-resumed"), _checkpoint(single / "mmd-gan"), "mmd-gan resumed",
                    W.config("mmd-gan"))
    assert [row["step"] for row in _metrics(base / "mmd-gan-resumed")] == [1, 2, 3]
    assert results[0]["mmd-gan-resumed"]["step"] == 3 and results[1]["mmd-gan-resumed"] == {}


def test_rank_zero_alone_writes(runs):
    base, results, _ = runs
    own = base / "own_out"
    written = sorted(p.name for p in (own / "rank0").iterdir())
    assert written == ["checkpoint.pt", "config.json", "gankernels-run.json", "metrics.jsonl", "report.md", "samples",
                       "samples.npy"]
    assert not (own / "rank1").exists(), "rank 1 wrote files"
    assert "data-parallel over 2 processes" in (own / "rank0" / "report.md").read_text()
    assert "torchrun --standalone --nproc-per-node 2 -m gankernels train" in (own / "rank0" / "report.md").read_text()
    assert not list(base.glob("**/*.tmp")), "a checkpoint was left half-written"
    assert results[0]["own_out"]["step"] == W.STEPS and results[1]["own_out"] == {}


def test_batch_not_divisible_by_the_world_size(runs):
    _, results, _ = runs
    for res in results:   # refused on every rank before any collective or file
        assert res["err_batch"][0] == "ConfigError" and "--batch 15" in res["err_batch"][1], res["err_batch"]
    assert not (runs[0] / "bad").exists()
    with pytest.raises(ConfigError, match="not divisible by the world size 3"):
        check_batch(16, World(size=3, rank=0))
    check_batch(16, World(size=4, rank=3))


def test_torchrun_launch_of_the_cli(tmp_path):
    """The README's command: ``torchrun --standalone --nproc-per-node 2 -m gankernels train ...`` (env:// init)."""
    out = tmp_path / "run"
    res, lines = torchrun_train(2, ["--recipe", "flow-gan", "--data", "ring8", "--batch", "8", "--steps", "2",
                                    "--hidden", "8", "--out", str(out)], child_env(), timeout=120)
    assert len(lines) == 1 and json.loads(lines[0])["step"] == 2, res.stdout   # rank 0 alone prints
    progress = [line for line in res.stderr.splitlines() if line.startswith("[")]   # one per evaluation
    assert [p.split(" | ")[0][-3:] for p in progress] == ["1/2", "2/2"], res.stderr[-2000:]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    assert "data-parallel over 2 processes" in (out / "report.md").read_text()


@pytest.mark.parametrize("env, match", [({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
                                        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2")])
def test_bad_torchrun_environment(monkeypatch, tmp_path, env, match):
    if torch.distributed.is_initialized():
        pytest.skip("a process group is initialised in this process")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=match):
        current_world()
    with pytest.raises(ConfigError, match=match):
        train(W.config("flow-gan"), str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()
