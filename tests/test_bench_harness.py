"""The benchmark harness itself (gankernels.bench): flop model, tables, the OOM row, JSON, CSV, plot, CLI.

Speed is not tested here (that is what the benchmark is for).  Runs are tiny:
N <= 128 in process (memory measured in process), plus two isolated probes under a 20 MB memory cap (the
out-of-memory path) and one probe past a 0.5 s time limit (the too-slow path).
The roofline ceilings are fixed numbers instead of a measurement.
"""
from __future__ import annotations

import csv
import itertools
import json
import math

import pytest
import torch

from gankernels.bench import cli, machine, registry, report, runner
from gankernels.bench.registry import OPS
from gankernels.bench.runner import ROW_FIELDS, STATUSES, Case, Group, Settings

CEILINGS = {"gemm_flops": 100e9, "copy_bytes_per_s": 10e9, "gemm_n": 2048, "copy_elems": 1 << 26}
ENV = {"device_name": "test CPU", "threads": 1, "torch": torch.__version__, "triton": None, "gankernels": "0",
       "git": "abc"}


# ----------------------------------------------------------------------------- flop model

def test_pairs_count_the_distinct_pairs_of_the_math():
    n, m = 5, 3
    xx = len(list(itertools.combinations(range(n), 2)))
    yy = len(list(itertools.combinations(range(m), 2)))
    assert OPS["mmd2"].pairs(n, m) == xx + yy + n * m == 28
    assert OPS["kid"].pairs(n, m) == 28
    assert OPS["kernel_sum"].pairs(n, m) == OPS["kernel_flow"].pairs(n, m) == OPS["smoothed_score"].pairs(n, m) == 15
    assert OPS["witness"].pairs(n, m) == 30  # z against x and against y
    assert OPS["kernel_langevin"].pairs(n, m) == registry.CHAIN_STEPS * 15
    assert OPS["langevin_step"].pairs(n, m) == 0


@pytest.mark.parametrize("op", list(OPS))
def test_flop_model_per_mode(op):
    spec = OPS[op]
    n, m, d = 7, 5, 3
    fwd, bwd = spec.flops(n, m, d)
    assert fwd > 0
    assert (bwd > 0) == bool(spec.grads)
    assert spec.model_flops(n, m, d, "fwd") == fwd
    assert spec.model_flops(n, m, d, "bwd") == bwd
    assert spec.model_flops(n, m, d, "fwdbwd") == fwd + bwd
    assert set(spec.modes()) == ({"fwd", "bwd", "fwdbwd"} if spec.grads else {"fwd"})


def test_flop_model_values():
    assert OPS["mmd2"].model_flops(5, 3, 4, "fwd") == 2 * 4 * 28
    assert OPS["mmd2"].model_flops(5, 3, 4, "fwdbwd") == 6 * 4 * 28
    assert OPS["kernel_flow"].model_flops(5, 3, 4, "fwd") == 4 * 4 * 15
    assert OPS["langevin_step"].model_flops(10, 10, 3, "fwd") == 4 * 30
    # pulling_away: the cheaper of the Gram (N^2 D) and covariance (N D^2) forms
    assert OPS["pulling_away"].model_flops(100, 100, 8, "fwd") == 2 * 100 * 8 * 8
    assert OPS["pulling_away"].model_flops(8, 8, 100, "fwd") == 2 * 8 * 100 * 8


def test_roofline_bound_and_fraction():
    t, bound = machine.roofline(1e9, 1e6, CEILINGS)
    assert bound == "compute" and t == pytest.approx(1e9 / 100e9)
    t, bound = machine.roofline(1e6, 1e9, CEILINGS)
    assert bound == "memory" and t == pytest.approx(1e9 / 10e9)
    case = Case("mmd2", "fused", "fwd", 1000, 1000, 64)
    row = runner.make_row(case, OPS["mmd2"], ENV, CEILINGS, "ok",
                          res={"median_s": 0.5, "p20_s": 0.4, "p80_s": 0.6, "reps": 3, "io_bytes": 1e6})
    flops = OPS["mmd2"].model_flops(1000, 1000, 64, "fwd")
    assert row["model_flops"] == flops
    assert row["gflops"] == pytest.approx(flops / 0.5 / 1e9)
    assert row["pairs_per_s"] == pytest.approx(OPS["mmd2"].pairs(1000, 1000) / 0.5)
    assert row["roofline_bound"] == "compute"
    assert row["roofline_frac"] == pytest.approx(flops / 100e9 / 0.5)


