"""The runner of ``gankernels bench``: cases, timing, memory, errors, rows.

A case is (op, impl, mode, N, M, D, dtype, device, kernel).  For each input set
(op, N, M, D, dtype, device, kernel) the inputs are built once, deterministically,
and every implementation and mode runs on them in this process; the float64
reference is computed once per input set (the eager code in float64 when its
Gram matrices fit in ``ref_max_gb``, else the fused op in float64; above
``check_max_n`` points a pairwise op has no reference and the error is nan).

Protocol of one case
    CPU (``isolate``): first a probe -- a fresh subprocess that builds the same
    inputs (checksum verified), warms the thread pools, caps its data segment at
    its current size + ``mem_cap_gb`` (RLIMIT_DATA) and makes the call(s): its
    peak memory is VmHWM - VmRSS around the call (``/proc/self/clear_refs`` resets
    the high-water mark), i.e. the memory the call adds to its inputs and the
    runtime.  A probe that cannot allocate, or is killed by the OOM killer, gives
    an ``oom`` row; one that runs past ``time_limit_s`` is killed: ``too slow``.
    Then the timing, in this process: one warm-up call (two for torch.compile and
    KeOps, whose first call compiles; the difference is ``compile_s``), then as
    many calls as fit in ``budget_s`` (at most ``max_reps``); median, p20, p80.
    A call slower than ``slow_s`` in the probe is not repeated here: its probe
    time is the one sample (note "1 call").
    CUDA (and ``isolate=False``): everything in this process; CUDA memory is
    ``torch.cuda.max_memory_allocated`` around the call, times come from
    ``triton.testing.do_bench`` when Triton is installed.
    A case whose N x M temporaries (``OpSpec.dense_temps``) exceed ``mem_cap_gb`` is
    an ``oom`` row without being run.
    A case predicted (from the same implementation at a smaller N, scaled by model
    flops) to exceed ``time_limit_s`` is a ``too slow`` row -- after a probe of at
    most ``GRACE_S`` seconds, so that a case that would run out of memory first is
    an ``oom`` row (its big allocations fail at once).
    Modes: ``fwd`` (no autograd graph), ``bwd`` (backward calls on one retained
    forward graph; memory: what the backward adds), ``fwdbwd`` (fresh leaves,
    forward and backward).  Every failure is a row with nan and a reason.
"""
from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from . import machine
from .registry import IMPLS, MODES, OPS, OpSpec, Unavailable, build_impl, cast_inputs, checksum, parse_kernel

GIB = 1024 ** 3
STATUSES = ("ok", "oom", "too slow", "unavailable", "failed")
COMPILING_IMPLS = ("compile", "compile-expansion", "keops")   # the first call compiles
GRACE_S = 30.0   # probe time of a case predicted too slow (long enough to fail its big allocations)


@dataclass(frozen=True)
class Case:
    op: str
    impl: str
    mode: str
    n: int
    m: int
    d: int
    dtype: str = "float32"
    device: str = "cpu"
    kernel: str = ""          # repr of the kernel ('' for ops without one)

    def label(self) -> str:
        return f"{self.op} {self.impl} {self.mode} N={self.n} M={self.m} D={self.d}"


@dataclass
class Settings:
    threads: int = 2
    mem_cap_gb: float = 16.0
    time_limit_s: float = 300.0
    budget_s: float = 3.0
    max_reps: int = 10
    slow_s: Optional[float] = None      # default: budget_s
    seed: int = 0
    isolate: bool = True                # CPU: memory in a subprocess per case
    check_max_n: int = 16384            # no float64 reference above this many points
    ref_max_gb: float = 2.0             # eager float64 reference only when its Gram matrices fit in this

    def __post_init__(self):
        if self.slow_s is None:
            self.slow_s = self.budget_s


@dataclass
class Group:
    """A block of cases: the cross product of its fields (what one CLI invocation or preset entry asks)."""
    ops: Sequence[str]
    sizes: Sequence[int]
    dims: Sequence[int]
    ms: Optional[Sequence[int]] = None          # None: M = N
    modes: Sequence[str] = MODES
    impls: Sequence[str] = IMPLS
    kernels: Sequence[str] = ("gaussian",)
    dtype: str = "float32"
    device: str = "cpu"
    name: str = ""


