"""The op registry of ``gankernels bench``: one small entry per fused op.

An entry (``OpSpec``) says how to build deterministic inputs, how to call the
fused op and each baseline on them, which inputs the bwd modes differentiate,
and the op's flop model.  Implementations:

* ``fused``        the gankernels op;
* ``eager``        the same math as common user code writes it: dense Gram blocks
                   from ``torch.cdist(a, b) ** 2`` (``a @ b.T`` for dot-product
                   kernels) and the kernel profiles of ``gankernels.reference``;
                   flow fields by autograd of the kernel sum; the eager smoothed
                   score, KID and Langevin loops of ``gankernels.reference`` or below
                   (the name is kept from before the expansion variant existed:
                   ``eager`` is the cdist variant, reports call it "cdist");
* ``eager-expansion``  the same code with the squared distances written as the
                   expansion ``(|a|^2 + |b|^2 - 2 a.b).clamp_min(0)`` (the other
                   formula MMD-GAN code uses), for every op that forms a distance
                   matrix (mmd2, kernel_sum, kernel_flow, witness, smoothed_score,
                   kernel_langevin, kde_langevin) with a radial kernel;
* ``compile``, ``compile-expansion``  ``torch.compile`` of ``eager`` / ``eager-expansion``
                   (compile time reported apart).  Reports compare the fused op with
                   the faster of the two variants of each case ("vs best eager");
* ``keops``        ``pykeops`` LazyTensor formulas (Gaussian kernels; the smoothed
                   score by ``sumsoftmaxweight``), when pykeops is installed;
* ``geomloss``     ``geomloss.SamplesLoss("gaussian")`` summed over the bandwidths
                   (mmd2 with a Gaussian kernel), when geomloss is installed;
* ``torchmetrics`` ``KernelInceptionDistance`` on identity features, one subset of
                   all samples (= the exact KID when N = M), for ``kid``;
* ``fused-gram``, ``fused-covariance``  ``pulling_away`` only: the fused op with that
                   exact algorithm forced (``fused`` is ``algorithm="auto"``, which picks
                   covariance when 2 D <= N), so the two algorithms compare on the same inputs.

Flop model (``OpSpec.flops``; model flops, the same for every implementation, so
GFLOP/s compares implementations): pairwise ops count the kernel evaluations the
math needs (``OpSpec.pairs``; symmetric XX / YY blocks once, as the fused engine
visits them) times flops per pair: 2 D for the pair's dot product / squared
distance in the forward, 4 D for the backward (a gradient w.r.t. both points);
flow-type ops (kernel_flow, smoothed_score, the Langevin chains) add 2 D forward
(the weighted sum of the other point) and count 8 D backward.  Exponentials and
the other O(1)-per-pair work are not counted: at small D the ops are bound by
them, not by the roofline ceilings.  ``langevin_step`` counts 4 flops per element
and is memory bound; ``pulling_away`` counts 2 N D min(N, D) (the cheaper of the
Gram and the covariance forms), twice that backward -- for every implementation, so
the GFLOP/s of ``fused-gram`` and of the eager Gram formula are "useful" flops.

Memory model (``OpSpec.dense_temps``, optional): for implementations that materialise
N x M matrices, how many of them (in the benchmark's dtype) are alive at the peak; a
case whose estimate exceeds the memory cap is an ``oom`` row without being run (its
allocations would fit one at a time, so the cap alone would stop it only after
filling most of the machine's memory).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch

import gankernels as gk
from gankernels import kernels as K
from gankernels import reference as ref

IMPLS = ("fused", "eager", "eager-expansion", "compile", "compile-expansion", "keops", "geomloss", "torchmetrics",
         "fused-gram", "fused-covariance")
MODES = ("fwd", "bwd", "fwdbwd")
DISTANCES = ("cdist", "expansion")   # how the eager baselines form squared distances
# baseline family -> (cdist impl, expansion impl): the headline ratios use the faster of the two per case
VARIANTS = {"eager": ("eager", "eager-expansion"), "compile": ("compile", "compile-expansion")}
VARIANT_OF = {"eager": "cdist", "compile": "cdist", "eager-expansion": "expansion", "compile-expansion": "expansion"}
CHAIN_STEPS = 10          # steps of the kernel_langevin / kde_langevin chains
DEFAULT_KERNEL = "Gaussian(sigmas=(1.0, 2.0, 4.0, 8.0, 16.0))"
KERNEL_NAMES = {
    "gaussian": DEFAULT_KERNEL, "rq": "RationalQuadratic()", "imq": "InverseMultiquadric()",
    "laplacian": "Laplacian()", "energy": "Energy()", "polyharmonic": "Polyharmonic(3)",
    "polynomial": "Polynomial(3)", "linear": "Linear()",
}

Inputs = Dict[str, Any]


class Unavailable(Exception):
    """The implementation cannot run here (not installed, no formula for this kernel, ...)."""


def parse_kernel(text: str) -> K.Kernel:
    """A kernel from a short name (``gaussian``, ``laplacian``, ...) or a constructor such as
    ``Gaussian(sigmas=(1, 2))``, evaluated with the kernel classes only."""
    expr = KERNEL_NAMES.get(text.strip().lower(), text)
    names = {n: getattr(K, n) for n in K.__all__}
    try:
        kernel = eval(expr, {"__builtins__": {}}, names)  # noqa: S307 (names: the kernel classes only)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"kernels: cannot parse {text!r} ({type(e).__name__}: {e})") from None
    if not isinstance(kernel, K.Kernel):
        raise ValueError(f"kernels: {text!r} is not a gankernels kernel")
    return kernel


# ----------------------------------------------------------------------------- inputs

def make_pair(n: int, m: int, d: int, seed: int = 0, dtype=torch.float32):
    """x ~ N(0, I) [n, d], y ~ N(0.25, 1.1^2 I) [m, d]: drawn in float64 from a generator seeded by
    (n, m, d, seed), then cast, so every process gets bitwise the same tensors."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + n * 7919 + m * 104729 + d)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = 1.1 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.25
    return x.to(dtype), y.to(dtype)


