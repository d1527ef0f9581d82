"""langevin_step against the memory bandwidth of a plain ``copy_``.

    python -m bench.bench_langevin_step [--numel 10000000] [--threads 2] [--reps 30]
                                        [--json bench/results_langevin_step_cpu.json] [--md bench/RESULTS.md]

One update x <- x + eta drift + sqrt(2 eta tau) xi reads x and drift and writes x: 12 bytes
per float32 element, against 8 for ``out.copy_(x)`` into a preallocated tensor.  The
fraction reported is (bytes / time of the step) / (bytes / time of copy_), i.e. how close
the fused step (noise generated in the pass, csrc/noise.h) comes to moving its data at the
speed of a copy.  Rows: ``copy_`` (the ceiling), ``langevin_step_`` (in place), the
out-of-place ``langevin_step`` (pays the first touch of a fresh output tensor, as any
out-of-place op does), and the eager ``x + eta * drift + sqrt(2 eta) * randn_like(x)``.
Timing: median and p20-p80 of ``--reps`` calls after two warm-up calls, all in this process.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

import gankernels as gk
from gankernels.bench import machine


def run(numel: int, reps: int, eta: float = 1e-3):
    x = torch.randn(numel, generator=torch.Generator().manual_seed(0))
    drift = torch.randn(numel, generator=torch.Generator().manual_seed(1))
    out = torch.empty_like(x)
    gen = torch.Generator().manual_seed(2)
    cases = [
        ("copy_ (reference)", 8, lambda: out.copy_(x)),
        ("fused langevin_step_ (in place)", 12, lambda: gk.langevin_step_(x, drift, eta, generator=gen)),
        ("fused langevin_step", 12, lambda: gk.langevin_step(x, drift, eta, generator=gen)),
        ("eager x + eta d + sqrt(2 eta) randn", 12,
         lambda: x + eta * drift + math.sqrt(2 * eta) * torch.randn_like(x)),
    ]
    rows = []
    for name, per_elem, fn in cases:
        t = machine.wall_times(fn, reps, warmup=2)
        med = machine.percentile(t, 50)
        rows.append({"impl": name, "median_ms": med * 1e3, "p20_ms": machine.percentile(t, 20) * 1e3,
                     "p80_ms": machine.percentile(t, 80) * 1e3, "bytes": per_elem * numel,
                     "gb_s": per_elem * numel / med / 1e9, "reps": reps})
    for r in rows:
        r["of_copy"] = r["gb_s"] / rows[0]["gb_s"]
    return rows


def markdown(rows, info, numel, command):
    lines = [f"## CPU: langevin_step on {numel:,} float32 elements against copy_", "",
             f"- hardware: {info['cpu']} ({info['simd']}, {info['logical_cpus']} logical CPUs); "
             f"torch threads: {info['threads']}",
             f"- software: torch {info['torch']}, gankernels {info['gankernels']} (git {info['git']}); "
             f"noise: ARS-7 on AES rounds + Box-Muller (csrc/noise.h)",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; command: `{command}`",
             "- bytes moved: copy_ reads and writes 8 B per element, a Langevin step reads x and drift and "
             "writes x (12 B); 'of copy_' = step GB/s / copy_ GB/s", "",
             "| impl | median ms | p20–p80 ms | bytes moved | GB/s | of copy_ GB/s |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['impl']} | {r['median_ms']:.2f} | {r['p20_ms']:.2f}–{r['p80_ms']:.2f} | "
                     f"{r['bytes'] / 1e6:.0f} MB | {r['gb_s']:.1f} | {100 * r['of_copy']:.0f} % |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=int, default=10_000_000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine.describe("cpu", torch.get_num_threads())
    rows = run(args.numel, args.reps)
    command = "python -m bench.bench_langevin_step" + (f" --threads {args.threads}" if args.threads else "")
    text = markdown(rows, info, args.numel, command)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "numel": args.numel, "rows": rows}, f, indent=1)
    if args.md:
        machine.write_section(args.md, text.splitlines()[0], text)


if __name__ == "__main__":
    main()
