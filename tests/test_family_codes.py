"""One definition of each kernel family: gankernels/kernels.py (code, checks, encoding, phi(0), reference
profile) and csrc/families.h (derived constants, read by both engines).  The C++ enum, the Triton engine
and the argument checks must agree with the Python codes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import gankernels.kernels as K
from gankernels import _checks

ROOT = Path(__file__).resolve().parents[1]


def _python_codes():
    return {cls.__name__: cls.family for cls in (K.Gaussian, K.RationalQuadratic, K.InverseMultiquadric,
                                                 K.Laplacian, K.Energy, K.Polyharmonic, K.Polynomial, K.Linear)}


def test_cpp_enum_matches_python_codes():
    text = (ROOT / "csrc" / "families.h").read_text()
    enum = dict((name, int(code)) for name, code in re.findall(r"\bk([A-Z][A-Za-z]+) = (\d+)", text))
    assert {n: c for n, c in enum.items() if n in _python_codes()} == _python_codes()


def test_cpp_names_and_count_match_python_codes():
    text = (ROOT / "csrc" / "families.h").read_text()
    names = re.search(r"names\[kNumFamilies\] = \{([^}]*)\}", text).group(1)
    assert {n: c for c, n in enumerate(re.findall(r'"(\w+)"', names))} == _python_codes()
    assert _checks.NUM_FAMILIES == len(_python_codes())


KERNELS = [K.Gaussian((0.5, 2.0)), K.RationalQuadratic((0.5, 2.0), 1.5), K.InverseMultiquadric((1.0, 3.0), -0.7),
           K.Laplacian(0.8), K.Energy(), K.Polyharmonic(3), K.Polyharmonic(2, 0.5), K.Polynomial(3),
           K.Polynomial(2, 0.5, -1.0), K.Linear()]


def test_from_code_inverts_encode_and_profile_agrees_with_at_zero():
    import torch

    for k in KERNELS:
        code, params = k.encode(4)
        back = K.from_code(code, params)
        assert back.encode(4) == (code, params)
        z = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
        assert torch.equal(back.profile(z, 4), k.profile(z, 4))
        if k.radial:
            assert float(k.profile(torch.zeros(1, dtype=torch.float64))) == pytest.approx(k.at_zero(), rel=1e-15)


def test_family_constants_validate_like_the_kernels():
    """The C++ rule (one place) refuses what the kernel classes refuse, naming the parameter."""
    import torch

    with pytest.raises(ValueError, match=r"params\[0\] \(sigma\)"):
        torch.ops.gankernels.family_constants(0, [-1.0], torch.float32)
    with pytest.raises(ValueError, match="family"):
        torch.ops.gankernels.family_constants(8, [], torch.float32)
    flat = torch.ops.gankernels.family_constants(*K.Gaussian((1.0, 2.0)).encode(3), torch.float32)
    assert flat[:2] == [2.0, 0.0]  # two mixture components, no integer parameter


def test_triton_pairwise_uses_the_python_codes():
    text = (ROOT / "gankernels" / "triton_pairwise.py").read_text()
    # no literal family comparisons in the kernels: FAMILY is compared with named constants
    assert not re.search(r"FAMILY == \d", text), "compare FAMILY with the named codes of kernels.py"


def test_radial_flags_match_the_families():
    for cls in (K.Gaussian, K.RationalQuadratic, K.InverseMultiquadric, K.Laplacian, K.Energy, K.Polyharmonic):
        assert cls.radial and cls.family in K.RADIAL_FAMILIES
    for cls in (K.Polynomial, K.Linear):
        assert not cls.radial and cls.family not in K.RADIAL_FAMILIES