def test_errors_and_nan():
    ref = (torch.tensor(2.0, dtype=torch.float64), (torch.tensor([1.0, -4.0], dtype=torch.float64),))
    got = (torch.tensor(2.5), (torch.tensor([1.0, -3.0]),))
    assert runner.errors(got, ref, "fwd") == {"err_abs": 0.5, "err_rel": 0.25}
    assert runner.errors(got, ref, "bwd") == {"err_abs": 1.0, "err_rel": 0.25}
    assert runner.errors(got, ref, "fwdbwd")["err_abs"] == 1.0
    nan = (torch.tensor(float("nan")), ())
    assert math.isnan(runner.errors(nan, ref, "fwd")["err_rel"])


def test_too_slow_prediction_from_a_smaller_size():
    spec = OPS["mmd2"]
    prior = runner.make_row(Case("mmd2", "eager", "fwd", 1000, 1000, 8), spec, ENV, CEILINGS, "ok",
                            res={"median_s": 2.0, "io_bytes": 1.0})
    case = Case("mmd2", "eager", "fwd", 4000, 4000, 8)
    pred = runner._predict_s([prior], case, spec)
    assert pred == pytest.approx(2.0 * spec.pairs(4000, 4000) / spec.pairs(1000, 1000))
    row = runner.run_case(case, spec, {}, None, None, Settings(time_limit_s=10.0, isolate=False), ENV, CEILINGS,
                          [prior], "/tmp")
    assert row["status"] == "too slow" and "predicted" in row["reason"] and math.isnan(row["median_s"])


# ----------------------------------------------------------------------------- tables

def _rows():
    spec = OPS["mmd2"]
    mk = lambda impl, status, res=None, reason="": runner.make_row(  # noqa: E731
        Case("mmd2", impl, "fwd", 4096, 4096, 64, kernel="Gaussian(sigmas=(1.0,))"), spec, ENV, CEILINGS, status,
        reason, res)
    res = lambda t, mb: {"median_s": t, "p20_s": t * 0.9, "p80_s": t * 1.1, "reps": 5, "peak_mem_mb": mb,  # noqa
                         "io_bytes": 1e6, "err_rel": 1e-7, "err_abs": 1e-9}
    rows = [mk("fused", "ok", res(0.1, 2.0)), mk("eager", "ok", res(0.4, 700.0)),
            mk("keops", "oom", reason="out of memory (cap 1 GB): an allocation of 64 MiB failed"),
            mk("compile", "too slow", reason="too slow: killed after 5 s")]
    runner.add_speedups(rows)
    return rows


def test_table_formatting():
    rows = _rows()
    head, body = report.main_table(rows)
    assert head[:5] == ["op", "mode", "N", "M", "D"] and "kernel" not in head  # constant: in the header
    eager = body[1]
    assert eager[head.index("impl")] == "eager (cdist)"
    assert eager[head.index("fused speedup")] == "4.0×"
    assert eager[head.index("median ms")] == "400"
    assert eager[head.index("p20–p80 ms")] == "360–440"
    assert body[0][head.index("roofline")].endswith("compute")
    oom = body[2]
    assert oom[head.index("median ms")] == "nan" and oom[head.index("note")].startswith("out of memory")
    text = report.format_text(head, body)
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows)
    col = lines[0].index("median ms")  # right-aligned numbers end where the header ends
    assert all(ln[col + len("median ms") - 1] != " " for ln in lines[2:])
    md = report.format_markdown(head, body).splitlines()
    assert md[1].count("|") == md[0].count("|") == len(head) + 1
    shead, sbody = report.summary_table(rows)
    assert "vs eager" not in shead and len(sbody) == 1
    assert sbody[0][shead.index("vs best eager")] == "4.0× (cdist only)"   # no expansion row in this case
    assert sbody[0][shead.index("vs keops")] == "OOM"
    assert sbody[0][shead.index("vs best compile")] == "too slow"
    assert any("kernel: Gaussian" in ln for ln in report.header_lines(
        {"meta": dict(ENV, device="cpu", simd="avx2", logical_cpus=2, cpu_mhz=None, pykeops=None, geomloss=None,
                      torchmetrics=None, ceilings=CEILINGS), "rows": rows}))