def _pair_inputs(n, m, d, seed, kernel):
    x, y = make_pair(n, m, d, seed, torch.float64)
    return {"x": x, "y": y, "kernel": kernel}


def _witness_inputs(n, m, d, seed, kernel):
    x, y = make_pair(m, m, d, seed, torch.float64)
    z, _ = make_pair(n, 1, d, seed + 1, torch.float64)
    return {"z": 1.2 * z, "x": x, "y": y, "kernel": kernel}


def _kid_inputs(n, m, d, seed, kernel):
    x, y = make_pair(n, m, d, seed, torch.float64)
    return {"real": x.abs(), "fake": y.abs()}  # non-negative, like pooled Inception features


def _score_inputs(n, m, d, seed, kernel):
    x, y = make_pair(n, m, d, seed, torch.float64)
    return {"x": x, "y": y, "sigma": math.sqrt(d) / 2.0}


def _kernel_langevin_inputs(n, m, d, seed, kernel):
    x, c = make_pair(n, m, d, seed, torch.float64)
    w = torch.where(torch.arange(m) % 2 == 0, 1.0, -1.0).double() * (2.0 / m)  # real +1/M', fake -1/M'
    return {"x": x, "centers": c, "weights": w, "kernel": kernel, "step_size": 1e-2, "temperature": 1.0}


def _kde_langevin_inputs(n, m, d, seed, kernel):
    x, data = make_pair(n, m, d, seed, torch.float64)
    sigmas = torch.logspace(math.log10(math.sqrt(d)), math.log10(0.01 * math.sqrt(d)), CHAIN_STEPS).tolist()
    return {"x": 2.0 * x, "data": data, "sigmas": sigmas, "eps": 5e-5}


