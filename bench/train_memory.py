"""Peak RSS of large-batch training: mmd-gan and flow-gan on ring8 at batch 4,096 vs 65,536 (CPU).

    python -m bench.train_memory [--batches 4096 65536] [--recipes mmd-gan flow-gan] [--steps 1]

Each case runs ``--steps`` generator steps (plus the final evaluation and checkpoint) in
a fresh subprocess and reports its peak resident set (``ru_maxrss``) and wall time.
A batch x batch float32 matrix at 65,536 would be 16 GiB; the fused ops keep the
pairwise terms O(batch), so what grows with the batch is the MLP activations only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def child(recipe: str, batch: int, steps: int) -> None:
    import torch

    from gankernels.train import RunConfig, train

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        last = train(RunConfig(recipe=recipe, data="ring8", batch=batch, steps=steps, eval_every=steps),
                     os.path.join(out, "run"), progress=False, use_matplotlib=False)
        wall = time.perf_counter() - t0
    print(json.dumps({"recipe": recipe, "batch": batch, "steps": steps, "threads": torch.get_num_threads(),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "wall_s": round(wall, 1), "loss_g": last.get("loss_g")}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["mmd-gan", "flow-gan"])
    ap.add_argument("--batches", nargs="+", type=int, default=[4096, 65536])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--child", nargs=3, metavar=("RECIPE", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    rows = []
    for recipe in args.recipes:
        for batch in args.batches:
            res = subprocess.run([sys.executable, "-m", "bench.train_memory", "--child", recipe, str(batch),
                                  str(args.steps)], capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| recipe | batch | steps | peak RSS MiB | wall s |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['recipe']} | {r['batch']} | {r['steps']} | {r['peak_rss_mib']:.0f} | {r['wall_s']:.1f} |")


if __name__ == "__main__":
    main()