def _variant_rows(eager_s, expansion_s, compile_s=None, compile_exp_status="ok"):
    spec = OPS["mmd2"]
    mk = lambda impl, status, t=None: runner.make_row(  # noqa: E731
        Case("mmd2", impl, "fwd", 4096, 4096, 64), spec, ENV, CEILINGS, status, "" if status == "ok" else status,
        {"median_s": t, "p20_s": t, "p80_s": t, "reps": 3, "peak_mem_mb": 100.0 * t, "io_bytes": 1e6}
        if t is not None else None)
    rows = [mk("fused", "ok", 0.1), mk("eager", "ok", eager_s), mk("eager-expansion", "ok", expansion_s)]
    if compile_s is not None:
        rows += [mk("compile", "ok", compile_s), mk("compile-expansion", compile_exp_status,
                                                    compile_s / 2 if compile_exp_status == "ok" else None)]
    runner.add_speedups(rows)
    return rows


@pytest.mark.parametrize("eager_s,expansion_s,want", [(0.8, 0.4, "4.0× (expansion)"), (0.3, 0.9, "3.0× (cdist)")])
def test_headline_ratio_is_against_the_faster_variant(eager_s, expansion_s, want):
    rows = _variant_rows(eager_s, expansion_s, compile_s=0.6)
    head, body = report.summary_table(rows)
    assert head.count("vs best eager") == 1 and "vs eager-expansion" not in head and "vs compile" not in head
    assert body[0][head.index("vs best eager")] == want
    assert body[0][head.index("vs best compile")] == "3.0× (expansion)"   # 0.3 s expansion beats 0.6 s cdist
    assert body[0][head.index("eager MB")] == report.fmt_mb(100.0 * min(eager_s, expansion_s))
    hhead, hbody = report.headline_table(rows)
    assert hbody[0][hhead.index("vs best eager")] == want
    assert hbody[0][hhead.index("best eager ms")] == f"{min(eager_s, expansion_s) * 1e3:.3g} ({want.split('(')[1]}"
    assert hbody[0][hhead.index("gankernels ms")] == "**100**"


def test_headline_ratio_when_one_variant_failed():
    rows = _variant_rows(0.8, 0.4, compile_s=0.6, compile_exp_status="oom")
    head, body = report.summary_table(rows)
    assert body[0][head.index("vs best compile")] == "6.0× (cdist only)"
    for r in rows:
        if r["impl"] in ("eager", "eager-expansion"):
            r.update(status="oom", median_s=float("nan"))
    head, body = report.summary_table(rows)
    assert body[0][head.index("vs best eager")] == "OOM" and body[0][head.index("eager MB")] == "OOM"


def test_headline_labels_of_ops_without_a_distance_matrix_and_of_double_backward():
    """An op that forms no distance matrix has one dense formula: its ratios carry no variant label (not
    "cdist only"); a torch.compile baseline that cannot double-backward says so instead of "failed"."""
    rows = _variant_rows(0.8, 0.4, compile_s=0.6)
    for r in rows:
        if r["impl"] == "eager-expansion":
            r.update(status="unavailable", median_s=None, reason="unavailable: op forms no distance matrix")
        if r["impl"] in ("compile", "compile-expansion"):
            r.update(status="failed", median_s=None,
                     reason="failed: RuntimeError: torch.compile with aot_autograd does not currently support "
                            "double backward")
    head, body = report.headline_table(rows)
    assert body[0][head.index("vs best eager")] == "8.0×"
    assert body[0][head.index("best eager ms")] == "800"
    assert body[0][head.index("vs best compile")] == "no double backward"
    for r in rows:  # the CLI records no expansion row for such an op at all (pulling_away: no distances)
        r["op"] = "pulling_away"
    rows = [r for r in rows if r["impl"] != "eager-expansion"]
    head, body = report.headline_table(rows)
    assert body[0][head.index("vs best eager")] == "8.0×"


