"""Tests of the Triton smoothed-score kernels (gankernels/triton_score.py) against float64 torch oracles
(tests/triton_oracles.py).

Run on CPU with the interpreter:
    TRITON_INTERPRET=1 python -m pytest -q -m triton tests/test_triton_score.py
"""
import pytest
import torch

from triton_oracles import (
    REL, SIZES, _check, _err, _inputs, _o64, _rand, _scale, _weights, o_score, o_score_grads, DEVICE, F64, F32, F16, BF16,
    INTERPRETING, require_triton,
)

require_triton()

from gankernels import triton_langevin as tlg  # noqa: E402
from gankernels import triton_score as ts  # noqa: E402

pytestmark = pytest.mark.triton


@pytest.mark.parametrize("d", [1, 3, 17])
@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("n", SIZES)
def test_score_float64(n, m, d):
    sigma = 0.45
    for weighted in (False, True):
        x, y, w = _inputs(n, m, d, F64, weighted, seed=n + m + d)
        score, lse = ts.smoothed_score(x, y, w, sigma)
        ref, ref_lse = o_score(_o64(x), _o64(y), sigma, _o64(w))
        _check(score, ref, F64, f"score w={weighted}")
        _check(lse, ref_lse, F64, f"lse w={weighted}")


@pytest.mark.parametrize("dtype", [F32, F16, BF16], ids=["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("n,m,d", [(1, 37, 3), (37, 3, 17), (37, 37, 1)])
def test_score_low_precision(n, m, d, dtype):
    sigma = 0.45
    x, y, w = _inputs(n, m, d, dtype, weighted=True, seed=3)
    try:
        score, lse = ts.smoothed_score(x, y, w, sigma)
    except Exception as e:  # pragma: no cover - interpreter dtype support varies
        if INTERPRETING and dtype in (F16, BF16):
            pytest.skip(f"{dtype} not supported by this interpreter: {e}")
        raise
    ref, ref_lse = o_score(_o64(x), _o64(y), sigma, _o64(w))  # oracle on the rounded inputs
    _check(score, ref, dtype, "score")
    _check(lse, ref_lse, F32, "lse", rel=REL[F32])


def test_score_noncontiguous_and_shifted():
    """Transposed / strided inputs; data far from the origin (the kernel works relative to the centres' mean)."""
    base = _rand(5, 37, seed=4, shift=100.0)
    x = base.T[:, :3]                       # [37, 3], strides (1, 37)
    y = _rand(17, 6, seed=5, shift=100.0)[:, ::2]  # column stride 2
    w = _weights(34, 6)[::2]
    score, _ = ts.smoothed_score(x, y, w, 0.8)
    _check(score, o_score(_o64(x), _o64(y), 0.8, _o64(w))[0], F64, "score")


def test_zero_weights_remove_centres():
    x, y, w = _inputs(17, 37, 3, F64, weighted=True, seed=7)
    w0 = w.clone()
    w0[20:] = 0
    a, la = ts.smoothed_score(x, y, w0, 0.5)
    b, lb = ts.smoothed_score(x, y[:20], w[:20], 0.5)
    assert _err(a, b) <= 1e-12 * _scale(b) and _err(la, lb) <= 1e-12 * _scale(lb)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_far_queries_follow_the_nearest_centre(dtype):
    """1000 sigma from every centre a plain exp-normalise gives 0 / 0; the score is the nearest centre's."""
    sigma = 0.1
    y = _rand(37, 3, seed=8, dtype=dtype)
    x = torch.tensor([[100.0, 0.0, 0.0], [0.0, -100.0, 40.0], [30.0, 30.0, -30.0]], dtype=dtype, device=DEVICE)
    score, lse = ts.smoothed_score(x, y, None, sigma)
    nearest = y.double()[torch.cdist(x.double(), y.double()).argmin(1)]
    expect = (nearest - x.double()) / sigma ** 2
    assert torch.isfinite(score).all() and torch.isfinite(lse).all()
    rel = 1e-12 if dtype == F64 else 1e-5
    assert _err(score, expect) <= rel * _scale(expect)
    g = _rand(3, 3, seed=9, dtype=dtype)
    grads = ts.smoothed_score_backward(g, x, y, None, sigma, score, lse, [True, True, False])
    assert all(torch.isfinite(t).all() for t in grads)


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered")  # numpy, inside the interpreter's tl.max
def test_nan_propagates_per_row():
    x, y, w = _inputs(37, 17, 3, F32, weighted=True, seed=10)
    x[5, 1] = float("nan")
    score, lse = ts.smoothed_score(x, y, w, 0.5)
    rest = torch.arange(37, device=DEVICE) != 5
    assert torch.isnan(score[5]).all() and torch.isnan(lse[5])
    assert torch.isfinite(score[rest]).all() and torch.isfinite(lse[rest]).all()
    g = torch.ones_like(x)
    gx, gy, gw = ts.smoothed_score_backward(g, x, y, w, 0.5, score, lse, [True, True, True])
    assert torch.isnan(gx[5]).all() and torch.isfinite(gx[rest]).all()
    assert torch.isnan(gy).any() and torch.isnan(gw).any()  # every centre sees the NaN row
    y[7, 0] = float("nan")
    assert torch.isnan(ts.smoothed_score(x, y, w, 0.5)[0]).all()


# ----------------------------------------------------------------------------
# smoothed_score: gradients
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("n,m,d", [(1, 1, 1), (3, 37, 17), (37, 3, 3), (37, 37, 1)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_backward_float64(n, m, d, weighted):
    sigma = 0.6
    x, y, w = _inputs(n, m, d, F64, weighted, seed=11 + n + d)
    g = _rand(n, d, seed=12)
    score, lse = ts.smoothed_score(x, y, w, sigma)
    got = ts.smoothed_score_backward(g, x, y, w, sigma, score, lse, [True, True, True])
    ref = o_score_grads(g.cpu(), x.cpu(), y.cpu(), sigma, _o64(w))
    for name, a, b in zip(("gx", "gy", "gw"), got, ref):
        _check(a, b, F64, name, floor=_scale(ref[0]))
    if not weighted:
        assert got[2].shape == (0,)


def test_backward_float32_noncontiguous_and_masks():
    sigma = 0.5
    x = _rand(3, 37, seed=13, dtype=F32).T        # [37, 3] transposed view
    y = _rand(17, 6, seed=14, shift=0.3, dtype=F32)[:, ::2]
    w = _weights(17, 15, F32)
    g = _rand(37, 6, seed=16, dtype=F32)[:, 1::2]
    score, lse = ts.smoothed_score(x, y, w, sigma)
    ref = o_score_grads(g.cpu(), x.cpu(), y.cpu(), sigma, _o64(w))
    got = ts.smoothed_score_backward(g, x, y, w, sigma, score, lse, [True, True, True])
    for name, a, b in zip(("gx", "gy", "gw"), got, ref):
        _check(a, b, F32, name, rel=2e-4, floor=_scale(ref[0]))
    for k in range(3):  # each output alone; the others are zeros
        mask = [i == k for i in range(3)]
        part = ts.smoothed_score_backward(g, x, y, w, sigma, score, lse, mask)
        assert torch.equal(part[k], got[k])
        assert all(not part[i].any() for i in range(3) if i != k)


def test_backward_zero_weight_gradient():
    """d score / d w_j at w_j = 0 is finite and non-zero (computed without dividing by w_j)."""
    x, y, w = _inputs(17, 37, 3, F64, weighted=True, seed=17)
    w[::3] = 0
    g = _rand(17, 3, seed=18)
    score, lse = ts.smoothed_score(x, y, w, 0.5)
    gx, gy, gw = ts.smoothed_score_backward(g, x, y, w, 0.5, score, lse, [True, True, True])
    ref = o_score_grads(g.cpu(), x.cpu(), y.cpu(), 0.5, _o64(w))
    for name, a, b in zip(("gx", "gy", "gw"), (gx, gy, gw), ref):
        _check(a, b, F64, name, floor=_scale(ref[0]))
    assert gw[::3].abs().min() > 0 and not gy[::3].any()


def test_deterministic():
    x, y, w = _inputs(37, 37, 3, F32, weighted=True, seed=19)
    g = _rand(37, 3, seed=20, dtype=F32)
    first = ts.smoothed_score(x, y, w, 0.5)
    again = ts.smoothed_score(x, y, w, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    b1 = ts.smoothed_score_backward(g, x, y, w, 0.5, *first, [True, True, True])
    b2 = ts.smoothed_score_backward(g, x, y, w, 0.5, *first, [True, True, True])
    assert all(torch.equal(a, b) for a, b in zip(b1, b2))


# ----------------------------------------------------------------------------
# errors, registration
# ----------------------------------------------------------------------------
def _err_cases():
    x, y = torch.zeros(4, 3, device=DEVICE), torch.zeros(5, 3, device=DEVICE)
    w = torch.ones(5, device=DEVICE)
    return [
        (lambda: ts.smoothed_score(x, y[:, :2], None, 1.0), ValueError, "dimension"),
        (lambda: ts.smoothed_score(x, y.double(), None, 1.0), TypeError, "dtype"),
        (lambda: ts.smoothed_score(x[:0], y, None, 1.0), ValueError, "non-empty"),
        (lambda: ts.smoothed_score(x.long(), y.long(), None, 1.0), TypeError, "floating"),
        (lambda: ts.smoothed_score(x, y, None, 0.0), ValueError, "sigma"),
        (lambda: ts.smoothed_score(x, y, w[:4], 1.0), ValueError, "weights"),
        (lambda: ts.smoothed_score_backward(x[:3], x, y, None, 1.0, x, x[:, 0], [True] * 3), ValueError, "grad"),
        (lambda: tlg.langevin_step(x, y, 0.1, 1.0, 0), ValueError, "shape"),
        (lambda: tlg.langevin_step(x, x, -0.1, 1.0, 0), ValueError, "step_size"),
        (lambda: tlg.langevin_step(x, x, 0.1, float("nan"), 0), ValueError, "temperature"),
        (lambda: tlg.kernel_langevin(x, y, w, 0, [1.0], 0.1, -1, 1.0, 0), ValueError, "steps"),
        (lambda: tlg.kernel_langevin(x, y, w, 42, [1.0], 0.1, 1, 1.0, 0), ValueError, "family"),
        (lambda: tlg.kde_langevin(x, y, [], 1, 0.1, 0), ValueError, "sigmas"),
        (lambda: tlg.kde_langevin(x, y, [1.0], 1, 0.0, 0), ValueError, "eps"),
    ]


@pytest.mark.parametrize("k", range(len(_err_cases())))
def test_errors(k):
    call, err, match = _err_cases()[k]
    with pytest.raises(err, match=match):
        call()





def test_package_registers_cuda_kernels():
    """Importing gankernels (with its C++ extension) registers these kernels for the CUDA key."""
    try:
        import gankernels  # noqa: F401
    except ImportError as e:  # pragma: no cover - extension not built
        pytest.skip(f"gankernels C++ extension not importable: {e}")
    for name in ("smoothed_score", "smoothed_score_backward", "langevin_step", "langevin_step_",
                 "kernel_langevin", "kde_langevin"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key("gankernels::" + name, "CUDA"), name