def _step_inputs(n, m, d, seed, kernel):
    x, drift = make_pair(n, n, d, seed, torch.float64)
    return {"x": x, "drift": drift, "step_size": 1e-3, "temperature": 1.0}


def _codes_inputs(n, m, d, seed, kernel):
    s, _ = make_pair(n, 1, d, seed, torch.float64)
    return {"s": s}


# ----------------------------------------------------------------------------- eager code (as users write it)

def sqdist_cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cdist(a, b) ** 2`` on its matrix-product path (which it takes by itself above 25 points and which is
    twice differentiable); exact differences for half dtypes, which CPU cdist lacks."""
    if a.dtype in (torch.float32, torch.float64):
        return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist") ** 2
    return ref.sqdist(a, b)


def sqdist_expansion(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a|^2 + |b|^2 - 2 a . b``, clamped at 0 (rounding makes it slightly negative for close pairs)."""
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)).clamp_min(0.0)


SQDIST = {"cdist": sqdist_cdist, "expansion": sqdist_expansion}


def eager_gram(kernel: K.Kernel, a: torch.Tensor, b: torch.Tensor, dist: str = "cdist") -> torch.Tensor:
    """Dense [N, M] kernel matrix: the squared distances of ``dist`` (``SQDIST``) through the kernel profile,
    or ``a @ b.T`` for dot-product kernels (no distances: ``dist`` does not matter)."""
    if not kernel.radial:
        return ref.dot_profile(kernel, a @ b.T, a.shape[1])
    return ref.radial_profile(kernel, SQDIST[dist](a, b))


def eager_flow(x, y, kernel, weights=None, dist: str = "cdist"):
    """sum_j w_j grad_a k(a, y_j) at a = x_i by autograd of the dense kernel sum (differentiable when the
    inputs require grad)."""
    graph = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    with torch.enable_grad():
        xa = x if x.requires_grad else x.detach().requires_grad_(True)
        kmat = eager_gram(kernel, xa, y, dist)
        total = (kmat @ weights).sum() if weights is not None else kmat.sum()
        (g,) = torch.autograd.grad(total, xa, create_graph=graph)
    return g


def eager_smoothed_score(x, y, sigma, dist: str = "cdist"):
    """(softmax_j(-|x_i - y_j|^2 / 2 sigma^2) @ y - x) / sigma^2 from the dense squared distances of ``dist``
    (``dist="cdist"`` is ``gankernels.reference.eager_smoothed_score``)."""
    if dist == "cdist":
        return ref.eager_smoothed_score(x, y, sigma)
    p = torch.softmax(-SQDIST[dist](x, y) / (2.0 * sigma * sigma), dim=1)
    return (p @ y - x) / (sigma * sigma)


def _eager_mmd2(inp, dist="cdist"):
    x, y, k = inp["x"], inp["y"], inp["kernel"]
    return (eager_gram(k, x, x, dist).mean() + eager_gram(k, y, y, dist).mean()
            - 2.0 * eager_gram(k, x, y, dist).mean())


def _eager_kernel_sum(inp, dist="cdist"):
    return eager_gram(inp["kernel"], inp["x"], inp["y"], dist).sum(1)


def _eager_kernel_flow(inp, dist="cdist"):
    return eager_flow(inp["x"], inp["y"], inp["kernel"], dist=dist)


def _eager_witness(inp, dist="cdist"):
    z, k = inp["z"], inp["kernel"]
    return eager_gram(k, z, inp["x"], dist).mean(1) - eager_gram(k, z, inp["y"], dist).mean(1)


def _eager_score(inp, dist="cdist"):
    return eager_smoothed_score(inp["x"], inp["y"], inp["sigma"], dist)


def _eager_step(inp, x=None, drift=None, eta=None):
    x = inp["x"] if x is None else x
    eta = inp["step_size"] if eta is None else eta
    drift = inp["drift"] if drift is None else drift
    return x + eta * drift + math.sqrt(2.0 * eta * inp["temperature"]) * torch.randn_like(x)


