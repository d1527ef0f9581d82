"""kid: exact mode (value and standard error) against the reference; subset mode against torchmetrics.

The subset protocol is torchmetrics' ``KernelInceptionDistance.compute``: for each
subset, ``torch.randperm(n_real)[:subset_size]`` then ``torch.randperm(n_fake)[:subset_size]``,
the unbiased polynomial MMD^2 (degree 3, gamma = 1/D, coef 1), and finally the mean
and the standard deviation over subsets.  torchmetrics draws from the global RNG;
``kid(..., generator=g)`` with ``g`` seeded like the global RNG must give the same
indices, hence the same numbers.
"""
from __future__ import annotations

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref
from gankernels.kernels import Polynomial
from conftest import make_input

torch_kid = pytest.importorskip("torchmetrics.image.kid", reason="torchmetrics is not installed")

pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save:UserWarning")


def _features(n=120, m=90, d=64, dtype=torch.float64):
    # relu-like, nonnegative features as an Inception pool layer would give
    real = make_input(n, d, dtype, seed=11).abs()
    fake = (make_input(m, d, dtype, seed=12, shift=0.2)).abs()
    return real, fake


def _torchmetrics_kid(real, fake, subsets, subset_size, seed):
    metric = torch_kid.KernelInceptionDistance(feature=torch.nn.Identity(), subsets=subsets, subset_size=subset_size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(seed)
    return metric.compute()


def _check(got, expected, rtol=1e-9, atol=1e-12):
    mean, std = got
    assert isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)
    assert mean.dim() == 0 and std.dim() == 0
    torch.testing.assert_close(mean.double(), expected[0].double(), rtol=rtol, atol=atol)
    torch.testing.assert_close(std.double(), expected[1].double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", [(120, 90, 64), (50, 50, 7), (2, 3, 1)], ids=str)
def test_kid_exact_matches_reference(shape):
    real, fake = _features(*shape)
    got = gk.kid(real, fake)
    torch.testing.assert_close(got[0], ref.mmd2(real, fake, Polynomial(3), "unbiased"))
    if min(shape[:2]) < 4:   # too few samples for the variance estimate
        assert torch.isnan(got[1]) and torch.isnan(ref.kid(real, fake)[1])
        return
    _check(got, ref.kid(real, fake))
    # the std is the square root of the complete U-statistic variance estimate (docs/ESTIMATORS.md)
    var = ref.mmd2_and_variance(real, fake, Polynomial(3), "complete")[1]
    assert got[1].item() > 0 and got[1].item() == pytest.approx(var.clamp_min(0).sqrt().item(), rel=1e-9)


def test_kid_exact_float32():
    real, fake = _features(dtype=torch.float32)
    mean, std = gk.kid(real, fake)
    assert mean.dtype == std.dtype == torch.float32
    expected, expected_std = ref.kid(real.double(), fake.double())
    assert std.item() == pytest.approx(expected_std.item(), rel=1e-4)
    scale = ref.gram(Polynomial(3), real.double(), real.double()).abs().mean().item()
    assert abs(mean.double().item() - expected.item()) <= 1e-5 * scale


@pytest.mark.parametrize("subsets,subset_size", [(5, 40), (1, 90), (7, 2)])
def test_kid_subsets_match_torchmetrics(subsets, subset_size):
    real, fake = _features()
    seed = 1234 + subsets
    expected = _torchmetrics_kid(real, fake, subsets, subset_size, seed)
    got = gk.kid(real, fake, subsets=subsets, subset_size=subset_size,
                 generator=torch.Generator().manual_seed(seed))
    _check(got, expected)


def test_kid_reference_matches_torchmetrics():
    """The oracle's subset protocol is torchmetrics' (population std over subsets)."""
    real, fake = _features()
    expected = _torchmetrics_kid(real, fake, 6, 50, 99)
    _check(ref.kid(real, fake, subsets=6, subset_size=50, generator=torch.Generator().manual_seed(99)), expected)


def test_kid_subsets_match_poly_mmd_on_same_indices():
    """Per-subset values: torchmetrics' poly_mmd on the indices the generator draws."""
    real, fake = _features()
    g = torch.Generator().manual_seed(5)
    scores = []
    for _ in range(4):
        ir = torch.randperm(real.shape[0], generator=g)[:30]
        jf = torch.randperm(fake.shape[0], generator=g)[:30]
        scores.append(torch_kid.poly_mmd(real[ir], fake[jf]))
    scores = torch.stack(scores)
    got = gk.kid(real, fake, subsets=4, subset_size=30, generator=torch.Generator().manual_seed(5))
    _check(got, (scores.mean(), scores.std(unbiased=False)))


def test_kid_same_generator_seed_same_result():
    real, fake = _features()
    a = gk.kid(real, fake, subsets=3, subset_size=20, generator=torch.Generator().manual_seed(0))
    b = gk.kid(real, fake, subsets=3, subset_size=20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_kid_subset_larger_than_set():
    real, fake = _features(30, 20, 4)
    with pytest.raises(ValueError):
        gk.kid(real, fake, subsets=2, subset_size=25)
