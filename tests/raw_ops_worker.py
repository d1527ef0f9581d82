"""Runs a list of bad (and a few good) calls of the raw gankernels ops; used by tests/test_raw_ops.py.

    python tests/raw_ops_worker.py --backend cpu|triton --start K

prints, for every case from index K on, ``START <i> <json>`` before the call and one line
``END <i> <json>`` after it, flushing each line, so that the parent test can tell
which case killed the process when it dies on a signal and restart after it.  The json
holds the case's op, name, what it expected ("raise", "ok" or "any"), the names an
error message may point at, and what happened (the exception class and message, or a
summary of the returned tensors).  A case that runs longer than ``CASE_TIMEOUT`` seconds
(a runaway loop) ends the process through faulthandler's watchdog, which the parent
reports like a crash.

``cpu`` calls ``torch.ops.gankernels.*`` (the C++ kernels; meta / fake kernels where
the case says so); ``triton`` calls the Triton launchers of ``gankernels.triton_*``
directly on CPU tensors, which needs ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import math
import sys

import torch

NAN, INF = float("nan"), float("inf")
CASE_TIMEOUT = 30.0  # seconds; a case that runs longer ends the process (exit code 1, "Timeout" on stderr)
N, M, D, C = 5, 4, 3, 2


def _t(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


# Family codes with parameter lists the ops must refuse (code, params, what is wrong).
BAD_FAMILIES = [
    (-1, [1.0], "negative code"), (8, [], "code 8"), (99, [1.0], "code 99"), (2 ** 40, [1.0], "huge code"),
    (0, [], "gaussian no sigma"), (0, [0.0], "gaussian sigma 0"), (0, [-1.0], "gaussian sigma < 0"),
    (0, [NAN], "gaussian sigma nan"), (0, [INF], "gaussian sigma inf"), (0, [1.0, -2.0], "gaussian 2nd sigma < 0"),
    (1, [], "rq empty"), (1, [1.0], "rq no alpha"), (1, [0.0, 1.0], "rq l = 0"), (1, [-1.0, 1.0], "rq l < 0"),
    (1, [1.0, -1.0], "rq alpha < 0"), (1, [1.0, 0.0], "rq alpha 0"), (1, [NAN, 1.0], "rq l nan"),
    (1, [1.0, INF], "rq alpha inf"),
    (2, [], "imq empty"), (2, [-0.5], "imq no c"), (2, [0.5, 1.0], "imq beta > 0"), (2, [0.0, 1.0], "imq beta 0"),
    (2, [-0.5, 0.0], "imq c 0"), (2, [-0.5, -1.0], "imq c < 0"), (2, [NAN, 1.0], "imq beta nan"),
    (2, [-INF, 1.0], "imq beta -inf"),
    (3, [], "laplacian no sigma"), (3, [0.0], "laplacian sigma 0"), (3, [-1.0], "laplacian sigma < 0"),
    (3, [INF], "laplacian sigma inf"),
    (4, [1.0], "energy with params"), (7, [1.0], "linear with params"),
    (5, [], "polyharmonic empty"), (5, [1.0], "polyharmonic no eps"), (5, [1.0, 0.0, 3.0], "polyharmonic 3 params"),
    (5, [1.5, 0.0], "polyharmonic k not integer"), (5, [0.0, 0.0], "polyharmonic k 0 eps 0"),
    (5, [-1.0, 0.0], "polyharmonic k < 0 eps 0"), (5, [1.0, -0.1], "polyharmonic eps < 0"),
    (5, [1.0, NAN], "polyharmonic eps nan"), (5, [NAN, 0.1], "polyharmonic k nan"),
    (5, [1e30, 0.1], "polyharmonic k huge"), (5, [1.0, INF], "polyharmonic eps inf"),
    (6, [], "polynomial empty"), (6, [3.0], "polynomial 1 param"), (6, [3.0, 1.0], "polynomial 2 params"),
    (6, [3.0, 1.0, 1.0, 1.0], "polynomial 4 params"), (6, [0.0, 1.0, 1.0], "polynomial degree 0"),
    (6, [-3.0, 1.0, 1.0], "polynomial degree < 0"), (6, [2.5, 1.0, 1.0], "polynomial degree not integer"),
    (6, [1e30, 1.0, 1.0], "polynomial degree huge"), (6, [3.0, 0.0, 1.0], "polynomial gamma 0"),
    (6, [3.0, -1.0, 1.0], "polynomial gamma < 0"), (6, [3.0, NAN, 1.0], "polynomial gamma nan"),
    (6, [3.0, 1.0, NAN], "polynomial coef0 nan"), (6, [3.0, 1.0, INF], "polynomial coef0 inf"),
]
GOOD_FAMILIES = [
    (0, [1.0]), (0, [0.5, 1.0, 2.0]), (1, [1.0, 0.5, 2.0]), (2, [-0.5, 1.0]), (2, [-1.5, 0.5, 2.0]), (3, [0.5, 2.0]),
    (4, []), (5, [1.0, 0.0]), (5, [2.0, 0.1]), (5, [-1.0, 0.5]), (6, [3.0, 0.5, 1.0]), (6, [1.0, 1.0, -2.0]), (7, []),
]
FAMILY_NAMES = ("params", "family", "sigma", "sigmas")


class Cases:
    def __init__(self):
        self.items = []

    def add(self, op, name, fn, expect="raise", names=()):
        """expect: "raise" (a RuntimeError / ValueError / TypeError naming one of `names`), "ok", "any"."""
        self.items.append(dict(op=op, name=name, fn=fn, expect=expect, names=list(names)))


def build(backend: str) -> list:
    import gankernels  # noqa: F401  (registrations)
    import gankernels.langevin  # noqa: F401
    import gankernels.pulling_away  # noqa: F401
    import gankernels.score  # noqa: F401

    if backend == "cpu":
        o = torch.ops.gankernels
        ops = {name: getattr(o, name) for name in (
            "ksum", "ksum_and_square", "ksum_backward", "kform", "kflow", "kflow_backward", "smoothed_score", "smoothed_score_backward",
            "langevin_step", "langevin_step_", "kernel_langevin", "kde_langevin", "pulling_away",
            "pulling_away_backward", "family_constants")}
    else:
        from gankernels import triton_pairwise as te, triton_langevin as tlg, triton_pulling_away as tp
        from gankernels import triton_score as ts
        ops = dict(ksum=te.ksum, ksum_and_square=te.ksum_and_square, ksum_backward=te.ksum_backward, kform=te.kform, kflow=te.kflow, kflow_backward=te.kflow_backward,
                   smoothed_score=ts.smoothed_score, smoothed_score_backward=ts.smoothed_score_backward,
                   langevin_step=tlg.langevin_step, langevin_step_=tlg.langevin_step_,
                   kernel_langevin=tlg.kernel_langevin, kde_langevin=tlg.kde_langevin,
                   pulling_away=tp.pulling_away, pulling_away_backward=tp.pulling_away_backward,
                   family_constants=te._kernel_params)

    cs = Cases()
    x, y = _t(N, D, seed=0), _t(M, D, seed=1)
    w, a, b = _t(M, C, seed=2), _t(N, C, seed=3), _t(M, C, seed=4)
    g_sum, h = _t(N, C, seed=5), _t(N, D, seed=6)
    m3, m4 = [True, True, True], [True, True, True, True]
    meta = torch.device("meta")

    # ---------------------------------------------------------------- the pairwise engine ops
    pair_calls = {
        "ksum": lambda fam, p: ops["ksum"](x, y, w, fam, p),
        "ksum_and_square": lambda fam, p: ops["ksum_and_square"](x, a, fam, p),
        "ksum_backward": lambda fam, p: ops["ksum_backward"](g_sum, x, y, w, fam, p, m3),
        "kform": lambda fam, p: ops["kform"](x, y, g_sum, w, fam, p, [True, True]),
        "kflow": lambda fam, p: ops["kflow"](x, y, a, b, fam, p),
        "kflow_backward": lambda fam, p: ops["kflow_backward"](h, x, y, a, b, fam, p, m4),
        "kernel_langevin": lambda fam, p: ops["kernel_langevin"](x, y, torch.ones(M), fam, p, 0.1, 1, 1.0, 0),
        "family_constants": lambda fam, p: ops["family_constants"](fam, p, torch.float32),
    }
    for op, call in pair_calls.items():
        for fam, p, what in BAD_FAMILIES:
            cs.add(op, f"{what} {fam} {p}", (lambda call=call, fam=fam, p=p: call(fam, p)), names=FAMILY_NAMES)
        for fam, p in GOOD_FAMILIES:
            cs.add(op, f"good {fam} {p}", (lambda call=call, fam=fam, p=p: call(fam, p)), expect="ok")
    # The reported crashes, verbatim.
    x4 = torch.randn(4, 3)
    w4 = torch.randn(4, 2)
    cs.add("ksum", "reported: ksum(x, x, w, 6, [])", lambda: ops["ksum"](x4, x4, w4, 6, []), names=FAMILY_NAMES)
    cs.add("kflow", "reported: kflow(x, x, w, w, 1, [])", lambda: ops["kflow"](x4, x4, w4, w4, 1, []),
           names=FAMILY_NAMES)
    cs.add("kernel_langevin", "reported: kernel_langevin(x, x, ones, 5, [])",
           lambda: ops["kernel_langevin"](x4, x4, torch.ones(4), 5, [], .1, 1, 1., 0), names=FAMILY_NAMES)
    cs.add("ksum", "reported: ksum(x, x, w, 0, [0.0])", lambda: ops["ksum"](x4, x4, w4, 0, [0.0]), names=FAMILY_NAMES)

    G = [1.0]
    ksum, ksb, kflow, kfb = ops["ksum"], ops["ksum_backward"], ops["kflow"], ops["kflow_backward"]
    kform, m2 = ops["kform"], [True, True]
    points = [  # bad x / y (same list for every engine op); (name, x, y, names)
        ("x 1-D", x[0], y, ("x",)), ("x 3-D", x[None], y, ("x",)), ("x no rows", x[:0], y, ("x",)),
        ("x no columns", x[:, :0], y[:, :0], ("x",)), ("x int", x.long(), y.long(), ("x",)),
        ("x bool", x > 0, y > 0, ("x",)),
        ("y 1-D", x, y[0], ("y",)), ("y no rows", x, y[:0], ("y",)), ("y other dim", x, y[:, :2], ("x", "y")),
        ("y other dtype", x, y.double(), ("x", "y")), ("y int", x, y.long(), ("y",)),
    ]
    for what, xb, yb, nm in points:
        cs.add("ksum", what, lambda xb=xb, yb=yb: ksum(xb, yb, w, 0, G), names=nm)
        cs.add("ksum_backward", what, lambda xb=xb, yb=yb: ksb(g_sum, xb, yb, w, 0, G, m3), names=nm)
        cs.add("kflow", what, lambda xb=xb, yb=yb: kflow(xb, yb, a, b, 0, G), names=nm)
        cs.add("kflow_backward", what, lambda xb=xb, yb=yb: kfb(h, xb, yb, a, b, 0, G, m4), names=nm)
        cs.add("kform", what, lambda xb=xb, yb=yb: kform(xb, yb, g_sum, w, 0, G, m2), names=nm)
    for what, call, nm in [
        ("w rows", lambda: ksum(x, y, w[:3], 0, G), ("w",)),
        ("w 1-D", lambda: ksum(x, y, w[:, 0], 0, G), ("w",)),
        ("w 3-D", lambda: ksum(x, y, w[None], 0, G), ("w",)),
        ("w int", lambda: ksum(x, y, w.long(), 0, G), ("w",)),
        ("self mode w rows", lambda: ksum(x, None, w, 0, G), ("w",)),
        ("w meta", lambda: ksum(x, y, w.to(meta), 0, G), ()),
        ("missing params", lambda: ksum(x, y, w, 0), ("params",)),
        ("extra argument", lambda: ksum(x, y, w, 0, G, 1), ()),
        ("params not a list", lambda: ksum(x, y, w, 0, "1.0"), ("params",)),
        ("family not an int", lambda: ksum(x, y, w, 0.5, G), ("family",)),
        ("w no columns", lambda: ksum(x, y, w[:, :0], 0, G), ("w",)),
    ]:
        cs.add("ksum", what, call, expect="any" if what == "w no columns" else "raise", names=nm)
    for what, call, nm in [
        ("grad rows", lambda: ksb(g_sum[:4], x, y, w, 0, G, m3), ("grad",)),
        ("grad columns", lambda: ksb(g_sum[:, :1], x, y, w, 0, G, m3), ("grad", "w")),
        ("grad 1-D", lambda: ksb(g_sum[:, 0], x, y, w, 0, G, m3), ("grad",)),
        ("grad int", lambda: ksb(g_sum.long(), x, y, w, 0, G, m3), ("grad",)),
        ("w rows", lambda: ksb(g_sum, x, y, w[:3], 0, G, m3), ("w",)),
        ("w int", lambda: ksb(g_sum, x, y, w.long(), 0, G, m3), ("w",)),
        ("self mode w rows", lambda: ksb(g_sum, x, None, w, 0, G, m3), ("w",)),
        ("mask of 2", lambda: ksb(g_sum, x, y, w, 0, G, [True, True]), ()),
        ("missing mask", lambda: ksb(g_sum, x, y, w, 0, G), ("output_mask", "mask")),
    ]:
        cs.add("ksum_backward", what, call, names=nm)
    for what, call, nm in [
        ("a rows", lambda: kflow(x, y, a[:4], b, 0, G), ("a",)),
        ("b rows", lambda: kflow(x, y, a, b[:3], 0, G), ("b",)),
        ("a b columns", lambda: kflow(x, y, a, b[:, :1], 0, G), ("a", "b")),
        ("a 1-D", lambda: kflow(x, y, a[:, 0], b, 0, G), ("a",)),
        ("b int", lambda: kflow(x, y, a, b.long(), 0, G), ("b",)),
        ("self mode b rows", lambda: kflow(x, None, a, b, 0, G), ("b",)),
        ("missing b", lambda: kflow(x, y, a, 0, G), ()),
    ]:
        cs.add("kflow", what, call, names=nm)
    for what, call, nm in [
        ("grad columns", lambda: kfb(h[:, :2], x, y, a, b, 0, G, m4), ("grad",)),
        ("grad rows", lambda: kfb(h[:4], x, y, a, b, 0, G, m4), ("grad",)),
        ("grad int", lambda: kfb(h.long(), x, y, a, b, 0, G, m4), ("grad",)),
        ("a rows", lambda: kfb(h, x, y, a[:4], b, 0, G, m4), ("a",)),
        ("b rows", lambda: kfb(h, x, y, a, b[:3], 0, G, m4), ("b",)),
        ("a b columns", lambda: kfb(h, x, y, a, b[:, :1], 0, G, m4), ("a", "b")),
        ("self mode b rows", lambda: kfb(h, x, None, a, b, 0, G, m4), ("b",)),
        ("mask of 3", lambda: kfb(h, x, y, a, b, 0, G, m3), ()),
    ]:
        cs.add("kflow_backward", what, call, names=nm)
    for what, call, nm in [
        ("g rows", lambda: kform(x, y, g_sum[:4], w, 0, G, m2), ("g",)),
        ("g columns", lambda: kform(x, y, g_sum[:, :1], w, 0, G, m2), ("g", "w")),
        ("g int", lambda: kform(x, y, g_sum.long(), w, 0, G, m2), ("g",)),
        ("w rows", lambda: kform(x, y, g_sum, w[:3], 0, G, m2), ("w",)),
        ("self mode w rows", lambda: kform(x, None, g_sum, w, 0, G, m2), ("w",)),
        ("mask of 3", lambda: kform(x, y, g_sum, w, 0, G, m3), ()),
        ("missing mask", lambda: kform(x, y, g_sum, w, 0, G), ("output_mask", "mask")),
    ]:
        cs.add("kform", what, call, names=nm)
    ksq = ops["ksum_and_square"]
    for what, xb, _yb, nm in points:
        if what.startswith("x "):
            cs.add("ksum_and_square", what, lambda xb=xb: ksq(xb, a, 0, G), names=nm)
    for what, call, nm in [
        ("w rows", lambda: ksq(x, w, 0, G), ("w",)),
        ("w 1-D", lambda: ksq(x, a[:, 0], 0, G), ("w",)),
        ("w 3-D", lambda: ksq(x, a[None], 0, G), ("w",)),
        ("w int", lambda: ksq(x, a.long(), 0, G), ("w",)),
        ("w bool", lambda: ksq(x, a > 0, 0, G), ("w",)),
        ("w meta", lambda: ksq(x, a.to(meta), 0, G), ()),
        ("missing params", lambda: ksq(x, a, 0), ("params",)),
        ("extra argument", lambda: ksq(x, a, 0, G, 1), ()),
        ("y given", lambda: ksq(x, x, a, 0, G), ()),
        ("family not an int", lambda: ksq(x, a, 0.5, G), ("family",)),
        ("w no columns", lambda: ksq(x, a[:, :0], 0, G), ("w",)),
    ]:
        cs.add("ksum_and_square", what, call, expect="any" if what == "w no columns" else "raise", names=nm)

    xn = x.clone()
    xn[1, 2] = NAN
    cs.add("ksum_and_square", "nan in x gives nan", lambda: ksq(xn, a, 0, G), expect="ok")
    cs.add("ksum", "nan in x gives nan", lambda: ksum(xn, y, w, 0, G), expect="ok")
    cs.add("kflow", "nan in x gives nan", lambda: kflow(xn, y, a, b, 0, G), expect="ok")
    cs.add("kform", "nan in x gives nan", lambda: kform(xn, y, g_sum, w, 0, G, m2), expect="ok")

    # ---------------------------------------------------------------- smoothed score
    ss, ssb = ops["smoothed_score"], ops["smoothed_score_backward"]
    wv = torch.rand(M) + 0.1
    for what, call, nm in [
        ("sigma 0", lambda: ss(x, y, None, 0.0), ("sigma",)),
        ("sigma < 0", lambda: ss(x, y, None, -1.0), ("sigma",)),
        ("sigma nan", lambda: ss(x, y, None, NAN), ("sigma",)),
        ("sigma inf", lambda: ss(x, y, None, INF), ("sigma",)),
        ("x 1-D", lambda: ss(x[0], y, None, 1.0), ("x",)),
        ("x no rows", lambda: ss(x[:0], y, None, 1.0), ("x",)),
        ("x int", lambda: ss(x.long(), y.long(), None, 1.0), ("x",)),
        ("y other dim", lambda: ss(x, y[:, :2], None, 1.0), ("x", "y")),
        ("y other dtype", lambda: ss(x, y.double(), None, 1.0), ("x", "y")),
        ("y no rows", lambda: ss(x, y[:0], None, 1.0), ("y",)),
        ("weights length", lambda: ss(x, y, wv[:3], 1.0), ("w", "weights")),
        ("weights 2-D", lambda: ss(x, y, wv[:, None], 1.0), ("w", "weights")),
        ("weights int", lambda: ss(x, y, torch.ones(M, dtype=torch.long), 1.0), ("w", "weights")),
        ("missing sigma", lambda: ss(x, y, None), ("sigma",)),
    ]:
        cs.add("smoothed_score", what, call, names=nm)
    # The weights' values are checked by the C++ kernel; the Triton launcher leaves them to the
    # Python API (a check would cost a device sync per call) and gives NaN: it must not crash.
    data_expect = "raise" if backend == "cpu" else "any"
    cs.add("smoothed_score", "weights negative", lambda: ss(x, y, wv - 1.0, 1.0), data_expect, ("weights",))
    cs.add("smoothed_score", "weights all zero", lambda: ss(x, y, torch.zeros(M), 1.0), data_expect, ("weights",))
    cs.add("smoothed_score", "good", lambda: ss(x, y, wv, 0.7), expect="ok")
    cs.add("smoothed_score", "good fp64 weights with fp32 points", lambda: ss(x, y, wv.double(), 0.7), expect="ok")
    if backend == "cpu":
        score, lse = ss(x, y, wv, 0.7)
    else:
        score, lse = ops["smoothed_score"](x, y, wv, 0.7)
    for what, call, nm in [
        ("sigma 0", lambda: ssb(h, x, y, wv, 0.0, score, lse, m3), ("sigma",)),
        ("sigma nan", lambda: ssb(h, x, y, wv, NAN, score, lse, m3), ("sigma",)),
        ("grad shape", lambda: ssb(h[:, :2], x, y, wv, 0.7, score, lse, m3), ("grad",)),
        ("grad rows", lambda: ssb(h[:4], x, y, wv, 0.7, score, lse, m3), ("grad",)),
        ("grad int", lambda: ssb(h.long(), x, y, wv, 0.7, score, lse, m3), ("grad",)),
        ("score shape", lambda: ssb(h, x, y, wv, 0.7, score[:4], lse, m3), ("score",)),
        ("score int", lambda: ssb(h, x, y, wv, 0.7, score.long(), lse, m3), ("score",)),
        ("lse length", lambda: ssb(h, x, y, wv, 0.7, score, lse[:4], m3), ("lse",)),
        ("lse 2-D", lambda: ssb(h, x, y, wv, 0.7, score, lse[:, None], m3), ("lse",)),
        ("lse int", lambda: ssb(h, x, y, wv, 0.7, score, lse.long(), m3), ("lse",)),
        ("weights length", lambda: ssb(h, x, y, wv[:3], 0.7, score, lse, m3), ("w", "weights")),
        ("y other dim", lambda: ssb(h, x, y[:, :2], wv, 0.7, score, lse, m3), ("x", "y")),
        ("mask of 2", lambda: ssb(h, x, y, wv, 0.7, score, lse, [True, True]), ()),
    ]:
        cs.add("smoothed_score_backward", what, call, names=nm)
    cs.add("smoothed_score_backward", "good", lambda: ssb(h, x, y, wv, 0.7, score, lse, m3), expect="ok")

    # ---------------------------------------------------------------- Langevin
    step, step_ = ops["langevin_step"], ops["langevin_step_"]
    for op, fn in (("langevin_step", step), ("langevin_step_", step_)):
        for what, call, nm in [
            ("step_size 0", lambda fn=fn: fn(x.clone(), h, 0.0, 1.0, 0), ("step_size",)),
            ("step_size < 0", lambda fn=fn: fn(x.clone(), h, -0.1, 1.0, 0), ("step_size",)),
            ("step_size nan", lambda fn=fn: fn(x.clone(), h, NAN, 1.0, 0), ("step_size",)),
            ("step_size inf", lambda fn=fn: fn(x.clone(), h, INF, 1.0, 0), ("step_size",)),
            ("temperature < 0", lambda fn=fn: fn(x.clone(), h, 0.1, -1.0, 0), ("temperature",)),
            ("temperature nan", lambda fn=fn: fn(x.clone(), h, 0.1, NAN, 0), ("temperature",)),
            ("temperature inf", lambda fn=fn: fn(x.clone(), h, 0.1, INF, 0), ("temperature",)),
            ("drift shape", lambda fn=fn: fn(x.clone(), h[:4], 0.1, 1.0, 0), ("drift",)),
            ("drift numel", lambda fn=fn: fn(x.clone(), h.flatten(), 0.1, 1.0, 0), ("drift",)),
            ("drift dtype", lambda fn=fn: fn(x.clone(), h.double(), 0.1, 1.0, 0), ("drift",)),
            ("x int", lambda fn=fn: fn(x.long(), h.long(), 0.1, 1.0, 0), ("x",)),
            ("x int drift float", lambda fn=fn: fn(x.long(), h, 0.1, 1.0, 0), ("x", "drift")),
            ("x non-contiguous drift shape", lambda fn=fn: fn(x.clone().t(), h, 0.1, 1.0, 0), ("drift",)),
            ("missing seed", lambda fn=fn: fn(x.clone(), h, 0.1, 1.0), ("seed",)),
        ]:
            cs.add(op, what, call, names=nm)
        cs.add(op, "good", lambda fn=fn: fn(x.clone(), h, 0.1, 1.0, 3), expect="ok")
        cs.add(op, "good non-contiguous", lambda fn=fn: fn(x.clone().t(), h.t(), 0.1, 1.0, 3), expect="ok")
        cs.add(op, "good fp16", lambda fn=fn: fn(x.half(), h.half(), 0.1, 1.0, 3), expect="ok")
    kl = ops["kernel_langevin"]
    ones = torch.ones(M)
    for what, call, nm in [
        ("centers other dim", lambda: kl(x, y[:, :2], ones, 0, G, 0.1, 1, 1.0, 0), ("x", "centers")),
        ("centers other dtype", lambda: kl(x, y.double(), ones, 0, G, 0.1, 1, 1.0, 0), ("x", "centers")),
        ("centers no rows", lambda: kl(x, y[:0], ones[:0], 0, G, 0.1, 1, 1.0, 0), ("centers",)),
        ("x 1-D", lambda: kl(x[0], y, ones, 0, G, 0.1, 1, 1.0, 0), ("x",)),
        ("x int", lambda: kl(x.long(), y.long(), ones, 0, G, 0.1, 1, 1.0, 0), ("x",)),
        ("w length", lambda: kl(x, y, ones[:3], 0, G, 0.1, 1, 1.0, 0), ("w", "weights")),
        ("w 2-D", lambda: kl(x, y, ones[:, None], 0, G, 0.1, 1, 1.0, 0), ("w", "weights")),
        ("w int", lambda: kl(x, y, ones.long(), 0, G, 0.1, 1, 1.0, 0), ("w", "weights")),
        ("steps < 0", lambda: kl(x, y, ones, 0, G, 0.1, -1, 1.0, 0), ("steps",)),
        ("step_size 0", lambda: kl(x, y, ones, 0, G, 0.0, 1, 1.0, 0), ("step_size",)),
        ("step_size nan", lambda: kl(x, y, ones, 0, G, NAN, 1, 1.0, 0), ("step_size",)),
        ("temperature < 0", lambda: kl(x, y, ones, 0, G, 0.1, 1, -1.0, 0), ("temperature",)),
        ("bad family with 0 steps", lambda: kl(x, y, ones, 6, [], 0.1, 0, 1.0, 0), FAMILY_NAMES),
    ]:
        cs.add("kernel_langevin", what, call, names=nm)
    cs.add("kernel_langevin", "good 0 steps", lambda: kl(x, y, ones, 0, G, 0.1, 0, 1.0, 0), expect="ok")
    kde = ops["kde_langevin"]
    for what, call, nm in [
        ("sigmas empty", lambda: kde(x, y, [], 1, 0.1, 0), ("sigmas",)),
        ("sigmas 0", lambda: kde(x, y, [1.0, 0.0], 1, 0.1, 0), ("sigmas",)),
        ("sigmas < 0", lambda: kde(x, y, [-1.0], 1, 0.1, 0), ("sigmas",)),
        ("sigmas nan", lambda: kde(x, y, [NAN], 1, 0.1, 0), ("sigmas",)),
        ("sigmas inf", lambda: kde(x, y, [INF], 1, 0.1, 0), ("sigmas",)),
        ("steps_per_sigma < 0", lambda: kde(x, y, [1.0], -1, 0.1, 0), ("steps_per_sigma",)),
        ("eps 0", lambda: kde(x, y, [1.0], 1, 0.0, 0), ("eps",)),
        ("eps nan", lambda: kde(x, y, [1.0], 1, NAN, 0), ("eps",)),
        ("data other dim", lambda: kde(x, y[:, :2], [1.0], 1, 0.1, 0), ("x", "data")),
        ("data other dtype", lambda: kde(x, y.double(), [1.0], 1, 0.1, 0), ("x", "data")),
        ("data no rows", lambda: kde(x, y[:0], [1.0], 1, 0.1, 0), ("data",)),
        ("x int", lambda: kde(x.long(), y.long(), [1.0], 1, 0.1, 0), ("x",)),
        ("bad sigmas with 0 steps", lambda: kde(x, y, [0.0], 0, 0.1, 0), ("sigmas",)),
    ]:
        cs.add("kde_langevin", what, call, names=nm)
    cs.add("kde_langevin", "good", lambda: kde(x, y, [1.0, 0.5], 1, 0.01, 0), expect="ok")

    # ---------------------------------------------------------------- pulling-away term
    pa, pab = ops["pulling_away"], ops["pulling_away_backward"]
    one = torch.ones(())
    for op, fn in (("pulling_away", lambda s, e, al: pa(s, e, al)),
                   ("pulling_away_backward", lambda s, e, al: pab(one, s, e, al))):
        for what, call, nm in [
            ("s 1-D", lambda fn=fn: fn(x[0], 1e-8, 0), ("s",)),
            ("s 3-D", lambda fn=fn: fn(x[None], 1e-8, 0), ("s",)),
            ("s one row", lambda fn=fn: fn(x[:1], 1e-8, 0), ("s",)),
            ("s no columns", lambda fn=fn: fn(x[:, :0], 1e-8, 0), ("s",)),
            ("s int", lambda fn=fn: fn(x.long(), 1e-8, 0), ("s",)),
            ("eps 0", lambda fn=fn: fn(x, 0.0, 0), ("eps",)),
            ("eps < 0", lambda fn=fn: fn(x, -1.0, 0), ("eps",)),
            ("eps nan", lambda fn=fn: fn(x, NAN, 0), ("eps",)),
            ("eps inf", lambda fn=fn: fn(x, INF, 0), ("eps",)),
            ("algorithm 2", lambda fn=fn: fn(x, 1e-8, 2), ("algorithm",)),
            ("algorithm -1", lambda fn=fn: fn(x, 1e-8, -1), ("algorithm",)),
        ]:
            cs.add(op, what, call, names=nm)
        cs.add(op, "good gram", lambda fn=fn: fn(x, 1e-8, 0), expect="ok")
        cs.add(op, "good covariance", lambda fn=fn: fn(x, 1e-8, 1), expect="ok")
    for what, call, nm in [
        ("grad 2 elements", lambda: pab(torch.ones(2), x, 1e-8, 0), ("grad",)),
        ("grad empty", lambda: pab(torch.ones(0), x, 1e-8, 0), ("grad",)),
        ("grad int", lambda: pab(torch.ones((), dtype=torch.long), x, 1e-8, 0), ("grad",)),
    ]:
        cs.add("pulling_away_backward", what, call, names=nm)
    return cs.items


def _summary(out) -> str:
    ts = [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]
    parts = []
    for t in ts:
        if t.device.type == "meta" or not t.is_floating_point() or t.numel() == 0:
            parts.append(f"{tuple(t.shape)}")
        else:
            parts.append(f"{tuple(t.shape)} finite={bool(torch.isfinite(t).all())}")
    return "; ".join(parts) if parts else repr(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=("cpu", "triton"), default="cpu")
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args()
    items = build(args.backend)
    print(f"COUNT {len(items)}", flush=True)
    for i in range(args.start, len(items)):
        c = items[i]
        print("START", i, json.dumps(dict(op=c["op"], name=c["name"])), flush=True)
        rec = dict(op=c["op"], name=c["name"], expect=c["expect"], names=c["names"])
        faulthandler.dump_traceback_later(CASE_TIMEOUT, exit=True)  # a watchdog thread: works inside C++ loops
        try:
            out = c["fn"]()
            rec.update(outcome="returned", detail=_summary(out))
        except Exception as e:  # noqa: BLE001  (the class is what the test checks)
            rec.update(outcome="raised", exc=[k.__name__ for k in type(e).__mro__], detail=str(e)[:400])
        faulthandler.cancel_dump_traceback_later()
        print("END", i, json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