def test_results_json_written_before_the_expansion_variant_still_renders():
    """bench/results_cpu.json has only the cdist eager / compile rows: it reads, and every headline cell says
    so ("cdist only") instead of claiming a best-of-two."""
    import pathlib
    path = pathlib.Path(__file__).parents[1] / "bench" / "results_cpu.json"
    result = report.read_json(str(path))
    assert not any(r["impl"].endswith("-expansion") for r in result["rows"])
    head, body = report.summary_table(result["rows"])
    col = head.index("vs best eager")
    cells = [(b[0], b[col]) for b in body if "×" in b[col]]
    # ops with a distance matrix say "cdist only"; the others (one dense formula) carry no label
    assert cells and all(c.endswith("(cdist only)") == (op in DISTANCE_OPS) for op, c in cells)
    assert {op for op, _ in cells} & set(DISTANCE_OPS) and {op for op, _ in cells} - set(DISTANCE_OPS)
    assert "vs best eager" in report.render_markdown(result, "## x")


DISTANCE_OPS = ("mmd2", "mmd2_x", "kernel_sum", "kernel_flow", "witness", "smoothed_score", "kernel_langevin", "kde_langevin")


@pytest.mark.parametrize("op", list(OPS))
def test_expansion_variant_exactly_for_the_distance_ops(op, monkeypatch):
    """Distance ops have both variants, they agree in float64, and the expansion one does use the expansion."""
    spec = OPS[op]
    calls = []
    expand = registry.SQDIST["expansion"]
    monkeypatch.setitem(registry.SQDIST, "expansion", lambda a, b: calls.append(1) or expand(a, b))
    assert ("eager-expansion" in spec.impls()) == ("compile-expansion" in spec.impls()) == (op in DISTANCE_OPS)
    kernel = "Gaussian(sigmas=(0.5, 2.0))" if spec.kernel else ""
    inputs = runner.case_inputs(Case(op, "eager", "fwd", 24, 20, 3, dtype="float64", kernel=kernel), seed=0)
    if op not in DISTANCE_OPS:
        with pytest.raises(registry.Unavailable, match="no distance matrix"):
            registry.build_impl(spec, "eager-expansion", inputs)
        return
    if spec.deterministic is not None:
        inputs = spec.deterministic(inputs)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cdist = registry.build_impl(spec, "eager", inputs)(inputs)
        torch.manual_seed(0)
        expansion = registry.build_impl(spec, "eager-expansion", inputs)(inputs)
    torch.testing.assert_close(expansion, cdist, rtol=1e-8, atol=1e-8)
    assert calls   # the expansion was called (not the cdist code twice)


def test_expansion_distances_and_dot_product_kernels():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    exact = ((a[:, None] - b[None]) ** 2).sum(-1)
    torch.testing.assert_close(registry.sqdist_expansion(a, b), exact)
    assert (registry.sqdist_expansion(a, a).diagonal() >= 0).all()   # clamped at 0
    inputs = {"x": a, "y": b, "kernel": registry.parse_kernel("polynomial")}
    with pytest.raises(registry.Unavailable, match="dot-product kernel"):
        registry.build_impl(OPS["mmd2"], "eager-expansion", inputs)


def test_expansion_impls_run_through_the_harness():
    group = Group(ops=["kernel_sum"], sizes=[32], dims=[3], modes=["fwd", "fwdbwd"],
                  impls=["fused", "eager", "eager-expansion"])
    rows = runner.run([group], Settings(threads=1, budget_s=0.01, max_reps=1, isolate=False), ceilings=CEILINGS,
                      progress=False)["rows"]
    assert [r["impl"] for r in rows] == ["fused", "eager", "eager-expansion"] * 2
    for r in rows:
        assert r["status"] == "ok", r["reason"]
        assert r["err_rel"] < 1e-4
    head, body = report.summary_table(rows)
    assert all(b[head.index("vs best eager")].endswith(("(cdist)", "(expansion)")) for b in body)


# ----------------------------------------------------------------------------- runs

@pytest.fixture(scope="module")
def tiny_run():
    group = Group(ops=["mmd2"], sizes=[32, 64, 128], dims=[4], modes=["fwd", "fwdbwd"], impls=["fused", "eager"])
    settings = Settings(threads=1, budget_s=0.01, max_reps=2, isolate=False)
    return runner.run([group], settings, ceilings=CEILINGS, progress=False, command="test")


