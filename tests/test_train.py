"""gankernels.train: loss math (docs/MATH.md §5), metrics (docs/MATH.md §6), recipes, checkpoints, CLI errors.

* Loss math against independent facts: every f-GAN conjugate of the table against a
  numerical Fenchel conjugate sup_u (u t - f(u)) of its generator f; the GAN and KL
  objectives against the BCE identity and a Monte-Carlo KL; EBGAN margin, alpha-GAN
  terms, the gradient penalty and the flow-following loss against direct formulas.
* Each recipe: a few steps with finite losses, and a run stopped after a checkpoint and
  resumed reaches bitwise the same weights as the uninterrupted run (same seed, CPU).
* Bad input (unknown recipe / divergence, wrong data file, corrupt, tampered or missing
  checkpoint, bad sample flags): a ConfigError / one-line CLI error, and no file is changed.
* Files: a run never writes over a file it did not create; a killed and resumed
  run writes the same metrics.jsonl as the uninterrupted one; metrics.jsonl is strict JSON.
* Trainer recipes: the f-GAN critic penalty keeps a kl critic bounded where the free one runs away;
  every divergence's defaults give finite, non-frozen training (smoke; the 3,000-step check is
  bench/train_quality.py); --d-steps per recipe and the settings in report.md; --eta and
  --n-critic are one-line errors; every flow-gan kernel pulls toward the data; score-GAN leaves
  each sample out of its own density; KID of point data is scale free; refine is Langevin with
  moving fake centres.
Shapes are tiny (batch 64, width 32) so the whole file runs in seconds.
"""
from __future__ import annotations

import json
import math
import os
import warnings
import zlib

import numpy as np
import pytest
import torch

import gankernels as gk
from gankernels.__main__ import main as cli_main
from gankernels.train import ConfigError, RunConfig, load_data, resume, sample, train
from gankernels.train import losses as L
from gankernels.train.data import grid_modes, ring_modes
from gankernels.train.loop import checkpoint_digest
from gankernels.train.metrics import histogram_kl, mode_metrics
from gankernels.train.picture import render, write_png

F64 = torch.float64

# ----------------------------------------------------------------------------- f-GAN table (docs/MATH.md §5)

# the generator functions f of each divergence (Nowozin et al., Table 1): independent of the conjugates
F_GENERATORS = {
    "tv": lambda u: 0.5 * (u - 1).abs(),
    "kl": lambda u: u * u.log(),
    "reverse-kl": lambda u: -u.log(),
    "pearson": lambda u: (u - 1) ** 2,
    "neyman": lambda u: (1 - u) ** 2 / u,
    "hellinger": lambda u: (u.sqrt() - 1) ** 2,
    "js": lambda u: -(u + 1) * ((1 + u) / 2).log() + u * u.log(),
    "gan": lambda u: u * u.log() - (u + 1) * (u + 1).log(),
}


def test_every_divergence_is_covered():
    assert set(L.DIVERGENCES) == set(F_GENERATORS) == {"kl", "reverse-kl", "pearson", "neyman", "hellinger",
                                                       "js", "gan", "tv"}


@pytest.mark.parametrize("name", sorted(F_GENERATORS))
def test_conjugate_is_the_fenchel_conjugate(name):
    """f*(t) = sup_u (u t - f(u)) on a fine grid, at t = g_f(v) for a few v."""
    div = L.DIVERGENCES[name]
    u = torch.logspace(-4, 3, 1_000_001, dtype=F64)
    fu = F_GENERATORS[name](u)
    for v in (-1.5, -0.5, 0.3, 1.2):
        t = div.activation(torch.tensor(v, dtype=F64))
        numeric = float((u * t - fu).max())
        assert abs(float(div.conjugate(t)) - numeric) < 1e-5 * max(1.0, abs(numeric)), (name, v)


@pytest.mark.parametrize("name", sorted(F_GENERATORS))
def test_conjugate_of_activation_is_the_composition(name):
    div = L.DIVERGENCES[name]
    v = torch.linspace(-4, 4, 81, dtype=F64)
    composed = div.conjugate(div.activation(v))
    assert torch.isfinite(composed).all(), "g_f must map into the domain of f*"
    torch.testing.assert_close(div.conjugate_of_activation(v), composed, rtol=1e-12, atol=1e-12)
    # finite where the composition overflows or loses the domain in floating point
    big = torch.tensor([-60.0, 60.0], dtype=F64)
    if name not in ("kl", "hellinger", "pearson"):   # these grow like exp(v) or v^2 by definition
        assert torch.isfinite(div.conjugate_of_activation(big)).all()


def test_gan_divergence_is_the_bce_objective():
    g = torch.Generator().manual_seed(0)
    vr, vf = torch.randn(50, generator=g, dtype=F64), torch.randn(40, generator=g, dtype=F64)
    div = L.DIVERGENCES["gan"]
    bce = -(torch.sigmoid(vr).log().mean() + (1 - torch.sigmoid(vf)).log().mean())
    torch.testing.assert_close(L.fgan_critic_loss(vr, vf, div), bce)
    torch.testing.assert_close(L.fgan_generator_loss(vf, div), -torch.sigmoid(vf).log().mean())
    js = L.DIVERGENCES["js"]   # JS objective = GAN objective + log 4
    torch.testing.assert_close(L.fgan_critic_loss(vr, vf, js), bce - math.log(4))


