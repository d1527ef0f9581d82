"""The EBGAN pulling-away term (docs/MATH.md §4): gankernels.pulling_away on the CPU (C++).

Oracle: ``reference.pulling_away`` in float64 on the dtype-rounded input (it builds
the N x N matrix of squared cosine similarities and drops the diagonal); gradients
by autograd through it.

Tolerances (the accuracy rule of conftest.assert_accurate), per algorithm:
* float64: |error| <= 1e-10 * scale;
* float32 / float16 / bfloat16: |error| <= 2 * (error of the same reference run in
  that dtype) + ATOL_REL[dtype] * scale, ATOL_REL = 1e-6 (fp32), 2 ulps (fp16, bf16).
``scale`` is the magnitude of the summed terms, diagonal included, because the
covariance form subtracts the diagonal term from them:
* value:    sum_{i,j} (sh_i . sh_j)^2 / (N (N - 1))                     (= |G|_F^2 / (N (N - 1)))
* gradient: max_{i,d} 4 / (N (N - 1)) inv_i sum_j |sh_i . sh_j| |sh_jd|  (j = i included)
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref
from gankernels.pulling_away import choose_algorithm
from conftest import assert_accurate, dtype_id, make_input

ops = torch.ops.gankernels
ALGORITHMS = ["gram", "covariance"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
F64 = torch.float64


def _value_and_grad(fn, s):
    s = s.detach().clone().requires_grad_(True)
    value = fn(s)
    (grad,) = torch.autograd.grad(value, s)
    return value.detach(), grad


def _scales(s, eps=1e-8):
    """(value scale, gradient scale) of the module docstring, in float64."""
    s = s.detach().double()
    n = s.shape[0]
    inv = 1.0 / torch.linalg.vector_norm(s, dim=1, keepdim=True).clamp_min(eps)
    sh = s * inv
    p = (sh @ sh.T).abs()
    value = float((p * p).sum()) / (n * (n - 1))
    grad = float((4.0 / (n * (n - 1)) * inv * (p @ sh.abs())).max())
    return value, grad


def _check(s, algorithm, eps=1e-8, what=""):
    """Value and gradient of gk.pulling_away against the float64 oracle, by the accuracy rule."""
    dtype = s.dtype
    v, g = _value_and_grad(lambda t: gk.pulling_away(t, eps, algorithm), s)
    v64, g64 = _value_and_grad(lambda t: ref.pulling_away(t, eps), s.double())
    vn, gn = (v64, g64) if dtype == F64 else _value_and_grad(lambda t: ref.pulling_away(t, eps), s)
    sv, sg = _scales(s, eps)
    assert_accurate(v, v64, vn, dtype, sv, f"{what} value")
    assert_accurate(g, g64, gn, dtype, sg, f"{what} grad")


# ----------------------------------------------------------------------------- accuracy

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("d", [1, 3, 300])
@pytest.mark.parametrize("n", [2, 3, 127, 1023])
def test_matches_reference(n, d, algorithm, dtype):
    """Both algorithms on odd shapes (N < D and N > D), every dtype."""
    layout = "T" if (n + d) % 2 else "C"  # half of the cases non-contiguous
    s = make_input(n, d, dtype, layout=layout, seed=n + d, shift=0.3 if d == 3 else 0.0)
    _check(s, algorithm, what=f"N={n} D={d} {algorithm} {dtype_id(dtype)}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_multiple_tiles_and_blocks(algorithm):
    """Shapes that span several Gram tiles (128) and covariance row blocks (256) with ragged ends."""
    s = make_input(600, 17, F64, layout="S", seed=3, shift=0.2)
    _check(s, algorithm, what=algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_short_and_zero_rows(algorithm):
    """Rows shorter than eps are scaled by 1/eps, zero rows contribute 0 with gradient exactly 0."""
    s = make_input(9, 4, F64, seed=4)
    s[2] = 0.0
    s[5] *= 0.01  # |s_5| < eps = 0.1
    _check(s, algorithm, eps=0.1, what=algorithm)
    _, g = _value_and_grad(lambda t: gk.pulling_away(t, 0.1, algorithm), s)
    assert torch.equal(g[2], torch.zeros(4, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_zero_row_default_eps(algorithm, dtype):
    """A zero row with the default eps: finite value and gradient, equal to the oracle.

    In float16 the naive reference gives NaN (eps = 1e-8 rounds to 0 in float16, and 0 / 0);
    the op handles eps in its fp32 accumulation, so it is compared with the float64 oracle
    directly, within 2 float16 ulps of the scales.
    """
    s = make_input(6, 5, dtype, seed=5)
    s[1] = 0.0
    v, g = _value_and_grad(lambda t: gk.pulling_away(t, algorithm=algorithm), s)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    assert not g[1].any()
    if dtype == torch.float16:
        assert torch.isnan(ref.pulling_away(s)), "the naive float16 formula was expected to give NaN"
        v64, g64 = _value_and_grad(ref.pulling_away, s.double())
        sv, sg = _scales(s)
        ulp = torch.finfo(torch.float16).eps
        assert abs(float(v) - float(v64)) <= 2 * ulp * sv
        assert float((g.double() - g64).abs().max()) <= 2 * ulp * sg
    else:
        _check(s, algorithm, what=algorithm)
    z = torch.zeros(4, 3, dtype=dtype)
    v, g = _value_and_grad(lambda t: gk.pulling_away(t, algorithm=algorithm), z)
    assert float(v) == 0.0 and not g.any()


def test_known_values():
    """Hand-computed: orthogonal rows give 0, parallel / antiparallel rows give 1, any scale."""
    eye = torch.eye(4, dtype=F64) * torch.tensor([[1.0], [3.0], [0.5], [7.0]], dtype=F64)
    par = torch.tensor([[1.0, 2.0], [-3.0, -6.0], [0.5, 1.0]], dtype=F64)
    for algorithm in ALGORITHMS:
        assert float(gk.pulling_away(eye, algorithm=algorithm)) == pytest.approx(0.0, abs=1e-15)
        assert float(gk.pulling_away(par, algorithm=algorithm)) == pytest.approx(1.0, rel=1e-14)
    # two rows at 60 degrees: cos^2 = 1/4
    two = torch.tensor([[2.0, 0.0], [0.5, 0.5 * math.sqrt(3.0)]], dtype=F64)
    for algorithm in ALGORITHMS:
        assert float(gk.pulling_away(two, algorithm=algorithm)) == pytest.approx(0.25, rel=1e-14)


def test_algorithms_agree_and_auto():
    assert choose_algorithm(1024, 64) == "covariance"
    assert choose_algorithm(128, 64) == "covariance"
    assert choose_algorithm(127, 64) == "gram"
    assert choose_algorithm(3, 300) == "gram"
    for n, d in [(300, 20), (20, 300)]:
        s = make_input(n, d, torch.float32, seed=6)
        auto = gk.pulling_away(s)
        assert torch.equal(auto, gk.pulling_away(s, algorithm=choose_algorithm(n, d)))
        v64 = ref.pulling_away(s.double())
        for algorithm in ALGORITHMS:
            assert abs(float(gk.pulling_away(s, algorithm=algorithm)) - float(v64)) <= 1e-6 * float(v64)


def test_module():
    s = make_input(12, 5, torch.float32, seed=7).requires_grad_(True)
    loss = gk.nn.PullingAwayLoss(eps=1e-6, algorithm="gram")
    assert "gram" in repr(loss)
    torch.testing.assert_close(loss(s), gk.pulling_away(s, 1e-6, "gram"), rtol=0, atol=0)
    assert gk.nn.PullingAwayLoss()(s).requires_grad


# ----------------------------------------------------------------------------- gradients, opcheck, compile

@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("n,d", [(2, 3), (5, 3), (4, 7), (7, 1)])
def test_gradcheck(n, d, algorithm):
    s = make_input(n, d, F64, seed=n * d).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: gk.pulling_away(t, 1e-8, algorithm), (s,))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_gradcheck_short_rows(algorithm):
    """Zero and shorter-than-eps rows are in the smooth s / eps branch: gradcheck holds there too."""
    s = make_input(5, 3, F64, seed=8)
    s[1] = 0.0
    s[3] *= 0.02
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: gk.pulling_away(t, 0.1, algorithm), (s,))


def test_no_double_backward():
    s = make_input(4, 3, F64, seed=9).requires_grad_(True)
    (g,) = torch.autograd.grad(gk.pulling_away(s), s, create_graph=True)
    with pytest.raises(NotImplementedError, match="first-order"):
        g.sum().backward()


_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("code", [0, 1], ids=ALGORITHMS)
def test_opcheck(code, dtype):
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else {}
    s = make_input(6, 4, dtype, seed=10).requires_grad_(True)
    torch.library.opcheck(ops.pulling_away.default, (s, 1e-8, code), test_utils=list(_UTILS), **tol)
    grad = torch.tensor(0.7, dtype=dtype)
    # the backward op is not differentiable (first order only): aot / fake / schema checks on inputs
    # without grad, and the autograd registration check on inputs that require it
    torch.library.opcheck(ops.pulling_away_backward.default, (grad, s.detach(), 1e-8, code),
                          test_utils=[u for u in _UTILS if u != "test_autograd_registration"], **tol)
    torch.library.opcheck(ops.pulling_away_backward.default, (grad.requires_grad_(True), s, 1e-8, code),
                          test_utils=["test_autograd_registration"], **tol)


def test_schemas():
    assert str(ops.pulling_away.default._schema) == (
        "gankernels::pulling_away(Tensor s, float eps, int algorithm) -> Tensor")
    assert str(ops.pulling_away_backward.default._schema) == (
        "gankernels::pulling_away_backward(Tensor grad, Tensor s, float eps, int algorithm) -> Tensor")


@pytest.mark.skipif(not hasattr(torch._dynamo.config, "trace_autograd_ops"),
                    reason="this torch cannot trace torch.autograd.grad")
@pytest.mark.parametrize("n", [40, 6], ids=["covariance", "gram"])
def test_compile_training_step(n):
    """An EBGAN generator step (codes -> PT -> autograd.grad of the parameters) in one fullgraph compile."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    enc = torch.nn.Linear(5, 8)
    params = list(enc.parameters())

    def step(x):
        loss = gk.pulling_away(torch.tanh(enc(x)))
        return loss.detach(), torch.autograd.grad(loss, params)

    x = make_input(n, 5, torch.float32, seed=11)
    expected = step(x)
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        got = torch.compile(step, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got, expected)