def test_tiny_run_rows(tiny_run):
    rows = tiny_run["rows"]
    assert len(rows) == 3 * 2 * 2
    for r in rows:
        assert r["status"] == "ok", r["reason"]
        assert r["p20_s"] <= r["median_s"] <= r["p80_s"]
        assert r["err_rel"] < 1e-4 and r["ref"] == "eager float64"
        assert r["peak_mem_mb"] >= 0 and r["gflops"] > 0
    assert all(math.isfinite(r["fused_speedup"]) for r in rows if r["impl"] == "eager")


def test_oom_row_under_a_tiny_memory_cap():
    """Eager mmd2 at N = 2048 needs 16 MiB Gram blocks: under a 20 MB cap it must be an OOM row, not a crash,
    while the fused op (O(N D) memory) runs under the same cap."""
    group = Group(ops=["mmd2"], sizes=[2048], dims=[8], modes=["fwd"], impls=["fused", "eager"])
    settings = Settings(threads=1, budget_s=0.01, max_reps=1, mem_cap_gb=0.02)
    rows = runner.run([group], settings, ceilings=CEILINGS, progress=False)["rows"]
    fused, eager = rows
    assert fused["status"] == "ok", fused
    assert fused["mem_source"] == "isolated process" and 0 <= fused["peak_mem_mb"] < 20, fused
    assert eager["status"] == "oom" and eager["reason"].startswith("out of memory (cap 0.02 GB)"), eager
    assert math.isnan(eager["median_s"]) and math.isnan(eager["peak_mem_mb"])
    assert report.summary_table(rows)[1][0][report.summary_table(rows)[0].index("vs best eager")] == "OOM"


def test_too_slow_row_when_the_probe_runs_past_the_limit():
    group = Group(ops=["kernel_sum"], sizes=[64], dims=[2], modes=["fwd"], impls=["eager"])
    row = runner.run([group], Settings(threads=1, time_limit_s=0.5), ceilings=CEILINGS, progress=False)["rows"][0]
    assert row["status"] == "too slow" and row["reason"] == "too slow: killed after 0.5 s"


def test_json_schema(tiny_run, tmp_path):
    path = tmp_path / "r.json"
    report.write_json(tiny_run, str(path))
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["schema"] == runner.SCHEMA == "gankernels-bench/1"
    meta = data["meta"]
    for k in ("device_name", "threads", "torch", "triton", "gankernels", "git", "ceilings", "settings", "date"):
        assert k in meta
    assert meta["ceilings"]["gemm_flops"] == CEILINGS["gemm_flops"]
    for r in data["rows"]:
        assert set(r) == set(ROW_FIELDS)
        assert r["status"] in STATUSES and r["op"] in OPS and r["mode"] in registry.MODES
        assert isinstance(r["n"], int) and isinstance(r["d"], int)
        for k in ("median_s", "p20_s", "p80_s", "gflops", "peak_mem_mb", "err_rel", "fused_speedup"):
            assert r[k] is None or isinstance(r[k], float)
    back = report.read_json(str(path))
    assert [r["median_s"] for r in back["rows"]] == [r["median_s"] for r in tiny_run["rows"]]
    assert math.isnan(back["rows"][0]["fused_speedup"])  # null -> nan on the fused row


def test_csv(tiny_run, tmp_path):
    path = tmp_path / "r.csv"
    report.write_csv(tiny_run, str(path))
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == list(ROW_FIELDS)
    assert len(lines) == 1 + len(tiny_run["rows"])
    i = lines[0].index("median_s")
    assert [float(ln[i]) for ln in lines[1:]] == [r["median_s"] for r in tiny_run["rows"]]
    assert lines[1][lines[0].index("fused_speedup")] == "nan"


def test_plot_is_written(tiny_run, tmp_path):
    rows = [dict(r) for r in tiny_run["rows"]]
    last = max((r for r in rows if r["impl"] == "eager"), key=lambda r: r["n"])
    last.update(status="oom", median_s=float("nan"), peak_mem_mb=float("nan"), reason="out of memory")
    path = tmp_path / "scaling.png"
    assert report.plot(dict(tiny_run, rows=rows), str(path)) == 2  # fwd, fwd+bwd
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