def test_kl_objective_at_the_optimal_critic_is_the_kl():
    """P = N(0, 1), Q = N(1, 1): with T* = f'(p/q) = 1 + log(p/q) the objective is KL(P || Q) = 1/2."""
    g = torch.Generator().manual_seed(0)
    xp, xq = torch.randn(400_000, generator=g, dtype=F64), torch.randn(400_000, generator=g, dtype=F64) + 1
    t_star = lambda x: 1 + (-(x ** 2) + (x - 1) ** 2) / 2  # noqa: E731
    objective = -L.fgan_critic_loss(t_star(xp), t_star(xq), L.DIVERGENCES["kl"])
    assert abs(float(objective) - 0.5) < 0.02


# ----------------------------------------------------------------------------- other families' terms

def test_ebgan_energy_and_margin_loss():
    x = torch.tensor([[0.0, 1.0], [2.0, 2.0]], dtype=F64)
    rec = torch.tensor([[0.5, 1.0], [1.0, 4.0]], dtype=F64)
    torch.testing.assert_close(L.energy(x, rec), torch.tensor([0.125, 2.5], dtype=F64))
    e_real = torch.tensor([0.1, 0.3], dtype=F64)
    e_fake = torch.tensor([0.5, 2.0], dtype=F64, requires_grad=True)
    loss = L.ebgan_critic_loss(e_real, e_fake, margin=1.0)
    torch.testing.assert_close(loss, torch.tensor(0.2 + 0.25, dtype=F64))
    loss.backward()   # the hinge is flat where E(G(z)) >= m
    torch.testing.assert_close(e_fake.grad, torch.tensor([-0.5, 0.0], dtype=F64))


def test_alpha_gan_terms():
    g = torch.Generator().manual_seed(1)
    v_real, v_rec, v_gen = (torch.randn(7, generator=g, dtype=F64) for _ in range(3))
    D = torch.sigmoid
    expected = -(D(v_real).log().mean() + (1 - D(v_rec)).log().mean() + (1 - D(v_gen)).log().mean())
    torch.testing.assert_close(L.alpha_discriminator_loss(v_real, v_rec, v_gen), expected)
    torch.testing.assert_close(L.alpha_code_loss(v_real, v_gen),
                               -(D(v_real).log().mean() + (1 - D(v_gen)).log().mean()))
    torch.testing.assert_close(L.density_ratio_term(v_gen), -(D(v_gen) / (1 - D(v_gen))).log().mean())


def test_gradient_penalty_of_a_linear_critic():
    a = torch.tensor([3.0, 4.0], dtype=F64, requires_grad=True)
    real, fake = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    penalty = L.gradient_penalty(lambda x: x @ a, real, fake, torch.Generator().manual_seed(0))
    torch.testing.assert_close(penalty, torch.tensor(16.0, dtype=F64))   # (|a| - 1)^2
    penalty.backward()                                                  # double backward reaches a
    torch.testing.assert_close(a.grad, 2 * (5 - 1) * a.detach() / 5)


def test_follow_loss_moves_along_the_drift():
    x = torch.randn(6, 3, dtype=F64, requires_grad=True)
    drift = torch.randn(6, 3, dtype=F64)
    loss = L.follow_loss(x, drift)
    torch.testing.assert_close(loss, 0.5 * (drift ** 2).sum(1).mean())
    loss.backward()
    torch.testing.assert_close(x.grad, -drift / 6)


# ----------------------------------------------------------------------------- data and metrics (docs/MATH.md §6)

def test_mixture_modes():
    ring = ring_modes().double()
    assert ring.shape == (8, 2)
    torch.testing.assert_close(ring.norm(dim=1), torch.ones(8, dtype=F64))
    assert torch.cdist(ring, ring).add(torch.eye(8, dtype=F64)).min() > 0.7   # no repeated mode
    torch.testing.assert_close(ring[2], torch.tensor([0.0, 1.0], dtype=F64), atol=1e-7, rtol=0)
    assert grid_modes().shape == (25, 2) and set(grid_modes()[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    data = load_data("grid25")
    x = data.sample(5000, torch.Generator().manual_seed(0))
    assert mode_metrics(x, data.modes, data.mode_std)["modes"] == 25
    assert abs(float(x.std(0).mean()) - math.sqrt(8)) < 0.15


def test_mode_metrics_by_hand():
    modes, std = ring_modes(), 0.01
    pts = torch.cat([modes[[0, 0, 0, 1]], modes[[2]] + 0.02, modes[[3]] + 0.05, torch.tensor([[5.0, 5.0]])])
    m = mode_metrics(pts, modes, std)    # high quality: 3 at mode 0, 1 at mode 1, 1 at mode 2 (0.028 < 0.03)
    assert m["modes"] == 3 and m["n_modes"] == 8
    assert m["hq"] == pytest.approx(5 / 7)
    p = np.array([3, 1, 1]) / 5
    assert m["kl"] == pytest.approx(float((p * np.log(p * 8)).sum()))
    assert histogram_kl(torch.tensor([4, 0, 0, 0])) == pytest.approx(math.log(4))
    assert histogram_kl(torch.tensor([2, 2, 2])) == pytest.approx(0.0)
    assert math.isnan(histogram_kl(torch.zeros(3)))


def _save(path, array):
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize("bad, what", [
    (lambda d: _save(d / "int.npy", np.ones((50, 2), np.int64)), "dtype"),
    (lambda d: _save(d / "cube.npy", np.ones((50, 2, 2), np.float32)), "shape"),
    (lambda d: _save(d / "few.npy", np.ones((3, 2), np.float32)), "rows"),
    (lambda d: _save(d / "nan.npy", np.full((50, 2), np.nan, np.float32)), "NaN"),
    (lambda d: (torch.save({"x": torch.ones(50, 2)}, d / "dict.pt"), str(d / "dict.pt"))[1], "one tensor"),
    (lambda d: ((d / "junk.pt").write_bytes(b"not a tensor"), str(d / "junk.pt"))[1], "cannot read"),
    (lambda d: str(d / "missing.npy"), "no such file"),
    (lambda d: _save(d / "same.npy", np.tile(np.float32([1, 2]), (50, 1))), "rows are equal"),
    (lambda d: "ring9", "unknown dataset"),
])
def test_bad_data_files(tmp_path, bad, what):
    path = bad(tmp_path)
    with pytest.raises(ConfigError, match="--data") as info:
        load_data(path)
    assert what in str(info.value)


def test_data_file_is_split_and_sampled(tmp_path):
    path = _save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(100, 3)))
    data = load_data(path)
    assert data.train.shape == (80, 3) and data.held_out.shape == (20, 3) and data.train.dtype == torch.float32
    assert data.sample(7, torch.Generator().manual_seed(0)).shape == (7, 3)