# ============================================================================= one call, its memory, its error

def _primary(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _cotangent(out: torch.Tensor) -> torch.Tensor:
    """A fixed cotangent for the backward (the same values in every process and dtype)."""
    if out.dim() == 0:
        return torch.ones_like(out)
    g = torch.Generator().manual_seed(12345)
    return torch.randn(out.shape, generator=g, dtype=torch.float64).to(device=out.device, dtype=out.dtype)


def make_call(fn: Callable, inputs: Dict[str, Any], mode: str, grads: Sequence[str]) -> Callable[[], Tuple]:
    """A closure that runs one ``mode`` call and returns (output, gradients)."""
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                return _primary(fn(inputs)), ()
        return fwd

    def forward():
        inp = dict(inputs)
        leaves = [inp[k].detach().requires_grad_(True) for k in grads]
        inp.update(zip(grads, leaves))
        return _primary(fn(inp)), leaves

    if mode == "fwdbwd":
        def fwdbwd():
            out, leaves = forward()
            return out.detach(), torch.autograd.grad(out, leaves, _cotangent(out))
        return fwdbwd
    out, leaves = forward()   # bwd: one graph, retained for every timed backward
    cot = _cotangent(out)
    return lambda: (out.detach(), torch.autograd.grad(out, leaves, cot, retain_graph=True))


def errors(result: Tuple, reference: Tuple, mode: str) -> Dict[str, float]:
    """max |result - reference| over the compared tensors, absolute and relative to max |reference|."""
    def parts(r):
        return ([r[0]] if mode != "bwd" else []) + (list(r[1]) if mode != "fwd" else [])
    err_abs = err_rel = 0.0
    for a, b in zip(parts(result), parts(reference)):
        a, b = a.detach().double().cpu(), b.detach().double().cpu()
        e = float((a - b).abs().max())
        scale = float(b.abs().max())
        err_abs = max(err_abs, e) if not math.isnan(e) else e
        err_rel = max(err_rel, e / scale if scale > 0 else e) if not math.isnan(e) else e
        if math.isnan(e):
            break
    return {"err_abs": err_abs, "err_rel": err_rel}


def _proc_status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class MemoryMeter:
    """Peak memory a call adds: CUDA allocator peak, or VmHWM - VmRSS (Linux, high-water mark reset first)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def start(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        gc.collect()
        try:
            import ctypes
            ctypes.CDLL(None).malloc_trim(0)   # glibc: give freed heap back, so VmRSS is the live memory
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass  # the peak then includes what the process reached before
        self.base = (_proc_status_kib("VmRSS") or 0) * 1024

    def stop(self) -> Dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            return {"peak_mem_mb": (peak - self.base) / 2 ** 20, "peak_total_mb": peak / 2 ** 20}
        hwm = (_proc_status_kib("VmHWM") or 0) * 1024
        return {"peak_mem_mb": max(hwm - self.base, 0) / 2 ** 20, "peak_total_mb": hwm / 2 ** 20}


def is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    msg = str(e).lower()
    return any(s in msg for s in ("can't allocate memory", "cannot allocate memory", "not enough memory",
                                  "out of memory", "std::bad_alloc"))


def failure_reason(e: BaseException, cap_gb: Optional[float] = None) -> Tuple[str, str]:
    """(status, reason) of an exception: "oom" with the size asked for, else "failed"."""
    msg = f"{type(e).__name__}: {e}".replace("\n", " ")
    if not is_oom(e):
        return "failed", f"failed: {msg[:300]}"
    import re
    asked = re.search(r"tried to allocate (\d+) bytes", msg)
    what = f"an allocation of {int(asked.group(1)) / 2 ** 20:,.0f} MiB failed" if asked else msg[:200]
    return "oom", "out of memory" + (f" (cap {cap_gb:g} GB)" if cap_gb else "") + f": {what}"


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def _time_calls(call, first_s: float, settings: Settings, device: str) -> List[float]:
    if device.startswith("cuda"):
        try:
            from triton.testing import do_bench
            # every timed call (CUDA events, L2 flushed in between), so n and p20 / p80 are of real samples
            times = do_bench(call, warmup=1, rep=max(1, int(settings.budget_s * 1e3)), return_mode="all")
            return [t / 1e3 for t in times]
        except (ImportError, TypeError, ValueError):  # no Triton, or one without return_mode="all"
            pass
    sync = _sync(device)
    reps = int(max(1, min(settings.max_reps, settings.budget_s // max(first_s, 1e-9))))
    return machine.wall_times(call, reps, warmup=0, sync=sync)


def io_bytes(inputs: Dict[str, Any], out: torch.Tensor, grads: Sequence[str], mode: str) -> float:
    """Model bytes: every input read once, the output (and in the bwd modes the gradients) written once."""
    total = sum(v.nbytes for v in inputs.values() if isinstance(v, torch.Tensor)) + out.nbytes
    if mode != "fwd":
        total += sum(inputs[k].nbytes for k in grads)
    return float(total)


def execute(spec: OpSpec, case: Case, inputs: Dict[str, Any], reference: Optional[Tuple], settings: Settings,
            memory: bool, timing: bool, before_calls: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Runs one case in this process: warm-up call(s) (the last one with memory measured when ``memory``),
    the error against ``reference``, and with ``timing`` the timed calls.  Raises on failure."""
    fn = build_impl(spec, case.impl, inputs)
    call = make_call(fn, inputs, case.mode, spec.grads)
    sync = _sync(case.device)
    meter = MemoryMeter(case.device)
    if before_calls:
        before_calls()
    res: Dict[str, Any] = {}
    warm: List[float] = []
    # the first call of torch.compile / KeOps compiles: a second one, when affordable, gives the steady cost
    while not warm or (len(warm) == 1 and case.impl in COMPILING_IMPLS and warm[0] <= settings.time_limit_s / 3):
        if memory:
            meter.start()
        t0 = time.perf_counter()
        out = call()
        sync()
        warm.append(time.perf_counter() - t0)
        if memory:
            res.update(meter.stop())
    res.update(first_call_s=warm[0], call_s=warm[-1], io_bytes=io_bytes(inputs, out[0], spec.grads, case.mode))
    if len(warm) == 2:
        res["compile_s"] = max(warm[0] - warm[-1], 0.0)
    elif case.impl in COMPILING_IMPLS:
        res["note"] = "1 call, compile included"
    if reference is not None:
        if spec.deterministic is not None:
            out = make_call(fn, spec.deterministic(inputs), case.mode, spec.grads)()
        res.update(errors(out, reference, case.mode))
    if timing:
        times = [warm[-1]] if warm[-1] > settings.slow_s else _time_calls(call, warm[-1], settings, case.device)
        res.update(median_s=machine.percentile(times, 50), p20_s=machine.percentile(times, 20),
                   p80_s=machine.percentile(times, 80), reps=len(times),
                   note=res.get("note") or ("1 call" if len(times) == 1 else ""))
    return res


# ============================================================================= the probe subprocess

def _limit_data(extra_gb: float) -> Callable[[], None]:
    """Caps the data segment at its current size + ``extra_gb``; returns the function that lifts the cap."""
    import resource
    old = resource.getrlimit(resource.RLIMIT_DATA)
    now = (_proc_status_kib("VmData") or 0) * 1024
    lim = int(now + extra_gb * GIB)
    if old[1] != resource.RLIM_INFINITY:
        lim = min(lim, old[1])
    resource.setrlimit(resource.RLIMIT_DATA, (lim, old[1]))
    return lambda: resource.setrlimit(resource.RLIMIT_DATA, old)


def _warm_up(spec: OpSpec, case: Case, seed: int) -> None:
    """Before the cap: one call of the case on 16 points, so that lazy imports, autograd and the OpenMP
    pools (their thread stacks count against the cap) are set up (not for the compiling impls: shape-specific)."""
    if case.impl in COMPILING_IMPLS:
        return
    tiny = dataclasses.replace(case, n=min(case.n, 16), m=min(case.m, 16))
    inputs = case_inputs(tiny, seed)
    try:
        make_call(build_impl(spec, case.impl, inputs), inputs, case.mode, spec.grads)()
    except Exception:  # noqa: BLE001 -- the real call reports what is wrong
        pass


def case_inputs(case: Case, seed: int) -> Dict[str, Any]:
    spec = OPS[case.op]
    kernel = parse_kernel(case.kernel) if case.kernel else None
    inputs64 = spec.make(case.n, case.m, case.d, seed, kernel)
    return cast_inputs(inputs64, getattr(torch, case.dtype), case.device)


def probe_main(job_path: Optional[str] = None) -> None:
    """Entry point of the probe subprocess: ``python -c "...probe_main()" JOB.json``."""
    with open(job_path or sys.argv[-1]) as f:
        job = json.load(f)
    case, settings = Case(**job["case"]), Settings(**job["settings"])
    out: Dict[str, Any] = {}
    lift = None
    try:
        torch.set_num_threads(settings.threads)
        inputs = case_inputs(case, settings.seed)
        if checksum(inputs) != job["checksum"]:
            out["note"] = "INPUT MISMATCH with the timing process"
        reference = torch.load(job["ref"]) if job.get("ref") else None
        _warm_up(OPS[case.op], case, settings.seed)

        def cap():
            nonlocal lift
            lift = _limit_data(settings.mem_cap_gb)
        out.update(execute(OPS[case.op], case, inputs, reference, settings, memory=True, timing=False,
                           before_calls=cap))
        out["status"] = "ok"
    except Unavailable as e:
        out.update(status="unavailable", reason=str(e))
    except BaseException as e:  # noqa: BLE001 -- every failure becomes a row
        if lift:
            lift()
        gc.collect()
        status, reason = failure_reason(e, settings.mem_cap_gb)
        out.update(status=status, reason=reason)
    if lift:
        lift()
    with open(job["out"], "w") as f:
        json.dump(out, f)


def run_probe(case: Case, settings: Settings, input_checksum: str, ref_path: Optional[str], tmp: str) -> Dict:
    """Runs the probe of ``case`` in a fresh process; always returns a dict with a status."""
    tag = f"{case.op}_{case.impl}_{case.mode}_{case.n}_{case.m}_{case.d}_{abs(hash(case))}"
    job_path, out_path, log_path = (os.path.join(tmp, tag + ext) for ext in (".job.json", ".out.json", ".log"))
    with open(job_path, "w") as f:
        json.dump({"case": asdict(case), "settings": asdict(settings), "checksum": input_checksum,
                   "ref": ref_path, "out": out_path}, f)
    pkg_parent = os.path.dirname(os.path.dirname(machine._PACKAGE_DIR))
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads), MKL_NUM_THREADS=str(settings.threads),
               TORCHINDUCTOR_COMPILE_THREADS="1", PYTHONUNBUFFERED="1",
               # glibc: large blocks always fresh mappings (no reuse of freed heap), so the cap and the peak see them
               MALLOC_MMAP_THRESHOLD_="131072",
               PYTHONPATH=os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-c", "from gankernels.bench.runner import probe_main; probe_main()", job_path]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # OOM killer: this process is the one to go
            with open(f"/proc/{proc.pid}/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        try:
            rc = proc.wait(timeout=settings.time_limit_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the probe and its own children (compilers)
            except ProcessLookupError:
                pass
            proc.wait()
            return {"status": "too slow", "reason": f"too slow: killed after {settings.time_limit_s:g} s"}
    if os.path.exists(out_path):
        with open(out_path) as f:
            return json.load(f)
    if rc == -signal.SIGKILL:
        return {"status": "oom", "reason": "out of memory: killed by SIGKILL (the OOM killer)"}
    with open(log_path) as f:
        tail = [ln.strip() for ln in f.read().splitlines() if ln.strip()][-1:]
    return {"status": "failed", "reason": f"failed: exit code {rc}" + (f": {tail[0][:200]}" if tail else "")}


# ============================================================================= rows

ROW_FIELDS = (
    "op", "impl", "mode", "n", "m", "d", "dtype", "device", "device_name", "kernel", "group", "status", "reason",
    "note",
    "median_s", "p20_s", "p80_s", "reps", "first_call_s", "compile_s", "pairs_per_s", "gflops", "model_flops",
    "model_bytes", "roofline_bound", "roofline_frac", "peak_mem_mb", "peak_total_mb", "mem_source",
    "err_abs", "err_rel", "ref", "fused_speedup", "threads", "torch", "triton", "gankernels", "git",
)


def make_row(case: Case, spec: OpSpec, env: Dict, ceilings: Optional[Dict], status: str, reason: str = "",
             res: Optional[Dict] = None, ref_label: str = "", mem_source: str = "") -> Dict[str, Any]:
    nan = float("nan")
    res = res or {}
    row: Dict[str, Any] = {k: nan for k in ROW_FIELDS}
    row.update(asdict(case), group="")
    row.update({k: env.get(k) for k in ("device_name", "threads", "torch", "triton", "gankernels", "git")})
    row.update(status=status, reason=reason, note=res.get("note", ""), reps=res.get("reps", 0),
               roofline_bound="", ref=ref_label if "err_rel" in res else "", mem_source=mem_source)
    for k in ("median_s", "p20_s", "p80_s", "first_call_s", "compile_s", "peak_mem_mb", "peak_total_mb",
              "err_abs", "err_rel"):
        if res.get(k) is not None:
            row[k] = float(res[k])
    flops = spec.model_flops(case.n, case.m, case.d, case.mode)
    row["model_flops"] = flops
    row["model_bytes"] = res.get("io_bytes", nan)
    med = row["median_s"]
    if status == "ok" and med > 0:
        pairs = spec.pairs(case.n, case.m)
        row["gflops"] = flops / med / 1e9
        row["pairs_per_s"] = pairs / med if pairs else nan
        t_roof, bound = machine.roofline(flops, row["model_bytes"], ceilings)
        row["roofline_frac"], row["roofline_bound"] = t_roof / med, bound
    return row


def add_speedups(rows: List[Dict]) -> None:
    """fused_speedup on each baseline row: its median / the fused median of the same case."""
    key = lambda r: (r["group"], r["op"], r["mode"], r["n"], r["m"], r["d"], r["dtype"], r["device"],  # noqa
                     r["kernel"])
    fused = {key(r): r["median_s"] for r in rows if r["impl"] == "fused" and r["status"] == "ok"}
    for r in rows:
        f = fused.get(key(r))
        if r["impl"] != "fused" and r["status"] == "ok" and f:
            r["fused_speedup"] = r["median_s"] / f


# ============================================================================= the run

def expand(group: Group) -> List[Tuple[Tuple, List[Case]]]:
    """[(input-set key, its cases)] of a group, in run order (sizes ascending, then D, kernel, mode, impl)."""
    out = []
    for op in group.ops:
        spec = OPS[op]
        kernels = [repr(parse_kernel(k)) for k in group.kernels] if spec.kernel else [""]
        missing = spec.available()
        for n in sorted(group.sizes):
            for m in ([n] if spec.same_m or not group.ms else group.ms):
                for d in group.dims:
                    for kernel in kernels:
                        cases = []
                        for mode in (mo for mo in group.modes if mo in spec.modes()):
                            impls = ["fused"] if missing else [i for i in group.impls if i in spec.impls()]
                            cases += [Case(op, i, mode, n, m, d, group.dtype, group.device, kernel) for i in impls]
                        if cases:
                            out.append(((op, n, m, d, group.dtype, group.device, kernel), cases))
    return out


def reference_for(spec: OpSpec, case: Case, modes: Sequence[str], settings: Settings) -> Tuple[Optional[Tuple], str]:
    """float64 CPU (output, gradients) of the input set of ``case``, and which code made it."""
    too_big = spec.pairs(case.n, case.m) > 0 and max(case.n, case.m) > settings.check_max_n  # pairwise ops
    if spec.stochastic or spec.available() or too_big:
        return None, ""
    kernel = parse_kernel(case.kernel) if case.kernel else None
    inputs = spec.make(case.n, case.m, case.d, settings.seed, kernel)
    if spec.deterministic is not None:
        inputs = spec.deterministic(inputs)
    mode = "fwdbwd" if spec.grads and any(mo != "fwd" for mo in modes) else "fwd"
    impl = "eager" if spec.pairs(case.n, case.m) * 8 * 8 <= settings.ref_max_gb * GIB else "fused"
    with torch.random.fork_rng():
        return make_call(build_impl(spec, impl, inputs), inputs, mode, spec.grads)(), f"{impl} float64"


def _predict_s(rows: List[Dict], case: Case, spec: OpSpec) -> Optional[float]:
    prev = [r for r in rows if r["status"] == "ok" and r["n"] < case.n and all(
        r[k] == getattr(case, k) for k in ("op", "impl", "mode", "d", "dtype", "device", "kernel"))]
    if not prev:
        return None
    p = max(prev, key=lambda r: r["n"])
    return p["median_s"] * spec.model_flops(case.n, case.m, case.d, case.mode) / max(p["model_flops"], 1.0)


class Progress:
    """A progress bar over the cases on stderr (one line per case when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def bar(self) -> str:
        width = 24
        fill = int(width * self.done / max(self.total, 1))
        return f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {time.perf_counter() - self.t0:5.0f} s"

    def start(self, case: Case) -> None:
        if self.enabled and self.tty:
            sys.stderr.write(f"\r\033[K{self.bar()}  {case.label()} ...")
            sys.stderr.flush()

    def finish(self, row: Dict) -> None:
        self.done += 1
        if not self.enabled:
            return
        if row["status"] == "ok":
            what = f"{row['median_s'] * 1e3:.4g} ms, {row['peak_mem_mb']:.4g} MB"
        else:
            what = row["reason"]
        line = f"{self.bar()}  {Case(**{k: row[k] for k in Case.__dataclass_fields__}).label()}: {what}"
        sys.stderr.write(("\r\033[K" if self.tty else "") + line + "\n")
        sys.stderr.flush()

    def say(self, msg: str) -> None:
        if self.enabled:
            sys.stderr.write(("\r\033[K" if self.tty else "") + msg + "\n")
            sys.stderr.flush()


def run_case(case: Case, spec: OpSpec, inputs, reference, ref_path, settings, env, ceilings, rows, tmp) -> Dict:
    mk = lambda status, reason="", res=None, src="": make_row(  # noqa: E731
        case, spec, env, ceilings, status, reason, res, ref_label, src)
    ref_label = reference[1] if reference else ""
    ref_value = reference[0] if reference else None
    if case.impl == "fused" and spec.available():
        return mk("unavailable", spec.available())
    est = spec.mem_estimate(case.impl, case.mode, case.n, case.m, getattr(torch, case.dtype).itemsize)
    if settings.mem_cap_gb and est > settings.mem_cap_gb * GIB:
        return mk("oom", f"out of memory (cap {settings.mem_cap_gb:g} GB): not run, its N x M temporaries "
                         f"need ~{est / GIB:.1f} GB (registry memory model)")
    isolated = settings.isolate and case.device == "cpu"
    pred = _predict_s(rows, case, spec)
    slow = f"too slow: predicted {pred:.0f} s > limit {settings.time_limit_s:g} s" if (
        pred is not None and pred > settings.time_limit_s) else ""
    if slow and not isolated:
        return mk("too slow", slow)
    probe = None
    if isolated:
        # a case predicted too slow still gets a short probe: running out of memory is measured, not guessed
        short = dataclasses.replace(settings, time_limit_s=min(settings.time_limit_s, GRACE_S)) if slow else settings
        probe = run_probe(case, short, checksum(inputs), ref_path, tmp)
        if slow and probe.get("status") == "too slow":
            return mk("too slow", f"{slow} (probe stopped after {short.time_limit_s:g} s)")
        if probe.get("status") != "ok":
            return mk(probe.get("status", "failed"), probe.get("reason", ""), probe)
        if probe["call_s"] > settings.slow_s:   # slow: the probe's call is the one sample
            note = probe.get("note") or "1 call"
            res = dict(probe, median_s=probe["call_s"], p20_s=probe["call_s"], p80_s=probe["call_s"], reps=1,
                       note=note + ("" if "1 call" in note else "; 1 call") + " (isolated process)")
            return mk("ok", "", res, "isolated process")
    try:
        res = execute(spec, case, inputs, ref_value, settings, memory=not isolated, timing=True)
    except Unavailable as e:
        return mk("unavailable", str(e))
    except Exception as e:  # noqa: BLE001
        gc.collect()
        return mk(*failure_reason(e, settings.mem_cap_gb if case.device != "cpu" else None))
    if probe:
        for k in ("peak_mem_mb", "peak_total_mb", "compile_s"):
            if probe.get(k) is not None:
                res[k] = probe[k]
        if probe.get("note"):
            res["note"] = (probe["note"] + " " + res.get("note", "")).strip()
    src = "isolated process" if isolated else ("cuda allocator" if case.device != "cpu" else "in process")
    return mk("ok", "", res, src)


def run(groups: Sequence[Group], settings: Settings, ceilings: Optional[Dict] = None, progress: bool = True,
        command: str = "", note: str = "") -> Dict[str, Any]:
    """Runs every case of ``groups``; returns {"schema", "meta", "rows"} (see ``report``)."""
    torch.set_num_threads(settings.threads)
    plan = [(g.name or f"group {k + 1}", key, cases) for k, g in enumerate(groups) for key, cases in expand(g)]
    devices = sorted({c.device for _, _, cases in plan for c in cases}) or ["cpu"]
    env = machine.describe(devices[0], settings.threads)
    bar = Progress(sum(len(c) for _, _, c in plan), progress)
    if ceilings is None:
        bar.say(f"measuring the roofline ceilings of {env['device_name']} ...")
        ceilings = machine.measure_ceilings(devices[0])
    bar.say(f"{env['device_name']}: fp32 GEMM {ceilings['gemm_flops'] / 1e9:.1f} GFLOP/s, "
            f"copy {ceilings['copy_bytes_per_s'] / 1e9:.1f} GB/s, torch threads: {settings.threads}")
    if devices[0].startswith("cuda") and settings.mem_cap_gb:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, settings.mem_cap_gb * GIB / total))
    rows: List[Dict] = []
    t_start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="gankernels_bench_")
    old_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tmp, "inductor")  # probes compile cold, then this warm
    try:
        for k, (group, key, cases) in enumerate(plan):
            spec = OPS[cases[0].op]
            inputs = case_inputs(cases[0], settings.seed)
            reference = reference_for(spec, cases[0], [c.mode for c in cases], settings)
            ref_path = None
            if reference[0] is not None and settings.isolate:
                ref_path = os.path.join(tmp, f"ref{k}.pt")
                torch.save(reference[0], ref_path)
            for case in cases:
                bar.start(case)
                row = run_case(case, spec, inputs, reference if reference[0] is not None else None, ref_path,
                               settings, env, ceilings, rows, tmp)
                row["group"] = group
                rows.append(row)
                bar.finish(row)
            del inputs, reference
            gc.collect()
    finally:
        if old_cache is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = old_cache
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    add_speedups(rows)
    meta = dict(env, ceilings=ceilings, settings=asdict(settings), groups=[asdict(g) for g in groups],
                command=command, note=note, total_wall_s=time.perf_counter() - t_start,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return {"schema": SCHEMA, "meta": meta, "rows": rows}


SCHEMA = "gankernels-bench/1"
