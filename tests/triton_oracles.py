"""Float64 torch oracles and tolerances shared by tests/test_triton_score.py and test_triton_langevin.py,
and the setup of every Triton test module (``require_triton``, ``INTERPRETING``, ``DEVICE``).

The oracles materialise the N x M matrices from exact differences and take every gradient with
torch.autograd; they share no code with the kernels.
"""
import os

import pytest
import torch


INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")  # kernels run on CPU tensors
DEVICE = "cpu" if INTERPRETING else "cuda"


def require_triton() -> None:
    """Skips the calling test module unless triton imports and there is CUDA or TRITON_INTERPRET=1."""
    pytest.importorskip("triton")
    if not INTERPRETING and not torch.cuda.is_available():
        pytest.skip("Triton tests need CUDA or TRITON_INTERPRET=1", allow_module_level=True)
F64, F32, F16, BF16 = torch.float64, torch.float32, torch.float16, torch.bfloat16


# ----------------------------------------------------------------------------
# oracles (float64, autograd)
# ----------------------------------------------------------------------------
def o_score(x, y, sigma, w=None):
    """(score, lse): ratio form sum_j w_j e_ij (y_j - x_i) / sigma^2 / sum_j w_j e_ij, differentiable in x, y, w."""
    z = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    a = -z / (2 * sigma * sigma)
    amax = a.max(1, keepdim=True).values.detach()
    k = torch.exp(a - amax)
    if w is not None:
        k = k * w[None, :]
    den = k.sum(1, keepdim=True)
    ybar = (k @ y) / den
    return (ybar - x) / (sigma * sigma), (torch.log(den) + amax).squeeze(1)


def o_score_grads(g, x, y, sigma, w=None):
    """(gx, gy, gw) of L = sum g * score."""
    leaves = [t.detach().double().requires_grad_(True) for t in (x, y)]
    if w is not None:
        leaves.append(w.detach().double().requires_grad_(True))
    s, _ = o_score(*leaves[:2], sigma, leaves[2] if w is not None else None)
    return torch.autograd.grad((s * g.double()).sum(), leaves)


def o_flow(x, c, w, k):
    """sum_j w_j grad_1 k(x_i, c_j) by autograd; k maps (x [N, D], c [M, D]) to the Gram matrix."""
    xg = x.detach().double().requires_grad_(True)
    (f,) = torch.autograd.grad((k(xg, c.double()) * w.double()[None, :]).sum(), xg)
    return f


def _gauss(sigmas):
    return lambda a, b: sum(torch.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * s * s)) for s in sigmas)


def _imq(beta, c):
    return lambda a, b: (c * c + ((a[:, None] - b[None]) ** 2).sum(-1)) ** beta


def _poly(n, gamma, c0):
    return lambda a, b: (gamma * (a @ b.T) + c0) ** n


# (family code, params as encoded by gankernels/kernels.py, oracle Gram function)
FLOW_CASES = {
    "gaussian": (0, [0.5, 2.0], _gauss([0.5, 2.0])),
    "imq": (2, [-0.5, 1.0], _imq(-0.5, 1.0)),
    "polynomial": (6, [2.0, 0.5, 1.0], _poly(2, 0.5, 1.0)),
}


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def _rand(*shape, seed, scale=1.0, shift=0.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=F64) * scale + shift).to(dtype).to(DEVICE)


def _weights(m, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(m, generator=g, dtype=F64) + 0.05).to(dtype).to(DEVICE)


def _err(got, ref):
    return float((got.detach().cpu().double() - ref.detach().cpu().double()).abs().max())


def _scale(ref):
    return max(float(ref.detach().abs().max()), 1e-30)


# float64: 1e-10 of the output scale; float32: 2e-5; half: about 4 roundings of the output (computed in fp32).
REL = {F64: 1e-10, F32: 2e-5, F16: 2e-3, BF16: 1.6e-2}


def _check(got, ref, dtype, what, rel=None, floor=0.0):
    """max |got - ref| <= rel * max(|ref|_max, floor) (floor: the scale of an output that may be ~0)."""
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
    assert torch.isfinite(got.cpu()).all(), f"{what}: non-finite output"
    bound = (rel or REL[dtype]) * max(_scale(ref), floor)
    assert _err(got, ref) <= bound, f"{what}: max error {_err(got, ref):.3e} > {bound:.3e}"


def _inputs(n, m, d, dtype, weighted, seed=0):
    x = _rand(n, d, seed=seed, scale=d ** -0.5, dtype=dtype)
    y = _rand(m, d, seed=seed + 1, scale=d ** -0.5, shift=0.3, dtype=dtype)
    return x, y, (_weights(m, seed + 2, dtype) if weighted else None)


def _o64(t):
    return None if t is None else t.detach().cpu().double()


# ----------------------------------------------------------------------------
# smoothed_score: values
# ----------------------------------------------------------------------------
SIZES = [1, 3, 37]