# ----------------------------------------------------------------------------- recipes: smoke + exact resume

def _has(op):
    return hasattr(gk, op)


RECIPE_CASES = [
    pytest.param("fgan", {"divergence": "gan"}, id="fgan"),
    pytest.param("wgan-gp", {"d_steps": 2}, id="wgan-gp"),
    pytest.param("mmd-gan", {}, id="mmd-gan"),
    pytest.param("mmd-gan", {"kernel": "rq", "gp": 0.0}, id="mmd-gan-rq-nogp"),
    pytest.param("flow-gan", {}, id="flow-gan"),
    pytest.param("flow-gan", {"kernel": "energy"}, id="flow-gan-energy"),
    pytest.param("alpha-gan", {}, id="alpha-gan"),
    pytest.param("ebgan", {}, id="ebgan",
                 marks=pytest.mark.skipif(not _has("pulling_away"), reason="gk.pulling_away not merged yet")),
    pytest.param("score-gan", {}, id="score-gan",
                 marks=pytest.mark.skipif(not _has("smoothed_score"), reason="gk.smoothed_score not merged yet")),
]


def _cfg(recipe, options, steps, seed=0, data="ring8", **kw):
    return RunConfig(recipe=recipe, data=data, batch=64, steps=steps, seed=seed, hidden=32, z_dim=4,
                     eval_every=kw.pop("eval_every", 3), ckpt_every=kw.pop("ckpt_every", 2), options=dict(options), **kw)


def _weights(out):
    state = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    return state["step"], state["recipe"]


