"""Build gankernels._C ahead of time (CPU kernels in C++; CUDA kernels are Triton, in Python).

`pip install --no-build-isolation -e .` compiles csrc/*.cpp with ninja against the
installed torch.  AVX2/FMA and AES-NI/VAES code generation is enabled when the build machine has them
(the extension is built where it runs).  No CUDA sources: the CUDA kernels are Triton.
"""
import glob
import os
import platform

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension


def _cpu_flags():
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64") and os.environ.get("GANKERNELS_NATIVE", "1") == "1":
        try:
            with open("/proc/cpuinfo") as f:
                info = f.read()
        except OSError:
            info = ""
        if " avx2" in info and " fma" in info:
            flags += ["-mavx2", "-mfma"]
            # AVX-512 where the CPU has the F/VL/DQ/BW subsets (GANKERNELS_AVX512=0 turns it off): 16-lane
            # vectors for the element-wise loops, e.g. the Langevin noise's Box-Muller (bench/RESULTS.md,
            # "langevin_step ... against copy_")
            if all(f" {f}" in info for f in ("avx512f", "avx512vl", "avx512dq", "avx512bw")) and \
                    os.environ.get("GANKERNELS_AVX512", "1") == "1":
                flags += ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mprefer-vector-width=512"]
        if " aes" in info:  # the Langevin noise's AES rounds (csrc/noise.h); VAES: two blocks per instruction
            flags += ["-maes"] + (["-mvaes"] if " vaes" in info and " avx2" in info else [])
    return flags


setup(
    name="gankernels",
    version="0.1.0",
    description="Fused pairwise-kernel, score and Langevin ops for GAN training (C++ on CPU, Triton on CUDA)",
    packages=find_packages(include=["gankernels", "gankernels.*"]),
    ext_modules=[
        CppExtension(
            "gankernels._C",
            sorted(glob.glob("csrc/*.cpp")),
            extra_compile_args={"cxx": _cpu_flags()},
            extra_link_args=["-fopenmp"],
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.9",
    install_requires=["torch>=2.6", "numpy"],
    extras_require={"cuda": ["triton"], "test": ["pytest", "torchmetrics"], "bench": ["pykeops", "matplotlib"]},
    entry_points={"console_scripts": ["gankernels=gankernels.__main__:main"]},
)
