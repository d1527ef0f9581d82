"""A small fixed set of fused ops and their eager baselines through pytest-benchmark.

    pytest bench/ --benchmark-only                       # OMP_NUM_THREADS sets the threads
    pytest bench/ --benchmark-only --benchmark-autosave  # then later: --benchmark-compare

Not part of ``make test``: pytest.ini has ``testpaths = tests`` and these are
marked ``bench``.  Inputs and calls come from the ``gankernels bench`` registry
(the same deterministic inputs, fused op and eager code); each benchmark's
``extra_info`` holds the case and its model flops, its group the case, so
fused and eager are compared side by side.  The full tool (memory, roofline,
torch.compile, KeOps, errors) is ``gankernels bench``.
"""
from dataclasses import asdict

import pytest

pytest.importorskip("pytest_benchmark")

from gankernels.bench.registry import DEFAULT_KERNEL, OPS, build_impl  # noqa: E402
from gankernels.bench.runner import Case, case_inputs, make_call  # noqa: E402

pytestmark = pytest.mark.bench

CASES = [  # op, mode, N = M, D
    ("mmd2", "fwd", 2048, 64),
    ("mmd2", "fwdbwd", 2048, 64),
    ("kernel_sum", "fwd", 2048, 64),
    ("kernel_flow", "fwd", 2048, 16),
    ("witness", "fwd", 2048, 64),
    ("kid", "fwd", 2048, 64),
    ("smoothed_score", "fwd", 2048, 64),
    ("langevin_step", "fwd", 1 << 18, 16),
    ("pulling_away", "fwdbwd", 4096, 64),
]
PA_ALGORITHMS = ("pulling_away", "fwdbwd", 2048, 256)   # the two exact algorithms side by side


@pytest.mark.parametrize("impl", ["fused", "eager"])
@pytest.mark.parametrize("op,mode,n,d", CASES, ids=[f"{o}-{m}-N{n}-D{d}" for o, m, n, d in CASES])
def test_op(benchmark, op, mode, n, d, impl):
    _bench(benchmark, op, mode, n, d, impl)


@pytest.mark.parametrize("impl", ["fused-gram", "fused-covariance"])
def test_pulling_away_algorithm(benchmark, impl):
    _bench(benchmark, *PA_ALGORITHMS, impl)


def _bench(benchmark, op, mode, n, d, impl):
    spec = OPS[op]
    case = Case(op, impl, mode, n, n, d, kernel=DEFAULT_KERNEL if spec.kernel else "")
    inputs = case_inputs(case, seed=0)
    call = make_call(build_impl(spec, impl, inputs), inputs, mode, spec.grads)
    benchmark.group = f"{op} {mode} N={n} D={d}"
    benchmark.extra_info.update(asdict(case), model_flops=spec.model_flops(n, n, d, mode))
    benchmark.pedantic(call, warmup_rounds=1, rounds=5 if impl.startswith("fused") else 3, iterations=1)
