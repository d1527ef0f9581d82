"""One definition of the kernel family codes: gankernels/kernels.py.  The C++ enum (csrc/families.h),
the Triton engine and the argument checks must agree with it."""
from __future__ import annotations

import re
from pathlib import Path

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


def test_check_names_match_python_codes():
    assert {name: code for code, name in enumerate(_checks.FAMILY_NAMES)} == _python_codes()
    assert _checks.NUM_FAMILIES == len(_python_codes())


def test_triton_engine_uses_the_python_codes():
    text = (ROOT / "gankernels" / "triton_engine.py").read_text()
    # no literal family comparisons in the kernels: FAMILY is compared with named constants
    assert not re.search(r"FAMILY == \d", text), "compare FAMILY with the named codes of kernels.py"


def test_radial_flags_match_the_families():
    for cls in (K.Gaussian, K.RationalQuadratic, K.InverseMultiquadric, K.Laplacian, K.Energy, K.Polyharmonic):
        assert cls.radial and cls.family in K.RADIAL_FAMILIES
    for cls in (K.Polynomial, K.Linear):
        assert not cls.radial and cls.family not in K.RADIAL_FAMILIES