def _assert_same_state(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same_state(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("recipe, options", RECIPE_CASES)
def test_recipe_trains_and_resumes_exactly(tmp_path, recipe, options):
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    last = train(_cfg(recipe, options, 3), straight, progress=False, use_matplotlib=False)
    losses = {k: v for k, v in last.items() if k.startswith("loss")}
    assert losses and all(math.isfinite(v) for v in losses.values()), last
    assert math.isfinite(last["kid"]) and math.isfinite(last["mmd2"]) and last["n_modes"] == 8

    train(_cfg(recipe, options, 2), stopped, progress=False, use_matplotlib=False)
    assert _weights(stopped)[0] == 2
    resume(stopped, steps=3, progress=False, use_matplotlib=False)
    (sa, a), (sb, b) = _weights(straight), _weights(stopped)
    assert sa == sb == 3
    _assert_same_state(a["nets"], b["nets"])
    _assert_same_state(a["optims"], b["optims"])
    rows = [json.loads(line) for line in open(os.path.join(stopped, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [2, 3] or [r["step"] for r in rows] == [3]
    for name in ("report.md", "samples.npy", "config.json"):
        assert os.path.isfile(os.path.join(straight, name))


def test_seed_changes_the_run(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train(_cfg("flow-gan", {}, 2), a, progress=False, use_matplotlib=False)
    train(_cfg("flow-gan", {}, 2, seed=1), b, progress=False, use_matplotlib=False)
    assert not torch.equal(_weights(a)[1]["nets"]["G"]["0.weight"], _weights(b)[1]["nets"]["G"]["0.weight"])


@pytest.mark.parametrize("name", sorted(F_GENERATORS))
def test_fgan_every_divergence_steps(name, tmp_path):
    from gankernels.train.loop import build
    from gankernels.train.recipes import Context

    data = load_data("ring8")
    recipe = build(_cfg("fgan", {"divergence": name}, 2), data)
    ctx = Context(data, 64, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    for _ in range(2):
        logs = recipe.step(ctx)
    assert set(logs) == {"loss_d", "loss_g", "gp"} and all(math.isfinite(v) for v in logs.values())


def test_alpha_gan_encoder_gets_only_reconstruction_and_code_terms(monkeypatch):
    """Rosca et al., Algorithm 1: the encoder's loss is L1 + the code term; the image terms of the
    reconstructions train the generator, not the encoder."""
    from gankernels.train.loop import build
    from gankernels.train.recipes import Context

    data = load_data("ring8")
    recipe = build(_cfg("alpha-gan", {}, 2), data)
    monkeypatch.setattr(recipe, "update", lambda group, loss: float(loss.backward() or loss.detach()))
    recipe.generator_step(Context(data, 64, 4, torch.Generator().manual_seed(3), torch.device("cpu")))
    got = [p.grad.clone() for p in recipe.E.parameters()]
    for p in recipe.E.parameters():
        p.grad = None
    real = Context(data, 64, 4, torch.Generator().manual_seed(3), torch.device("cpu")).real()  # the same draw
    z = recipe.E(real)
    ((real - recipe.G(z)).abs().sum(1).mean() + L.density_ratio_term(recipe.C(z))).backward()
    for g, p in zip(got, recipe.E.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_digits_run_with_class_coverage(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))
    last = train(_cfg("alpha-gan", {}, 2, data="digits"), str(tmp_path / "d"), progress=False, use_matplotlib=False)
    assert 0 <= last["classes"] <= 10 and 0 <= last["confident"] <= 1 and math.isfinite(last["kid"])
    assert os.path.isfile(tmp_path / "cache" / "digits_mlp_v1.pt")
    from gankernels.train.metrics import class_metrics, digits_classifier

    data = load_data("digits")   # the cached classifier labels held-out digits well and covers all classes
    m = class_metrics(data.held_out, digits_classifier())
    acc = float((digits_classifier()(data.held_out).argmax(1) == data.labels_held_out).double().mean())
    assert acc > 0.9 and m["classes"] == 10


# ----------------------------------------------------------------------------- sampling and refinement

def test_sample_and_refine(tmp_path):
    out = str(tmp_path / "run")
    train(_cfg("fgan", {}, 2), out, progress=False, use_matplotlib=False)
    res = sample(out, n=100)
    assert res["samples"].shape == (100, 2) and "hq" in res["metrics"]
    torch.testing.assert_close(sample(out, n=100)["samples"], res["samples"])   # same seed, same samples
    for refine in ("kernel-langevin", "disc-langevin"):
        if not (_has("kernel_langevin") and _has("langevin_sample") and _has("discriminator_score")):
            with pytest.raises(ConfigError, match="needs gankernels"):
                sample(out, n=100, refine=refine)
            continue
        res = sample(out, n=100, refine=refine, steps=3)
        assert res["refined"].shape == (100, 2) and torch.isfinite(res["refined"]).all()
        assert not torch.equal(res["refined"], res["samples"])


@pytest.mark.skipif(not _has("langevin_sample"), reason="gk.langevin_sample not merged yet")
def test_disc_langevin_needs_a_critic(tmp_path):
    out = str(tmp_path / "flow")
    train(_cfg("flow-gan", {}, 1), out, progress=False, use_matplotlib=False)
    with pytest.raises(ConfigError, match="no critic network"):
        sample(out, n=50, refine="disc-langevin")


def test_png_writer(tmp_path):
    data = load_data("ring8")
    rgb = render(data.held_out, data)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3 and (rgb != 255).any()
    path = tmp_path / "p.png"
    write_png(str(path), rgb)
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    idat = raw[raw.index(b"IDAT") + 4:raw.index(b"IEND") - 8]
    h, w = rgb.shape[:2]
    decoded = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (decoded[:, 0] == 0).all() and np.array_equal(decoded[:, 1:].reshape(h, w, 3), rgb)


# ----------------------------------------------------------------------------- bad input and files left alone

@pytest.mark.parametrize("recipe, options, match", [
    ("gan-9000", {}, "--recipe 'gan-9000': unknown"),
    ("fgan", {"divergence": "wasserstein"}, "--divergence 'wasserstein': unknown"),
    ("wgan-gp", {"divergence": "kl"}, "--divergence: not an option of recipe 'wgan-gp'"),
    ("mmd-gan", {"kernel": "laplace"}, "--kernel 'laplace'"),
])
def test_bad_recipe_configuration(tmp_path, recipe, options, match):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=match):
        train(_cfg(recipe, options, 2), str(out), progress=False)
    assert not out.exists()


def test_bad_run_parameters(tmp_path):
    for field, value in (("batch", 1), ("steps", 0), ("lr", -1.0), ("device", "tpu")):
        cfg = _cfg("fgan", {}, 2)
        setattr(cfg, field, value)
        with pytest.raises(ConfigError, match=field):
            train(cfg, str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_corrupt_and_missing_checkpoints_change_nothing(tmp_path):
    out = tmp_path / "run"
    train(_cfg("fgan", {}, 2), str(out), progress=False, use_matplotlib=False)
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:300])                 # truncated, as by a full disk
    before = _snapshot(out)
    with pytest.raises(ConfigError, match="cannot read the checkpoint"):
        resume(str(out), steps=4, progress=False)
    with pytest.raises(ConfigError, match="cannot read the checkpoint"):
        sample(str(out))
    assert _snapshot(out) == before
    torch.save({"something": 1}, ckpt)
    before = _snapshot(out)
    with pytest.raises(ConfigError, match="not a gankernels.train"):
        resume(str(out), progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(_cfg("fgan", {}, 2), str(out), progress=False)
    assert _snapshot(out) == before
    with pytest.raises(ConfigError, match="no checkpoint"):
        resume(str(tmp_path / "nothing"), progress=False)
    assert not (tmp_path / "nothing").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_run_on_a_cpu_only_machine(tmp_path):
    out = tmp_path / "run"
    train(_cfg("fgan", {}, 2), str(out), progress=False, use_matplotlib=False)
    ckpt = out / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["config"]["device"] = "cuda"                        # as written by a run with --device cuda
    state["sha256"] = checkpoint_digest(state)
    torch.save(state, ckpt)
    before = _snapshot(out)
    for call in (lambda: resume(str(out), progress=False), lambda: sample(str(out))):
        with pytest.raises(ConfigError, match="CUDA is not available here"):
            call()
    assert _snapshot(out) == before


def test_killed_run_drops_metrics_after_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(_cfg("flow-gan", {}, 2, eval_every=1, ckpt_every=2), str(out), progress=False, use_matplotlib=False)
    with open(out / "metrics.jsonl", "a") as f:           # what a run killed after step 3's evaluation leaves
        f.write(json.dumps({"step": 3, "kid": 0.0}) + "\n" + '{"step": 4, "ki')
    resume(str(out), steps=3, progress=False, use_matplotlib=False)
    steps = [json.loads(line)["step"] for line in open(out / "metrics.jsonl")]
    assert steps == [1, 2, 3]


def test_cli_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    cases = [
        ["train", "--recipe", "nope", "--data", "ring8", "--out", out],
        ["train", "--recipe", "fgan", "--divergence", "chi", "--data", "ring8", "--out", out],
        ["train", "--recipe", "fgan", "--data", str(tmp_path / "x.npy"), "--out", out],
        ["train", "--resume", "--out", out],
        ["train", "--resume", "--recipe", "fgan", "--out", out],
        ["train", "--data", "ring8", "--out", out],
        ["sample", "--run", out],
    ]
    for argv in cases:
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith(f"gankernels {argv[0]}: error: "), err
    assert not os.path.exists(out)


def test_cli_train_resume_and_sample(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["--out", out, "--quiet"]
    assert cli_main(["train", "--recipe", "flow-gan", "--data", "ring8", "--batch", "32", "--steps", "2",
                     "--hidden", "16", "--eval-every", "2"] + base) == 0
    assert cli_main(["train", "--resume", "--steps", "3"] + base) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3
    assert cli_main(["sample", "--run", out, "--n", "50", "--save", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (50, 2) and (tmp_path / "s.png").is_file()
    assert cli_main([]) == 0 and "gankernels" in capsys.readouterr().out   # `gankernels` alone is still `info`


@pytest.mark.parametrize("options", [{"gp": -1.0}, {"d_steps": 0}, {"d_steps": 1.5}, {"gp": float("nan")}])
def test_bad_recipe_numbers(tmp_path, options):
    with pytest.raises(ConfigError, match="--" + next(iter(options)).replace("_", "-")):
        train(_cfg("wgan-gp", options, 2), str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


def test_report_names_the_command(tmp_path):
    out = tmp_path / "run"
    train(_cfg("fgan", {"divergence": "js"}, 1), str(out), progress=False, use_matplotlib=False)
    report = (out / "report.md").read_text()
    assert "--recipe fgan --data ring8 --batch 64 --steps 1 --seed 0" in report and "--divergence js" in report
    assert "| 1 |" in report and "samples/step_0000001.png" in report


# ------------------------------------------------------------------ nothing lost, nothing overwritten

def _tiny_train(out, *extra):
    return ["train", "--recipe", "flow-gan", "--data", "ring8", "--batch", "16", "--steps", "1", "--hidden", "8",
            "--out", str(out), "--quiet", *extra]


def _one_error(capsys, command, *words):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"gankernels {command}: error: "), err
    assert "Traceback" not in err and "\x1b" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_new_run_never_writes_over_other_files(tmp_path, capsys):
    """A non-empty folder that is not a run is refused; with --allow-nonempty-out the run goes beside
    the files there, stops before writing if one of its names is taken, and resume keeps working."""
    mine = tmp_path / "mine"
    (mine / "samples").mkdir(parents=True)
    (mine / "config.json").write_text('{"mine": true}\n')
    (mine / "report.md").write_text("my notes\n")
    before = _snapshot(mine)
    assert cli_main(_tiny_train(mine)) == 2
    _one_error(capsys, "train", "not empty", "--allow-nonempty-out")
    assert cli_main(_tiny_train(mine, "--allow-nonempty-out")) == 2
    _one_error(capsys, "train", "config.json, report.md", "did not create")
    assert _snapshot(mine) == before and not (mine / "gankernels-run.json").exists()

    (mine / "config.json").rename(mine / "my_config.json")
    (mine / "report.md").rename(mine / "samples" / "my_notes.md")
    before = _snapshot(mine)
    assert cli_main(_tiny_train(mine, "--allow-nonempty-out")) == 0
    capsys.readouterr()
    assert all(_snapshot(mine)[p] == b for p, b in before.items())           # the user's files are untouched
    listed = set(json.loads((mine / "gankernels-run.json").read_text())["files"])
    assert {"config.json", "report.md", "checkpoint.pt", "samples/step_0000001.png"} <= listed
    assert not listed & {"my_config.json", "samples/my_notes.md"}
    assert cli_main(["train", "--resume", "--steps", "2", "--out", str(mine), "--quiet"]) == 0   # resume still works
    capsys.readouterr()
    assert all(_snapshot(mine)[p] == b for p, b in before.items())
    assert [json.loads(line)["step"] for line in open(mine / "metrics.jsonl")] == [1, 2]

    (mine / "samples" / "step_0000003.png").write_bytes(b"the user's picture")   # a name the resumed run needs
    before = _snapshot(mine)
    assert cli_main(["train", "--resume", "--steps", "3", "--out", str(mine), "--quiet"]) == 2
    _one_error(capsys, "train", "samples/step_0000003.png")
    assert _snapshot(mine) == before
    assert cli_main(["train", "--resume", "--allow-nonempty-out", "--out", str(mine)]) == 2
    _one_error(capsys, "train", "--allow-nonempty-out")


def _flip_optimizer_bytes(ckpt, n=64):
    """XOR n bytes inside the stored bytes of one of Adam's moment tensors."""
    moment = torch.load(ckpt, weights_only=True)["recipe"]["optims"]["G"]["state"][0]["exp_avg_sq"]
    blob = moment.numpy().tobytes()
    raw = bytearray(ckpt.read_bytes())
    at = raw.find(blob)
    assert len(blob) >= n and at >= 0 and raw.find(blob, at + 1) < 0
    for i in range(at, at + n):
        raw[i] ^= 0x5A
    ckpt.write_bytes(bytes(raw))
    return moment


def test_flipped_bytes_in_a_checkpoint_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg("fgan", {}, 2), str(out), progress=False, use_matplotlib=False)
    moment = _flip_optimizer_bytes(out / "checkpoint.pt")
    damaged = torch.load(out / "checkpoint.pt", weights_only=True)   # torch.load itself does not notice
    assert not torch.equal(damaged["recipe"]["optims"]["G"]["state"][0]["exp_avg_sq"], moment)
    before = _snapshot(out)
    for argv in (["train", "--resume", "--steps", "3", "--out", str(out), "--quiet"],
                 ["sample", "--run", str(out), "--n", "50"]):
        assert cli_main(argv) == 2, argv
        _one_error(capsys, argv[0], "checkpoint.pt", "sha256")
    assert _snapshot(out) == before


class _Killed(BaseException):
    """Stands for kill -9: nothing in the trainer catches it."""


def _metric_rows(folder):
    """metrics.jsonl without the wall-clock field (NaN read as None, so rows compare by value)."""
    with open(folder / "metrics.jsonl") as f:
        return [{k: v for k, v in json.loads(line, parse_constant=lambda c: None).items() if k != "time_s"}
                for line in f]


def test_killed_and_resumed_run_writes_the_same_metrics(tmp_path, monkeypatch):
    """Evaluations every 3 steps, checkpoints every 2: killed just after the checkpoint of step 4, the run
    has summed the losses of step 4 for the evaluation at step 6; resumed, it writes the straight run's lines."""
    from gankernels.train import loop

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(_cfg("fgan", {}, 7, eval_every=3, ckpt_every=2), str(straight), progress=False, use_matplotlib=False)
    save = loop.save_checkpoint

    def save_then_die(path, cfg, recipe, step, *args):
        save(path, cfg, recipe, step, *args)
        if step == 4:
            raise _Killed

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        train(_cfg("fgan", {}, 7, eval_every=3, ckpt_every=2), str(killed), progress=False, use_matplotlib=False)
    monkeypatch.undo()
    assert [r["step"] for r in _metric_rows(killed)] == [3] and _weights(killed)[0] == 4
    resume(str(killed), progress=False, use_matplotlib=False)
    assert [r["step"] for r in _metric_rows(straight)] == [3, 6, 7]
    assert _metric_rows(killed) == _metric_rows(straight)
    for name in ("samples.npy", "samples/step_0000006.png", "samples/step_0000007.png", "config.json"):
        assert (killed / name).read_bytes() == (straight / name).read_bytes(), name


def _strict_json(line):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(line, parse_constant=refuse)


def test_metrics_are_strict_json(tmp_path, monkeypatch, capsys):
    """NaN and +-infinity are written as null (metrics.jsonl and the JSON printed by train / sample)."""
    from gankernels.train import loop

    evaluate = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: {**evaluate(*a, **k), "kl": math.nan, "kid": math.inf,
                                                           "mmd2": -math.inf})
    out = tmp_path / "run"
    assert cli_main(_tiny_train(out, "--steps", "2", "--eval-every", "1")) == 0
    printed = _strict_json(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["step"] == 2 and printed["kid"] is None
    rows = [_strict_json(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["kl"] is None and r["kid"] is None and r["mmd2"] is None for r in rows)
    assert cli_main(["train", "--resume", "--steps", "3", "--out", str(out), "--quiet"]) == 0   # reads nulls back
    assert [_strict_json(line)["step"] for line in open(out / "metrics.jsonl")] == [1, 2, 3]
    assert "| n/a |" in (out / "report.md").read_text()
    capsys.readouterr()
    assert cli_main(["sample", "--run", str(out), "--n", "50"]) == 0
    assert _strict_json(capsys.readouterr().out.strip().splitlines()[0])["kid"] is None


def test_more_cli_errors_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    train(_cfg("flow-gan", {}, 1), str(run), progress=False, use_matplotlib=False)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    same = _save(tmp_path / "same.npy", np.ones((50, 2), np.float32))
    (tmp_path / "pickled").mkdir()
    torch.save({"format": "gankernels.train/2", "net": torch.nn.Linear(2, 2)}, tmp_path / "pickled" / "checkpoint.pt")
    refine = ["sample", "--run", str(run), "--n", "50", "--refine", "kernel-langevin"]
    cases = [
        (_tiny_train(a_file), ["--out", "is a file"]),
        (["train", "--resume", "--out", str(a_file)], ["is a file"]),
        (["train", "--recipe", "flow-gan", "--data", same, "--out", str(tmp_path / "new")], ["rows are equal"]),
        (refine + ["--refine-steps", "-1"], ["--refine-steps", "-1"]),
        (refine + ["--refine-step-size", "0"], ["--refine-step-size", "0.0"]),
        (refine + ["--refine-temperature", "-1"], ["--refine-temperature", "-1.0"]),
        (["sample", "--run", str(run), "--n", "50", "--save", str(tmp_path / "missing" / "x.npy")],
         ["--save", "does not exist"]),
        (["sample", "--run", str(tmp_path / "pickled")], ["pickled Python objects besides tensors", "--out"]),
        (["train", "--resume", "--out", str(tmp_path / "pickled")], ["pickled Python objects besides tensors"]),
    ]
    before = _snapshot(tmp_path)
    for argv, words in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cli_main(argv) == 2, argv
        _one_error(capsys, argv[0], *words)
        assert not [w for w in caught if "torch" in w.filename], [str(w.message)[:100] for w in caught]
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "new").exists() and not (tmp_path / "missing").exists()


# ------------------------------------------------------------------ the trainer trains what it advertises

def _recipe(recipe, options, data="ring8", batch=64, hidden=32):
    from gankernels.train.loop import build
    from gankernels.train.recipes import Context

    data = load_data(data)
    r = build(_cfg(recipe, options, 1), data)
    return r, Context(data, batch, 4, torch.Generator().manual_seed(0), torch.device("cpu"))


def test_fgan_penalty_keeps_the_kl_critic_finite():
    """Real and fake batches far apart (no overlap): unregularised, the kl critic's exp conjugate runs away
    (its loss heads to -inf, as in the issue's 3.3e5); with the default penalty the critic stays bounded."""
    torch.manual_seed(0)
    real = torch.randn(128, 2) * 0.01 + torch.tensor([1.0, 0.0])
    fake = torch.randn(128, 2) * 0.01 + torch.tensor([-1.0, 0.0])
    reach = {}
    for gp in (0.0, None):
        r, _ = _recipe("fgan", {"divergence": "kl", "gp": gp})
        for _ in range(300):
            if r.opts["gp"] > 0:
                (vr, vf), pen = L.critic_gradient_penalty(r.V, real, fake)
                loss = L.fgan_critic_loss(vr, vf, r.div) + 0.5 * r.opts["gp"] * pen
            else:
                loss = L.fgan_critic_loss(r.V(real), r.V(fake), r.div)
            r.update("D", loss)
        with torch.no_grad():
            reach[gp] = float(r.V(real).abs().max().clamp_min(r.V(fake).abs().max()))
    assert reach[0.0] > 20 and reach[None] < 10, reach


def test_critic_gradient_penalty_of_a_linear_critic():
    a = torch.tensor([3.0, 4.0], dtype=F64, requires_grad=True)
    real, fake = torch.randn(5, 2, dtype=F64), torch.randn(7, 2, dtype=F64)
    (vr, vf), pen = L.critic_gradient_penalty(lambda x: x @ a, real, fake)
    torch.testing.assert_close(vr, real @ a.detach())
    torch.testing.assert_close(vf, fake @ a.detach())
    torch.testing.assert_close(pen, torch.tensor(50.0, dtype=F64))   # |a|^2 on each side
    pen.backward()
    torch.testing.assert_close(a.grad, 4 * a.detach())


@pytest.mark.parametrize("name", sorted(F_GENERATORS))
def test_fgan_every_divergence_trains_without_overflow_or_freeze(name):
    """Smoke test of the defaults (the full 3,000-step check is bench/train_quality.py): 150 steps at batch
    128, finite losses, the critic still learning (its loss not stuck) and the generator still moving."""
    r, ctx = _recipe("fgan", {"divergence": name}, batch=128)
    z = torch.randn(256, 4, generator=torch.Generator().manual_seed(1))
    before = r.generate(z)
    seen_d = []
    for _ in range(150):
        logs = r.step(ctx)
        assert all(math.isfinite(v) and abs(v) < 1e6 for v in logs.values()), logs
        seen_d.append(logs["loss_d"])
    assert max(seen_d[-20:]) - min(seen_d[-20:]) > 1e-6, seen_d[-20:]    # tv froze at loss_d = 0 exactly
    fake = r.G(ctx.noise())
    (grad,) = torch.autograd.grad(L.fgan_generator_loss(r.V(fake), r.div), fake)
    assert grad.abs().max() > 1e-8                                         # the generator still gets a signal
    assert (r.generate(z) - before).abs().max() > 1e-3


def test_js_and_gan_are_one_objective_up_to_a_constant():
    """Documented, not a bug: D_GAN = 2 JS - log 4, so their f-GAN losses differ by constants only."""
    v = torch.randn(50, dtype=F64)
    js, gan = L.DIVERGENCES["js"], L.DIVERGENCES["gan"]
    d = L.fgan_critic_loss(v[:25], v[25:], js) - L.fgan_critic_loss(v[:25], v[25:], gan)
    torch.testing.assert_close(d, torch.tensor(-math.log(4), dtype=F64))


def test_d_steps_per_recipe_and_recorded_in_the_report(tmp_path):
    calls = {}
    for recipe, default in (("fgan", 1), ("wgan-gp", 5), ("mmd-gan", 1), ("ebgan", 1), ("alpha-gan", 1)):
        for given in (None, 3):
            r, ctx = _recipe(recipe, {"d_steps": given} if given else {})
            count = [0]
            inner = r.critic_step
            r.critic_step = lambda c, inner=inner: (count.__setitem__(0, count[0] + 1), inner(c))[1]
            r.step(ctx)
            calls[recipe, given] = count[0]
            assert count[0] == (given or default), (recipe, given, count[0])
    r, _ = _recipe("wgan-gp", {})
    assert r.betas == (0.5, 0.9) and r.lr == 1e-4             # Gulrajani et al.'s lr; betas: README
    assert _recipe("fgan", {"divergence": "pearson"})[0].lr == 2e-4 and _recipe("fgan", {})[0].lr == 1e-3
    with pytest.raises(ConfigError, match="--d-steps: not an option of recipe 'flow-gan'"):
        _recipe("flow-gan", {"d_steps": 2})
    out = tmp_path / "run"
    train(_cfg("wgan-gp", {"d_steps": 2}, 1), str(out), progress=False, use_matplotlib=False)
    report = (out / "report.md").read_text()
    assert "## Training settings" in report and "| d_steps | 2 |" in report and "| betas | [0.5, 0.9] |" in report
    assert "Gulrajani" in report and "| lr | 0.0001 |" in report


def test_removed_flags_are_one_line_errors(tmp_path, capsys):
    for flag, words in (("--eta", ["--eta is gone", "--lr"]), ("--n-critic", ["--d-steps"])):
        argv = _tiny_train(tmp_path / "run", flag, "2")
        assert cli_main(argv) == 2
        _one_error(capsys, "train", *words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq", "energy", "polyharmonic1"])
def test_flow_gan_kernels_pull_toward_the_data(kernel):
    """Data in a small cluster at the origin, samples on rings of radius 0.05 ... 3 around it: every
    sample's drift points toward the data (positive projection on -x)."""
    r, ctx = _recipe("flow-gan", {"kernel": kernel})
    real = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 0.01
    ang = torch.arange(16) * (2 * math.pi / 16)
    fake = torch.cat([rad * torch.stack([ang.cos(), ang.sin()], 1) for rad in (0.05, 0.2, 0.6, 1.0, 3.0)])
    ctx.batch = 64
    toward = -(r.drift(ctx, real, fake[:64]) * fake[:64]).sum(1)
    toward = torch.cat([toward, -(r.drift(ctx, real, fake[64:]) * fake[64:]).sum(1)])
    assert (toward > 0).all(), (kernel, toward.min())


def test_flow_sign_is_what_makes_polyharmonic_pull():
    from gankernels.train.recipes import flow_sign

    real, x = torch.zeros(8, 2), torch.tensor([[1.0, 0.0]] * 8)
    w = torch.cat([torch.full((8,), 1 / 8), torch.full((8,), -1 / 8)])
    raw = gk.kernel_flow(x, torch.cat([real, x]), gk.Polyharmonic(1), w)
    assert (raw[:, 0] > 0).all()                                  # unsigned: pushed away from the data at 0
    assert flow_sign(gk.Polyharmonic(1)) == -1 and flow_sign(gk.Energy()) == 1
    torch.testing.assert_close(-raw, gk.kernel_flow(x, torch.cat([real, x]), gk.Energy(), w))
    with pytest.raises(ConfigError, match="monotone"):
        flow_sign(gk.Polyharmonic(2))


@pytest.mark.skipif(not _has("smoothed_score"), reason="gk.smoothed_score not merged yet")
def test_score_gan_leaves_each_sample_out_of_its_own_density():
    from gankernels.train.recipes import ScoreGAN

    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [1.0, 0.1]], dtype=F64)
    s = 0.05
    out = ScoreGAN.sample_score(gk.smoothed_score, x, s)
    torch.testing.assert_close(out[0::2], gk.smoothed_score(x[0::2], x[1::2], s))
    torch.testing.assert_close(out[1::2], gk.smoothed_score(x[1::2], x[0::2], s))
    with_self = gk.smoothed_score(x, x, s)
    # at sigma 0.05 a point's own weight (exp 0 = 1) swamps its neighbour's (exp(-2) for 0.1 apart):
    # with itself counted the score toward the neighbour is 88 % smaller
    assert (with_self[0] @ (x[1] - x[0])) < 0.2 * (out[0] @ (x[1] - x[0]))
    assert (out[0] @ (x[1] - x[0])) > 0 and (out[1] @ (x[0] - x[1])) > 0


def test_kid_of_point_data_is_scale_free(tmp_path):
    """KID of non-image data is computed on standardised features: scaling data and samples by 100 changes
    nothing (the raw cubic kernel's KID would grow ~1e12-fold)."""
    from gankernels.train.metrics import evaluate

    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 2)).astype(np.float32)
    sam = torch.from_numpy(rng.normal(size=(100, 2)).astype(np.float32) * 1.3 + 0.2)
    a, b = load_data(_save(tmp_path / "a.npy", base)), load_data(_save(tmp_path / "b.npy", 100 * base))
    ka, kb = evaluate(a, sam)["kid"], evaluate(b, 100 * sam)["kid"]
    assert ka > 1e-3 and kb == pytest.approx(ka, rel=1e-3)
    assert abs(float(gk.kid(b.held_out, 100 * sam)[0])) > 1e6 * ka  # what raw KID would say


def test_refine_is_langevin_by_default_with_moving_centres(tmp_path, monkeypatch):
    from gankernels.train import loop

    out = str(tmp_path / "run")
    train(_cfg("flow-gan", {}, 1), out, progress=False, use_matplotlib=False)
    assert loop.REFINE_TEMPERATURE > 0
    seen = []
    real_fn = gk.kernel_langevin

    def spy(x, centers, kernel, weights, step_size, steps, temperature, generator=None):
        seen.append((torch.equal(centers[x.shape[0]:], x), steps, temperature))
        return real_fn(x, centers, kernel, weights, step_size, steps, temperature, generator=generator)

    monkeypatch.setattr(gk, "kernel_langevin", spy)
    hot = sample(out, n=60, refine="kernel-langevin", steps=4)
    assert seen == [(True, 1, loop.REFINE_TEMPERATURE)] * 4       # 4 steps, the fake centres = current samples
    cold = sample(out, n=60, refine="kernel-langevin", steps=4, temperature=0.0)
    cold2 = sample(out, n=60, refine="kernel-langevin", steps=4, temperature=0.0, seed=0)
    torch.testing.assert_close(cold["refined"], cold2["refined"])
    assert not torch.allclose(hot["refined"], cold["refined"])           # the default adds noise