# ----------------------------------------------------------------------------- CLI

def test_cli_writes_every_output(tmp_path, monkeypatch, capsys):
    from gankernels.__main__ import main
    monkeypatch.setattr(machine, "measure_ceilings", lambda *a, **k: CEILINGS)
    md = tmp_path / "RESULTS.md"
    md.write_text("# results\n\n## other section\n\nkept\n")
    files = {k: str(tmp_path / f"out.{k}") for k in ("json", "csv", "png")}
    rc = main(["bench", "--ops", "kernel_sum", "--sizes", "16,32,48", "--dims", "2", "--modes", "fwd",
               "--impls", "fused,eager", "--no-isolate", "--budget-s", "0.01", "--threads", "1", "--quiet",
               "--json", files["json"], "--csv", files["csv"], "--plot", files["png"], "--md", str(md)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "fused speedup" in out and "kernel_sum" in out
    text = md.read_text()
    assert "## other section\n\nkept" in text and "## CPU: gankernels bench" in text and "out.png" in text
    assert len(json.load(open(files["json"]))["rows"]) == 6


def test_cli_presets_and_bad_arguments():
    parser = cli.build_parser()
    sweep = cli.groups_from_args(parser.parse_args(["--sweep", "--dims", "2"]))
    assert len(sweep) == 1 and sweep[0].sizes[0] == 1024 and sweep[0].sizes[-1] == 131072
    assert sweep[0].dims == [2] and sweep[0].ops == ["mmd2"]
    results = cli.groups_from_args(parser.parse_args(["--results"]))
    assert [g.name for g in results] == ["table", "langevin_step", "pulling_away", "sweep"]
    assert not any(i.startswith("fused-") for i in results[0].impls)  # the algorithm impls: own group only
    pa = results[2]
    assert (pa.ops, pa.sizes, pa.dims, pa.modes) == (["pulling_away"], [32768], [256], ["fwdbwd"])
    assert {"fused", "fused-gram", "eager"} <= set(pa.impls)
    with pytest.raises(SystemExit):
        parser.parse_args(["--ops", "mmd3"])
    with pytest.raises(ValueError, match="kernels"):
        registry.parse_kernel("Gaussian(sigmas=-1)")
    with pytest.raises(ValueError, match="kernels"):
        registry.parse_kernel("__import__('os')")
    assert registry.parse_kernel("laplacian") == registry.parse_kernel("Laplacian()")


# ----------------------------------------------------------------------------- pulling_away algorithms

def test_pulling_away_algorithm_impls_force_the_algorithm(monkeypatch):
    import gankernels as gk
    seen = []
    real = gk.pulling_away

    def spy(s, eps=1e-8, algorithm="auto"):
        seen.append(algorithm)
        return real(s, eps, algorithm)
    monkeypatch.setattr(registry.gk, "pulling_away", spy)
    spec = OPS["pulling_away"]
    assert spec.impls() == ("fused", "eager", "compile", "fused-gram", "fused-covariance")
    inputs = runner.case_inputs(Case("pulling_away", "fused", "fwd", 16, 16, 3), seed=0)
    for impl in ("fused", "fused-gram", "fused-covariance"):
        registry.build_impl(spec, impl, inputs)(inputs)
    assert seen == ["auto", "gram", "covariance"]
    with pytest.raises(registry.Unavailable):
        registry.build_impl(OPS["mmd2"], "fused-gram", inputs)


def test_pulling_away_both_algorithms_run_against_the_reference():
    """Both exact algorithms on the same inputs, where auto picks covariance (D = 4) and gram (D = 48)."""
    group = Group(ops=["pulling_away"], sizes=[64], dims=[4, 48], modes=["fwd", "fwdbwd"],
                  impls=["fused", "fused-gram", "fused-covariance"])
    rows = runner.run([group], Settings(threads=1, budget_s=0.01, max_reps=1, isolate=False), ceilings=CEILINGS,
                      progress=False)["rows"]
    assert len(rows) == 2 * 2 * 3
    for r in rows:
        assert r["status"] == "ok", r["reason"]
        assert r["err_rel"] < 1e-5 and r["ref"] == "eager float64"
    assert all(math.isfinite(r["fused_speedup"]) for r in rows if r["impl"] != "fused")
    head, body = report.summary_table(rows)
    assert "vs fused-gram" in head and "vs fused-covariance" in head and len(body) == 4


def test_memory_model_gives_an_oom_row_without_running(monkeypatch):
    """Eager pulling_away fwd+bwd at N = 32768 holds ~6 N x N float32 matrices (~24 GB): over a 16 GB cap it is
    an OOM row decided before any process or call (each of its allocations alone would fit under the cap)."""
    spec = OPS["pulling_away"]
    n = 32768
    assert spec.mem_estimate("eager", "fwdbwd", n, n, 4) == 6 * n * n * 4
    assert spec.mem_estimate("eager", "bwd", n, n, 4) == 6 * n * n * 4
    assert spec.mem_estimate("compile", "fwdbwd", n, n, 4) < 16 * runner.GIB  # runs (measured ~8.7 GB)
    assert spec.mem_estimate("fused", "fwdbwd", n, n, 4) == spec.mem_estimate("fused-gram", "fwd", n, n, 4) == 0
    assert OPS["mmd2"].mem_estimate("eager", "fwd", n, n, 4) == 0   # no model: the cap itself decides

    def must_not_run(*a, **k):
        raise AssertionError("a case over the memory model's cap was run")
    monkeypatch.setattr(runner, "run_probe", must_not_run)
    monkeypatch.setattr(runner, "execute", must_not_run)
    case = Case("pulling_away", "eager", "fwdbwd", n, n, 256)
    row = runner.run_case(case, spec, {}, None, None, Settings(mem_cap_gb=16.0), ENV, CEILINGS, [], "/tmp")
    assert row["status"] == "oom" and math.isnan(row["median_s"]) and math.isnan(row["peak_mem_mb"])
    assert row["reason"].startswith("out of memory (cap 16 GB): not run") and "24.0 GB" in row["reason"]


def test_bench_pulling_away_wrapper(tmp_path, monkeypatch, capsys):
    """bench/bench_pulling_away.py: the pulling-away grid by default, user options win, --md writes its own section."""
    wrapper = _load_bench_script("bench_pulling_away")   # defines GRID_ARGS / SECTION
    parser = cli.build_parser()
    (g,) = cli.groups_from_args(parser.parse_args(wrapper.GRID_ARGS))
    assert (g.ops, g.sizes, g.dims, g.modes) == (["pulling_away"], [1024, 8192, 32768], [64, 256], ["fwd", "fwdbwd"])
    assert {"fused-gram", "fused-covariance", "eager", "compile"} <= set(g.impls)
    monkeypatch.setattr(machine, "measure_ceilings", lambda *a, **k: CEILINGS)
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# results\n\n{wrapper.SECTION}\n\nold numbers\n\n## other section\n\nkept\n")
    assert cli.main(wrapper.GRID_ARGS + ["--sizes", "32", "--dims", "4", "--impls", "fused,fused-gram,eager",
                                      "--no-isolate", "--budget-s", "0.01", "--threads", "1", "--quiet",
                                      "--md", str(md)]) == 0
    text = md.read_text()
    assert text.count("\n" + wrapper.SECTION + "\n") == 1 and "old numbers" not in text
    assert "## other section\n\nkept" in text
    assert "| pulling_away | fwd+bwd | 32 |" in text and "vs fused-gram" in text


def _load_bench_script(name):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # not as __main__: runs nothing
    return module


def test_train_quality_merges_rows_of_partial_runs():
    tq = _load_bench_script("train_quality")
    old = [{"data": "ring8", "recipe": "fgan", "kid": 1.0}, {"data": "digits", "recipe": "fgan", "kid": 2.0}]
    new = [{"data": "digits", "recipe": "fgan", "kid": 3.0}, {"data": "grid25", "recipe": "ebgan", "kid": 4.0}]
    assert [r["kid"] for r in tq.merge_rows(old, new)] == [1.0, 3.0, 4.0]
    assert tq.merge_rows([], new) == new
    by_seed = lambda r: (r["data"], r["recipe"], r["seed"])  # noqa: E731   (--published: one row per seed)
    seeds = [{"data": "ring8", "recipe": "fgan", "seed": s, "kid": float(s)} for s in (0, 1)]
    again = [{"data": "ring8", "recipe": "fgan", "seed": 1, "kid": 5.0}]
    assert [r["kid"] for r in tq.merge_rows(seeds, again, key=by_seed)] == [0.0, 5.0]


def test_bench_langevin_step_section(tmp_path):
    """bench/bench_langevin_step.py: four rows, copy_ is the 100 % reference, the section lands in --md."""
    script = _load_bench_script("bench_langevin_step")
    md, js = tmp_path / "RESULTS.md", tmp_path / "out.json"
    md.write_text("# results\n\n## other section\n\nkept\n")
    script.main(["--numel", "4096", "--reps", "2", "--threads", "1", "--md", str(md), "--json", str(js)])
    rows = json.loads(js.read_text())["rows"]
    assert [r["impl"].split()[0] for r in rows] == ["copy_", "fused", "fused", "eager"]
    assert rows[0]["of_copy"] == 1.0 and all(r["gb_s"] > 0 and r["bytes"] in (8 * 4096, 12 * 4096) for r in rows)
    text = md.read_text()
    assert "## other section\n\nkept" in text and "## CPU: langevin_step on 4,096 float32 elements" in text


def test_train_quality_published_arguments():
    tq = _load_bench_script("train_quality")
    a = tq.parse_args(["--published"])
    assert (a.steps, a.seeds, a.data, a.recipes, a.json) == (
        tq.PUBLISHED_STEPS, tq.PUBLISHED_SEEDS, ["grid25", "ring8"], tq.PUBLISHED_RECIPES, tq.PUBLISHED_JSON)
    a = tq.parse_args(["--published", "--steps", "50", "--seeds", "3", "4", "--data", "ring8"])
    assert (a.steps, a.seeds, a.data) == (50, [3, 4], ["ring8"])
    plain = tq.parse_args([])
    assert (plain.steps, plain.seeds, plain.json) == (3000, [0], "bench/results_train_quality.json")
    for bad in (["--seeds", "1"], ["--published", "--data", "digits"], ["--published", "--refine"],
                ["--published", "--seeds", "1", "1"]):
        with pytest.raises(SystemExit):
            tq.parse_args(bad)


def test_train_quality_published_protocol_and_summary():
    from gankernels.train.data import Dataset, load_data
    from gankernels.train.errors import ConfigError
    tq = _load_bench_script("train_quality")
    for name in ("ring8", "grid25"):   # the trainer's mixtures are PacGAN's
        tq.check_protocol(name, load_data(name))
    ring = load_data("ring8")
    with pytest.raises(ConfigError):
        tq.check_protocol("ring8", Dataset("ring8", ring.held_out, modes=2 * ring.modes, mode_std=0.01))
    with pytest.raises(ConfigError):
        tq.check_protocol("ring8", Dataset("ring8", ring.held_out, modes=ring.modes, mode_std=0.02))
    rows = [{"data": "ring8", "recipe": "r", "seed": s, "steps": 10, "batch": 8, "train_s": 1.0, "n_modes": 8,
             "modes": m, "hq": h, "kl": 0.1} for s, m, h in ((0, 7, 0.5), (1, 8, 0.7))]
    rows[1]["kl"] = None   # no HQ sample: NaN, written as null
    (s,) = tq.summarise(rows + [{"data": "ring8", "recipe": "x", "error": "n/a"}])
    assert (s["modes"], s["hq"], s["seeds"]) == (7.5, pytest.approx(0.6), [0, 1])
    assert s["modes_std"] == pytest.approx(math.sqrt(0.5)) and math.isnan(s["kl"])
    text = tq.published_table([s], "ring8")
    assert "| r | ours, 2 seeds × 10 steps | 7.5 ± 0.7 | 60.0 ± 14.1 |" in text and "| PacGAN4 |" in text
    assert len(tq.PUBLISHED["ring8"]) == len(tq.PUBLISHED["grid25"]) == 9
    (one,) = tq.summarise(rows[:1])
    assert "| r | ours, 1 seed × 10 steps | 7.0 | 50.0 | 0.100 |" in tq.published_table([one], "ring8")
