"""Communication volume of the sharded ops per training step, against the batch size.

    python -m bench.bench_distributed [--worlds 2,4] [--sizes 1024,4096,16384] [--dim 64]
                                      [--formula-sizes 65536,262144] [--formula-worlds 8]
                                      [--json bench/results_distributed_cpu.json] [--md bench/RESULTS.md]

For each world size K the script launches K Gloo processes on this machine with
``torchrun --standalone --nproc-per-node K`` (the launch command of the README),
and every rank runs one step -- forward and backward -- of
``gankernels.distributed.mmd2`` (biased, Gaussian mixture) and of
``kernel_flow`` with weights, on even shards of the global batch N = M, D
columns, float32, inside ``count_communication()``: the bytes actually passed
to the collectives and sent to other ranks are counted, and checked against
the formula ``communication_bytes``.  Rows for sizes too large to run on this
machine come from the formula alone (marked so).  Timing is not the point
here (K processes share 2 cores); the table is bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

OPS = ("mmd2", "kernel_flow")


def _ints(text):
    return [int(v) for v in text.split(",") if v]


# ----------------------------------------------------------------------------- worker (one rank)

def _step(gkd, op, x, y):
    import gankernels as gk

    x, y = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    with gkd.count_communication() as stats:
        if op == "mmd2":
            loss = gkd.mmd2(x, y, gk.Gaussian((1, 2, 4, 8, 16)))
        else:  # x's flow field against the gathered y with weights [M] (gathered as one more column)
            w = torch.full((y.shape[0],), 1.0 / y.shape[0])
            loss = gkd.kernel_flow(x, y, gk.Gaussian((1, 2, 4, 8, 16)), w).square().sum()
        loss.backward()
    return stats


def worker(args) -> None:
    import torch.distributed as dist

    from gankernels import distributed as gkd

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    rows = []
    for n in args.sizes:
        shard = n // world
        g = torch.Generator().manual_seed(rank)
        x = torch.randn(shard, args.dim, generator=g)
        y = torch.randn(shard, args.dim, generator=g) + 0.25
        for op in OPS:
            t0 = time.perf_counter()
            stats = _step(gkd, op, x, y)
            seconds = time.perf_counter() - t0
            want = gkd.communication_bytes(op, args.dim, torch.float32, [shard] * world, [shard] * world,
                                           weight_cols=1 if op == "kernel_flow" else 0, rank=rank)
            rows.append({"op": op, "world": world, "n": shard * world, "dim": args.dim, "rank": rank,
                         "calls": stats.calls, "payload": stats.payload_bytes, "sent": stats.sent_bytes,
                         "formula_matches": (stats.calls, stats.payload_bytes, stats.sent_bytes)
                         == (want.calls, want.payload_bytes, want.sent_bytes), "seconds": seconds})
    gathered = [None] * world
    dist.all_gather_object(gathered, rows)
    if rank == 0:
        with open(args.json_part, "w") as f:
            json.dump([r for part in gathered for r in part], f)
    dist.destroy_process_group()


# ----------------------------------------------------------------------------- driver

def _launch(world, args, part) -> list:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
           "-m", "bench.bench_distributed", "--worker", "--sizes", ",".join(map(str, args.sizes)),
           "--dim", str(args.dim), "--json-part", part]
    subprocess.run(cmd, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=3600)
    with open(part) as f:
        return json.load(f)


def _formula_rows(args):
    from gankernels import distributed as gkd

    rows = []
    for world in args.formula_worlds:
        for n in args.formula_sizes:
            shard = n // world
            for op in OPS:
                s = gkd.communication_bytes(op, args.dim, torch.float32, [shard] * world, [shard] * world,
                                            weight_cols=1 if op == "kernel_flow" else 0)
                rows.append({"op": op, "world": world, "n": n, "dim": args.dim, "rank": 0, "calls": s.calls,
                             "payload": s.payload_bytes, "sent": s.sent_bytes, "formula_matches": None})
    return rows


def _mb(b):
    mb = b / 1e6
    return f"{mb:.0f}" if mb >= 100 else f"{mb:.1f}" if mb >= 10 else f"{mb:.3f}"


def markdown(rows, header) -> str:
    lines = header + [
        "",
        "| op | K | N = M (global) | D | source | calls / rank | bytes passed / rank (MB) | bytes sent / rank (MB) "
        "| sent per sample (bytes) | one N × M fp32 Gram block (MB) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["rank"] != 0:
            continue
        source = "formula" if r["formula_matches"] is None else (
            "measured = formula" if r["formula_matches"] else "measured (≠ formula!)")
        lines.append(f"| {r['op']} | {r['world']} | {r['n']} | {r['dim']} | {source} | {r['calls']} | "
                     f"{_mb(r['payload'])} | {_mb(r['sent'])} | {r['sent'] / (2 * r['n']):.0f} | "
                     f"{_mb(4 * r['n'] * r['n'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=_ints, default=[2, 4])
    parser.add_argument("--sizes", type=_ints, default=[1024, 4096, 16384])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--formula-sizes", type=_ints, default=[65536, 262144])
    parser.add_argument("--formula-worlds", type=_ints, default=[8])
    parser.add_argument("--json", default=None)
    parser.add_argument("--md", default=None, help="append the table to this markdown file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json-part", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from gankernels.bench.machine import cpu_model, git_revision, logical_cpus

    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in args.worlds:
            rows += _launch(world, args, os.path.join(tmp, f"world{world}.json"))
    rows += _formula_rows(args)
    ok = all(r["formula_matches"] is not False for r in rows)
    header = [
        "## CPU: communication of gankernels.distributed per step",
        "",
        f"- {cpu_model()}, {logical_cpus()} logical CPUs; Gloo over localhost, K processes launched with "
        f"`torchrun --standalone --nproc-per-node K`; torch {torch.__version__}; git {git_revision()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- one step = forward + backward; float32, even shards of N / K rows of x and of y; "
        "mmd2: biased, Gaussian((1, 2, 4, 8, 16)); kernel_flow: weights [M] (one extra gathered column)",
        "- bytes passed = sizes of the tensors this rank hands to collectives (counted in a wrapper around "
        "them); bytes sent = what it sends to other ranks (all-gather: its input to each of the K - 1 others; "
        "all-to-all: every block but its own); 'measured = formula' = the counts equal "
        "`gankernels.distributed.communication_bytes` exactly, on every rank",
        f"- command: `python -m bench.bench_distributed --worlds {','.join(map(str, args.worlds))} "
        f"--sizes {','.join(map(str, args.sizes))} --dim {args.dim}`; wall time {time.time() - started:.0f} s"
        + ("" if ok else "; **some measured rows differ from the formula**"),
    ]
    text = markdown(rows, header)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.md:
        with open(args.md, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
