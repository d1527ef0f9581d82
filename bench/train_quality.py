"""Quality table of the gankernels.train recipes after a fixed CPU budget (docs/MATH.md §6 metrics).

    python -m bench.train_quality [--steps 3000] [--batch 512] [--seed 0] [--data ring8 grid25 digits]
                                  [--recipes ...] [--refine] [--out runs/quality]

Trains every recipe (with its defaults; fgan once per divergence, ``fgan:kl`` etc.)
for the same number of steps and batch
on each dataset, then evaluates 2,500 samples against the held-out data: modes
covered, % high quality and the KL of the mode histogram to uniform (ring8,
grid25), exact KID (every dataset), class coverage (digits).  ``--refine`` also
measures Langevin refinement of the same 2,500 samples (``gankernels sample
--refine``): kernel-langevin for every run, disc-langevin for recipes with a
critic network.  Recipes whose fused op is not in this build are listed as
such.  Prints a markdown table and writes the rows to ``--json``; rows of an earlier
``--json`` of the same budget (steps, batch, seed) that this run did not measure are kept,
so the whole table is ``--data ring8 grid25 digits --refine`` or several partial runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time

import torch

from gankernels.train import RECIPES, ConfigError, RunConfig, sample, train
from gankernels.train.losses import DIVERGENCES

REFINE_STEPS = 100
DEFAULT_RECIPES = [f"fgan:{d}" for d in DIVERGENCES] + [r for r in RECIPES if r != "fgan"]


def _pct(v):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _refine(out: str, seed: int):
    res = {}
    for how in ("kernel-langevin", "disc-langevin"):
        try:
            r = sample(out, seed=seed, refine=how, steps=REFINE_STEPS)
        except ConfigError as exc:
            res[how] = {"error": str(exc)}
            continue
        res[how] = r["refined_metrics"]
    return res


def _split(name: str):
    """'fgan:kl' -> ('fgan', {'divergence': 'kl'}); other names -> (name, {})."""
    recipe, _, div = name.partition(":")
    return recipe, ({"divergence": div} if div else {})


def run_one(name: str, data: str, args) -> dict:
    recipe, options = _split(name)
    out = os.path.join(args.out, data, name.replace(":", "-"))
    shutil.rmtree(out, ignore_errors=True)
    cfg = RunConfig(recipe=recipe, data=data, batch=args.batch, steps=args.steps, seed=args.seed,
                    eval_every=args.steps, options=options)
    t0 = time.perf_counter()
    try:
        metrics = train(cfg, out, progress=False)
    except ConfigError as exc:
        return {"recipe": name, "data": data, "error": str(exc)}
    finite = all(math.isfinite(v) for k, v in metrics.items() if k.startswith("loss") and isinstance(v, float))
    row = {"recipe": name, "data": data, "finite_losses": finite, "seed": args.seed, "steps": args.steps, "batch": args.batch,
           "train_s": round(time.perf_counter() - t0, 1), **metrics}
    if args.refine and data != "digits":
        row["refined"] = _refine(out, args.seed)
    print(json.dumps(row), flush=True)
    return row


def table(rows) -> str:
    lines = ["| data | recipe | modes | % HQ | KL | KID | % HQ, kernel-Langevin | % HQ, disc-Langevin | train s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['data']} | {r['recipe']} | n/a: {r['error'].split(';')[0]} | | | | | | |")
            continue
        ref = r.get("refined", {})
        hq_k, hq_d = (ref.get(h, {}).get("hq") for h in ("kernel-langevin", "disc-langevin"))
        modes = f"{r['modes']}/{r['n_modes']}" if "modes" in r else (f"{r['classes']}/10 classes" if "classes" in r
                                                                      else "–")
        hq = r.get("hq", r.get("confident"))
        lines.append(f"| {r['data']} | {r['recipe']} | {modes} | {_pct(hq)} | {r.get('kl', r.get('class_kl', math.nan)):.3f} | "
                     f"{r['kid']:.4f} | {_pct(hq_k)} | {_pct(hq_d)} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    ap.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES,
                    help="recipe names; fgan:DIVERGENCE for one f-divergence (default: every recipe and "
                    "every divergence)")
    ap.add_argument("--refine", action="store_true", help="also measure Langevin refinement (% HQ)")
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--json", default="bench/results_train_quality.json")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.steps} steps, batch {args.batch}, "
          f"seed {args.seed}", flush=True)
    rows = [run_one(r, d, args) for d in args.data for r in args.recipes]
    rows = merge_rows(_earlier_rows(args), rows)
    with open(args.json, "w") as f:
        json.dump({"steps": args.steps, "batch": args.batch, "seed": args.seed, "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "rows": rows}, f, indent=1)
    print(table(rows))


def _earlier_rows(args) -> list:
    """The rows of an earlier --json file of the same budget (steps, batch, seed), else none."""
    try:
        with open(args.json) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return []
    same = all(old.get(k) == getattr(args, k) for k in ("steps", "batch", "seed"))
    return old.get("rows", []) if same else []


def merge_rows(old: list, new: list) -> list:
    """``old`` with each (data, recipe) row that ``new`` measured again replaced, new ones appended,
    so runs of a few recipes or datasets update one table instead of overwriting it."""
    key = lambda r: (r["data"], r["recipe"])  # noqa: E731
    fresh = {key(r): r for r in new}
    merged = [fresh.pop(key(r), r) for r in old]
    return merged + [r for r in new if key(r) in fresh]


if __name__ == "__main__":
    main()
