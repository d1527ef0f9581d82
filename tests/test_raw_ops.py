"""The raw ops refuse bad arguments with an exception, never a signal.

Every registered ``torch.ops.gankernels`` op is called with unknown family codes,
wrong parameter counts, NaN / infinite / out-of-range parameters, mismatched shapes
and dtypes, and wrong arities (the cases are in ``raw_ops_worker.py``).  The calls
run in a subprocess, so that a segfault shows up as a negative return code: the
process prints a line before and after each case; when it dies, the case it had
started is recorded as killed by that signal and a new process carries on after it
(at most ``MAX_RESTARTS`` times).  A case that hangs (past the worker's per-case
watchdog) counts as a crash too.  A bad case must raise RuntimeError, ValueError or
TypeError whose message names the offending argument; the good cases mixed in
(one per kernel family, NaN data, ...) must return, so a worker that refuses
everything fails too.  ``test_triton_launchers_refuse_bad_arguments`` runs the same
cases against the Triton launchers (CPU tensors, ``TRITON_INTERPRET=1``).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "raw_ops_worker.py"
MAX_RESTARTS = 12
OPS = ("ksum", "ksum_and_square", "ksum_backward", "kform", "kflow", "kflow_backward", "smoothed_score", "smoothed_score_backward",
       "langevin_step", "langevin_step_", "kernel_langevin", "kde_langevin", "pulling_away",
       "pulling_away_backward", "family_constants")
ALLOWED = ("RuntimeError", "ValueError", "TypeError")


def run_worker(backend: str, extra_env=None, timeout=240):
    """-> (records by index, [(index, case, return code)] of the cases that killed the worker, case count)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra_env or {})
    records, killed, start, count = {}, [], 0, None
    for _ in range(MAX_RESTARTS + 1):
        proc = subprocess.run([sys.executable, str(WORKER), "--backend", backend, "--start", str(start)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        started = None
        for line in proc.stdout.splitlines():
            if line.startswith("COUNT "):
                count = int(line.split()[1])
            elif line.startswith("START "):
                _, i, payload = line.split(" ", 2)
                started = (int(i), json.loads(payload))
            elif line.startswith("END "):
                _, i, payload = line.split(" ", 2)
                records[int(i)] = json.loads(payload)
                started = None
        if proc.returncode == 0:
            return records, killed, count
        assert started is not None, f"worker failed outside a case (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
        killed.append((started[0], started[1], proc.returncode))
        start = started[0] + 1
    pytest.fail(f"the worker was killed more than {MAX_RESTARTS} times: {killed}")


def _names(msg: str, names) -> bool:
    return any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", msg) for n in names)


def check(records, killed, count, op):
    """Failures of op's cases, as lines."""
    assert count and len(records) + len(killed) == count, (count, len(records), killed)
    bad = [f"[{i}] {c['name']!r}: " + (f"killed by signal {-rc}" if rc < 0 else f"worker died (exit code {rc})")
           for i, c, rc in killed if c["op"] == op]
    mine = [(i, r) for i, r in sorted(records.items()) if r["op"] == op]
    assert mine or bad, f"no cases for {op}"
    for i, r in mine:
        tag = f"[{i}] {r['name']!r}:"
        if r["expect"] == "raise":
            if r["outcome"] != "raised":
                bad.append(f"{tag} returned {r['detail']}")
            elif not any(k in r["exc"] for k in ALLOWED):
                bad.append(f"{tag} raised {r['exc'][0]}: {r['detail']}")
            elif r["names"] and not _names(r["detail"], r["names"]):
                bad.append(f"{tag} message names none of {r['names']}: {r['detail']}")
        elif r["expect"] == "ok" and r["outcome"] != "returned":
            bad.append(f"{tag} raised {r['exc'][0]}: {r['detail']}")
    return bad


@pytest.fixture(scope="module")
def cpu_results():
    return run_worker("cpu")


@pytest.mark.parametrize("op", OPS)
def test_raw_op_refuses_bad_arguments(cpu_results, op):
    records, killed, count = cpu_results
    bad = check(records, killed, count, op)
    assert not bad, "\n".join(bad)


def test_every_registered_op_is_covered(cpu_results):
    import torch
    import gankernels  # noqa: F401
    records, _, _ = cpu_results
    registered = {name for name in torch._C._dispatch_get_all_op_names() if name.startswith("gankernels::")}
    assert registered == {f"gankernels::{op}" for op in OPS}
    assert {r["op"] for r in records.values()} == set(OPS)


@pytest.mark.triton
def test_triton_launchers_refuse_bad_arguments():
    pytest.importorskip("triton")
    records, killed, count = run_worker("triton", {"TRITON_INTERPRET": "1"}, timeout=600)
    bad = [line for op in OPS for line in check(records, killed, count, op)]
    assert not bad, "\n".join(bad)