def _eager_kernel_langevin(inp, dist="cdist"):
    x = inp["x"]
    for _ in range(CHAIN_STEPS):
        x = _eager_step(inp, x, eager_flow(x, inp["centers"], inp["kernel"], inp["weights"], dist))
    return x


def _eager_kde_langevin(inp, dist="cdist"):
    x, sigmas, eps = inp["x"], inp["sigmas"], inp["eps"]
    for s in sigmas:  # steps_per_sigma = 1
        alpha = eps * s * s / sigmas[-1] ** 2
        x = x + 0.5 * alpha * eager_smoothed_score(x, inp["data"], s, dist) + math.sqrt(alpha) * torch.randn_like(x)
    return x


def _with_dist(fn: Callable[..., Any]) -> Callable[[str], Callable[[Inputs], Any]]:
    """``dist -> (inputs -> output)``: the eager code of an op with its squared distances from ``SQDIST[dist]``."""
    def build(dist: str) -> Callable[[Inputs], Any]:
        return lambda inp: fn(inp, dist)
    return build


def eager_pulling_away(s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """EBGAN pulling-away term (docs/MATH.md §4) from the dense Gram matrix of the normalised codes."""
    sn = s / s.norm(dim=1, keepdim=True).clamp_min(eps)
    g = sn @ sn.T
    n = s.shape[0]
    return (g.pow(2).sum() - g.diagonal().pow(2).sum()) / (n * (n - 1))


# ----------------------------------------------------------------------------- KeOps, GeomLoss, torchmetrics

def _keops_gaussian(kernel):
    """LazyTensor helpers for a Gaussian mixture: k_ij and its flow coefficient 2 phi'(s_ij)."""
    if not isinstance(kernel, K.Gaussian):
        raise Unavailable("unavailable: the KeOps formulas are written for Gaussian kernels only")
    try:
        from pykeops.torch import LazyTensor
    except Exception as e:  # noqa: BLE001
        raise Unavailable(f"unavailable: pykeops ({type(e).__name__})") from None

    def parts(a, b):
        g = torch.tensor([1.0 / (2.0 * s * s) for s in kernel.sigmas], dtype=a.dtype, device=a.device)
        ai, bj = LazyTensor(a[:, None, :]), LazyTensor(b[None, :, :])
        e = (-(ai.sqdist(bj) * LazyTensor(g))).exp()
        return ai, bj, e.sum(), (e * LazyTensor(-2.0 * g)).sum()

    return parts


def _keops_factory(op: str):
    def build(inp):
        if op == "smoothed_score":
            try:
                from pykeops.torch import LazyTensor
            except Exception as e:  # noqa: BLE001
                raise Unavailable(f"unavailable: pykeops ({type(e).__name__})") from None

            def score(i):
                x, y, s2 = i["x"], i["y"], i["sigma"] ** 2
                logits = -LazyTensor(x[:, None, :]).sqdist(LazyTensor(y[None, :, :])) / (2.0 * s2)
                return (logits.sumsoftmaxweight(LazyTensor(y[None, :, :]), axis=1) - x) / s2
            return score
        parts = _keops_gaussian(inp["kernel"])

        def ksum(a, b):
            return parts(a, b)[2].sum(dim=1).squeeze(1)

        def block_mean(a, b):
            return ksum(a, b).sum() / (a.shape[0] * b.shape[0])

        if op == "mmd2":
            return lambda i: block_mean(i["x"], i["x"]) + block_mean(i["y"], i["y"]) - 2.0 * block_mean(i["x"], i["y"])
        if op == "kernel_sum":
            return lambda i: ksum(i["x"], i["y"])
        if op == "witness":
            return lambda i: ksum(i["z"], i["x"]) / i["x"].shape[0] - ksum(i["z"], i["y"]) / i["y"].shape[0]
        if op == "kernel_flow":
            def flow(i):
                ai, bj, _, dphi = parts(i["x"], i["y"])
                return (dphi * (ai - bj)).sum(dim=1)
            return flow
        raise Unavailable(f"unavailable: no KeOps formula for {op}")
    return build


def _geomloss_mmd2(inp):
    kernel = inp["kernel"]
    if not isinstance(kernel, K.Gaussian):
        raise Unavailable("unavailable: GeomLoss baseline written for Gaussian kernels only")
    try:
        from geomloss import SamplesLoss
    except Exception as e:  # noqa: BLE001
        raise Unavailable(f"unavailable: geomloss ({type(e).__name__})") from None
    losses = [SamplesLoss("gaussian", blur=s) for s in kernel.sigmas]
    # SamplesLoss("gaussian") is half the biased MMD^2 with k = exp(-|a - b|^2 / 2 blur^2)
    return lambda i: 2.0 * sum(loss(i["x"], i["y"]) for loss in losses)


def _torchmetrics_kid(inp):
    try:
        from torchmetrics.image.kid import KernelInceptionDistance
    except Exception as e:  # noqa: BLE001
        raise Unavailable(f"unavailable: torchmetrics ({type(e).__name__})") from None
    import warnings

    def kid(i):
        real, fake = i["real"], i["fake"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features in buffer"
            metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1,
                                             subset_size=min(real.shape[0], fake.shape[0])).to(real.device)
            metric.update(real, real=True)
            metric.update(fake, real=False)
            return metric.compute()
    return kid


# ----------------------------------------------------------------------------- the registry

def _sym_pairs(n: int, m: int) -> float:
    return n * (n - 1) / 2.0 + m * (m - 1) / 2.0 + float(n) * m


def _per_pair(pairs: Callable[[int, int], float], fwd: int, bwd: int):
    return lambda n, m, d: (fwd * d * pairs(n, m), bwd * d * pairs(n, m))


@dataclass(frozen=True)
class OpSpec:
    name: str
    make: Callable[..., Inputs]                   # (n, m, d, seed, kernel) -> float64 CPU inputs
    fused: Callable[[Inputs], Any]
    eager: Callable[[Inputs], Any]
    pairs: Callable[[int, int], float]            # kernel evaluations per call (0: elementwise)
    flops: Callable[[int, int, int], Tuple[float, float]]   # (forward, backward) model flops
    grads: Tuple[str, ...] = ()                   # inputs differentiated in bwd / fwdbwd; () = fwd only
    kernel: bool = False                          # takes --kernels
    baselines: Dict[str, Callable[[Inputs], Callable[[Inputs], Any]]] = None  # impl -> factory
    deterministic: Optional[Callable[[Inputs], Inputs]] = None  # noise-free variant for the error check
    stochastic: bool = False                      # no error check possible
    available: Callable[[], str] = lambda: ""     # '' or why the fused op is missing
    same_m: bool = False                          # M is not a free size (elementwise / one point set)
    dense_temps: Optional[Dict[Tuple[str, str], float]] = None  # (impl, mode) -> N x M matrices at the peak
    eager_dist: Optional[Callable[[str], Callable[[Inputs], Any]]] = None  # dist -> eager code (distance ops)

    def modes(self):
        return MODES if self.grads else ("fwd",)

    def impls(self):
        expansion = ("eager-expansion", "compile-expansion") if self.eager_dist else ()
        return ("fused", "eager") + expansion[:1] + ("compile",) + expansion[1:] + tuple(self.baselines or {})

    def model_flops(self, n: int, m: int, d: int, mode: str) -> float:
        f, b = self.flops(n, m, d)
        return {"fwd": f, "bwd": b, "fwdbwd": f + b}[mode]

    def mem_estimate(self, impl: str, mode: str, n: int, m: int, itemsize: int) -> float:
        """Bytes of the N x M temporaries ``impl`` holds at its peak (0: none modelled; bwd as fwd+bwd)."""
        temps = (self.dense_temps or {}).get((impl, "fwdbwd" if mode == "bwd" else mode), 0.0)
        return temps * n * m * itemsize


def _no_noise(inp):
    return dict(inp, temperature=0.0)


def _pa_available() -> str:
    return "" if hasattr(gk, "pulling_away") else "unavailable: gk.pulling_away is not in this build"


def _pa_algorithm(algorithm: str):
    """Factory of the ``fused-<algorithm>`` implementation of pulling_away."""
    def build(inp):
        if _pa_available():
            raise Unavailable(_pa_available())
        return lambda i: gk.pulling_away(i["s"], algorithm=algorithm)
    return build


# N x N matrices (float32) alive at the peak of the eager Gram formula and its torch.compile, measured at
# N = 8192 (extra RSS / 4 N^2 bytes: eager 2.0 fwd, 5.1 fwd+bwd; compile 1.2, 2.2) and rounded up
PA_DENSE_TEMPS = {("eager", "fwd"): 3, ("eager", "fwdbwd"): 6, ("compile", "fwd"): 2, ("compile", "fwdbwd"): 3}


OPS: Dict[str, OpSpec] = {s.name: s for s in [
    OpSpec("mmd2", _pair_inputs, lambda i: gk.mmd2(i["x"], i["y"], i["kernel"]), _eager_mmd2,
           _sym_pairs, _per_pair(_sym_pairs, 2, 4), ("x", "y"), kernel=True,
           baselines={"keops": _keops_factory("mmd2"), "geomloss": _geomloss_mmd2}, eager_dist=_with_dist(_eager_mmd2)),
    # a generator step against fixed real features: the gradient on x only (backward: the x-x flows and the
    # x side of x-y, about half the flops of both sides)
    OpSpec("mmd2_x", _pair_inputs, lambda i: gk.mmd2(i["x"], i["y"], i["kernel"]), _eager_mmd2,
           _sym_pairs, _per_pair(_sym_pairs, 2, 2), ("x",), kernel=True,
           baselines={"keops": _keops_factory("mmd2")}, eager_dist=_with_dist(_eager_mmd2)),
    OpSpec("kernel_sum", _pair_inputs, lambda i: gk.kernel_sum(i["x"], i["y"], i["kernel"]), _eager_kernel_sum,
           lambda n, m: float(n) * m, _per_pair(lambda n, m: float(n) * m, 2, 4), ("x", "y"), kernel=True,
           baselines={"keops": _keops_factory("kernel_sum")}, eager_dist=_with_dist(_eager_kernel_sum)),
    OpSpec("kernel_flow", _pair_inputs, lambda i: gk.kernel_flow(i["x"], i["y"], i["kernel"]), _eager_kernel_flow,
           lambda n, m: float(n) * m, _per_pair(lambda n, m: float(n) * m, 4, 8), ("x", "y"), kernel=True,
           baselines={"keops": _keops_factory("kernel_flow")}, eager_dist=_with_dist(_eager_kernel_flow)),
    OpSpec("witness", _witness_inputs, lambda i: gk.witness(i["z"], i["x"], i["y"], i["kernel"]), _eager_witness,
           lambda n, m: 2.0 * n * m, _per_pair(lambda n, m: 2.0 * n * m, 2, 4), ("z", "x", "y"), kernel=True,
           baselines={"keops": _keops_factory("witness")}, eager_dist=_with_dist(_eager_witness)),
    OpSpec("kid", _kid_inputs, lambda i: gk.kid(i["real"], i["fake"]), lambda i: ref.kid(i["real"], i["fake"]),
           _sym_pairs, _per_pair(_sym_pairs, 2, 0), baselines={"torchmetrics": _torchmetrics_kid}),
    OpSpec("smoothed_score", _score_inputs, lambda i: gk.smoothed_score(i["x"], i["y"], i["sigma"]),
           _eager_score, lambda n, m: float(n) * m, _per_pair(lambda n, m: float(n) * m, 4, 8), ("x", "y"),
           baselines={"keops": _keops_factory("smoothed_score")}, eager_dist=_with_dist(_eager_score)),
    OpSpec("pulling_away", _codes_inputs, lambda i: gk.pulling_away(i["s"]), lambda i: eager_pulling_away(i["s"]),
           lambda n, m: n * (n - 1) / 2.0,
           lambda n, m, d: (2.0 * n * d * min(n, d), 4.0 * n * d * min(n, d)), ("s",),
           baselines={"fused-gram": _pa_algorithm("gram"), "fused-covariance": _pa_algorithm("covariance")},
           available=_pa_available, same_m=True, dense_temps=PA_DENSE_TEMPS),
    OpSpec("langevin_step", _step_inputs,
           lambda i: gk.langevin_step(i["x"], i["drift"], i["step_size"], i["temperature"]), _eager_step,
           lambda n, m: 0.0, lambda n, m, d: (4.0 * n * d, 0.0), deterministic=_no_noise, same_m=True),
    OpSpec("kernel_langevin", _kernel_langevin_inputs,
           lambda i: gk.kernel_langevin(i["x"], i["centers"], i["kernel"], i["weights"], i["step_size"],
                                        CHAIN_STEPS, i["temperature"]),
           _eager_kernel_langevin, lambda n, m: CHAIN_STEPS * float(n) * m,
           _per_pair(lambda n, m: CHAIN_STEPS * float(n) * m, 4, 0), kernel=True, deterministic=_no_noise,
           eager_dist=_with_dist(_eager_kernel_langevin)),
    OpSpec("kde_langevin", _kde_langevin_inputs,
           lambda i: gk.kde_langevin(i["x"], i["data"], i["sigmas"], 1, i["eps"]), _eager_kde_langevin,
           lambda n, m: CHAIN_STEPS * float(n) * m, _per_pair(lambda n, m: CHAIN_STEPS * float(n) * m, 4, 0),
           stochastic=True, eager_dist=_with_dist(_eager_kde_langevin)),
]}


def build_impl(spec: OpSpec, impl: str, inputs: Inputs) -> Callable[[Inputs], Any]:
    """The callable ``inputs -> output`` of one implementation (raises ``Unavailable``)."""
    if impl == "fused":
        why = spec.available()
        if why:
            raise Unavailable(why)
        return spec.fused
    if impl == "eager":
        return spec.eager
    if impl == "compile":
        return torch.compile(spec.eager, dynamic=False)
    if impl in ("eager-expansion", "compile-expansion"):
        if spec.eager_dist is None:
            raise Unavailable(f"unavailable: {spec.name} forms no distance matrix (no expansion variant)")
        kernel = inputs.get("kernel")
        if kernel is not None and not kernel.radial:
            raise Unavailable(f"unavailable: {type(kernel).__name__} is a dot-product kernel (no distance matrix)")
        fn = spec.eager_dist("expansion")
        return fn if impl == "eager-expansion" else torch.compile(fn, dynamic=False)
    factory = (spec.baselines or {}).get(impl)
    if factory is None:
        raise Unavailable(f"unavailable: no {impl} baseline for {spec.name}")
    return factory(inputs)


def cast_inputs(inputs: Inputs, dtype: torch.dtype, device: str) -> Inputs:
    """The float64 CPU inputs in the benchmark's dtype and device (parameters unchanged)."""
    return {k: (v.to(device=device, dtype=dtype) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def checksum(inputs: Inputs) -> str:
    """A short fingerprint of the input tensors (separate processes must see the same data)."""
    acc = 0.0
    for v in inputs.values():
        if isinstance(v, torch.Tensor):
            t = v.detach().double().cpu()
            acc += float(t.sum()) + 0.5 * float((t * t).sum())
    return f"{acc:.10e}"