def test_compile_inductor_module():
    torch._dynamo.reset()
    loss_fn = gk.nn.PullingAwayLoss()

    def run(fn):
        s = make_input(33, 6, torch.float32, seed=12).requires_grad_(True)
        v = fn(s * 2.0)
        v.backward()
        return v.detach(), s.grad

    expected = run(loss_fn)
    got = run(torch.compile(loss_fn, fullgraph=True))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- errors, NaN, determinism

@pytest.mark.parametrize("bad,exc", [
    (torch.zeros(1, 3), ValueError),             # N < 2
    (torch.zeros(5), ValueError),                # 1-D
    (torch.zeros(2, 3, 4), ValueError),          # 3-D
    (torch.zeros(4, 0), ValueError),             # empty
    (torch.zeros(0, 3), ValueError),
    (torch.ones(4, 3, dtype=torch.int64), TypeError),
    (torch.ones(4, 3, dtype=torch.bool), TypeError),
    (torch.ones(4, 3, dtype=torch.complex64), TypeError),
    ([[1.0, 2.0], [3.0, 4.0]], TypeError),
])
def test_bad_input(bad, exc):
    with pytest.raises(exc, match=r"\bs\b"):
        gk.pulling_away(bad)
    with pytest.raises(exc, match=r"\bs\b"):
        gk.nn.PullingAwayLoss()(bad)


