"""One registration home: every op's schema (csrc/registration.cpp), fake, autograd and CUDA launcher
(gankernels/_ops.py) -- checked against the library the dispatcher sees."""
from __future__ import annotations

import pytest
import torch

import gankernels  # noqa: F401  (loads the extension and the registrations)
from gankernels import _ops

OPS = sorted(_ops.CUDA_LAUNCHERS)


def test_the_launcher_table_covers_every_op_of_the_library():
    defined = sorted(name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
                     if name.startswith("gankernels::"))
    assert defined == sorted(OPS + list(_ops.HOST_OPS))


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_cpu_kernel_fake_and_cuda_launcher(name):
    qualified = f"gankernels::{name}"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "Meta") or \
        torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CompositeImplicitAutograd") or \
        torch.library.get_kernel(qualified, "Meta") is not None
    module, launcher = _ops.CUDA_LAUNCHERS[name]
    pytest.importorskip("triton")
    mod = __import__(f"gankernels.{module}", fromlist=[launcher])
    assert callable(getattr(mod, launcher))
    assert _ops.HAS_CUDA_KERNELS
    assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CUDA")