@pytest.mark.parametrize("eps,exc", [(0.0, ValueError), (-1e-8, ValueError), (float("nan"), ValueError),
                                     (float("inf"), ValueError), ("1e-8", TypeError), (None, TypeError),
                                     (True, TypeError)])
def test_bad_eps(eps, exc):
    s = torch.randn(4, 3)
    with pytest.raises(exc, match="eps"):
        gk.pulling_away(s, eps)
    with pytest.raises(exc, match="eps"):
        gk.nn.PullingAwayLoss(eps)


@pytest.mark.parametrize("algorithm", ["Gram", "cov", "", None, 0])
def test_bad_algorithm(algorithm):
    with pytest.raises(ValueError, match="algorithm"):
        gk.pulling_away(torch.randn(4, 3), algorithm=algorithm)
    with pytest.raises(ValueError, match="algorithm"):
        gk.nn.PullingAwayLoss(algorithm=algorithm)


def test_op_level_checks():
    """The registered ops check their own arguments (for direct callers)."""
    s = torch.randn(4, 3)
    for args, exc, word in [((torch.randn(1, 3), 1e-8, 0), ValueError, "rows"),
                            ((torch.randn(4), 1e-8, 0), ValueError, "2-D"),
                            ((torch.ones(4, 3, dtype=torch.int32), 1e-8, 0), TypeError, "floating"),
                            ((s, 0.0, 0), ValueError, "eps"),
                            ((s, 1e-8, 2), ValueError, "algorithm")]:
        with pytest.raises(exc, match=word):
            ops.pulling_away(*args)
        with pytest.raises(exc, match=word):
            ops.pulling_away_backward(torch.tensor(1.0), *args)
    with pytest.raises(ValueError, match="grad"):
        ops.pulling_away_backward(torch.ones(2), s, 1e-8, 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("poison", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nan_propagates(poison, algorithm, dtype):
    s = make_input(300, 7, dtype, seed=13)
    s[200, 3] = poison
    v, g = _value_and_grad(lambda t: gk.pulling_away(t, algorithm=algorithm), s)
    assert torch.isnan(v)
    assert torch.isnan(g).all()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_deterministic(algorithm):
    s = make_input(700, 40, torch.float32, seed=14)
    first = _value_and_grad(lambda t: gk.pulling_away(t, algorithm=algorithm), s)
    for _ in range(2):
        again = _value_and_grad(lambda t: gk.pulling_away(t, algorithm=algorithm), s)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


# ----------------------------------------------------------------------------- memory

_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import gankernels as gk

    def status_kib(key):  # VmRSS: resident now; VmHWM: peak resident of this process image
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

    def reset_peak():  # Linux >= 4.0: "5" resets VmHWM to the current RSS; else VmHWM is an upper bound
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    for algorithm in ("gram", "covariance"):  # load libraries and code paths once
        w = torch.randn(300, 200).requires_grad_(True)
        gk.pulling_away(w, algorithm=algorithm).backward()
    out = []
    for arg in sys.argv[1:]:
        n, d, algorithm = arg.split(":")
        s = torch.randn(int(n), int(d), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        reset_peak()
        base = status_kib("VmRSS")
        value = gk.pulling_away(s, algorithm=algorithm)
        value.backward()
        out.append({"n": int(n), "d": int(d), "algorithm": algorithm, "delta_kib": status_kib("VmHWM") - base,
                    "value": value.item(), "finite": bool(torch.isfinite(s.grad).all())})
        del s, value
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_peak_memory():
    """Forward + backward stays O(N D + D^2), far below one N x N fp32 matrix (256 MiB at N = 8192,
    16 GiB at N = 65536): the peak resident set (VmHWM, reset before each case) minus the
    resident set before the call.  (Not ru_maxrss: Linux carries it over from the parent
    process across fork and exec.)"""
    cases = [(8192, 16, "gram"), (65536, 32, "covariance")]
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT] + [f"{n}:{d}:{a}" for n, d, a in cases],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for res in json.loads(proc.stdout.strip().splitlines()[-1]):
        print(res)
        n, d = res["n"], res["d"]
        limit = 6 * n * d * 4 + (16 << 20)  # the gradient, Sh, H, casts: a few N x D buffers
        assert limit < n * n * 4 / 8
        assert res["finite"] and math.isfinite(res["value"]), res
        assert res["delta_kib"] * 1024 < limit, (res, limit)
