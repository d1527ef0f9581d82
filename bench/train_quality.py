"""Quality table of the gankernels.train recipes after a fixed CPU budget (docs/MATH.md §6 metrics).

    python -m bench.train_quality [--steps 3000] [--batch 512] [--seed 0] [--data ring8 grid25 digits]
                                  [--recipes ...] [--refine] [--out runs/quality]
    python -m bench.train_quality --published [--seeds 0 1 2] [--steps 6000] [--data grid25 ring8] [--recipes ...]

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

``--published``: the VEEGAN / PacGAN mode-collapse protocol (``PROTOCOL``, ``PUBLISHED``) on ring8 and
grid25, several seeds, mean +- std of modes, % HQ and KL per recipe next to the papers' numbers;
rows go to ``bench/results_train_quality_published.json``, rewritten after every run; its earlier rows of
the same steps and batch that this run did not measure (data, recipe, seed) are kept.
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
from gankernels.train.runfiles import json_safe

REFINE_STEPS = 100
DEFAULT_RECIPES = [f"fgan:{d}" for d in DIVERGENCES] + [r for r in RECIPES if r != "fgan"]

# --published: the mixtures and metric of PacGAN's code (fjxmlzn/PacGAN, synthetic_data_experiments/
# 2DRing_GAN&PacGAN/config.py, 2DGrid_GAN&PacGAN/config.py, pacgan/extensions.py MetricLogger):
# ring: 8 modes (cos 2 pi i/8, sin 2 pi i/8), sigma 0.01; grid: {-4,-2,0,2,4}^2, sigma 0.05;
# 2,500 samples, high quality within 3 sigma of the nearest mode.
PROTOCOL = {"ring8": {"n_modes": 8, "radius": 1.0, "std": 0.01},
            "grid25": {"n_modes": 25, "spacing": 2.0, "extent": 4.0, "std": 0.05}}
PUBLISHED_RECIPES = ["fgan:kl", "fgan:reverse-kl", "flow-gan", "mmd-gan"]
PUBLISHED_STEPS = 6000
PUBLISHED_SEEDS = [0, 1, 2]
PUBLISHED_JSON = "bench/results_train_quality_published.json"
# Published results, per dataset: VEEGAN's Table 1 (modes, % HQ; mean of 5 runs, no spread, no reverse KL)
# and PacGAN's Table 1 (modes, % HQ, reverse KL; mean +- standard error over 10 trials).
VEEGAN = "Srivastava et al., NeurIPS 2017, Table 1"
PACGAN = "Lin et al., NeurIPS 2018, Table 1"
VEEGAN_METHODS = ("GAN", "ALI", "Unrolled GAN", "VEEGAN")
PACGAN_METHODS = ("GAN", "ALI", "PacGAN2", "PacGAN3", "PacGAN4")


def _published(veegan, pacgan):
    """Rows (method, source, modes, % HQ, reverse KL or None) from each paper's values in its method order."""
    return ([(m, VEEGAN, modes, hq, None) for m, (modes, hq) in zip(VEEGAN_METHODS, veegan)]
            + [(m, PACGAN, *values) for m, values in zip(PACGAN_METHODS, pacgan)])


PUBLISHED = {
    "ring8": _published([("1", "99.3"), ("2.8", "0.13"), ("7.6", "35.6"), ("8", "52.9")],
                        [("6.3 ± 0.5", "98.2 ± 0.2", "0.45 ± 0.09"), ("6.6 ± 0.3", "97.6 ± 0.4", "0.36 ± 0.04"),
                         ("7.9 ± 0.1", "95.6 ± 2.0", "0.07 ± 0.03"), ("7.8 ± 0.1", "97.7 ± 0.3", "0.10 ± 0.02"),
                         ("7.8 ± 0.1", "95.9 ± 1.4", "0.07 ± 0.02")]),
    "grid25": _published([("3.3", "0.5"), ("15.8", "1.6"), ("23.6", "16"), ("24.6", "40")],
                         [("17.3 ± 0.8", "94.8 ± 0.7", "0.70 ± 0.07"), ("24.1 ± 0.4", "95.7 ± 0.6", "0.14 ± 0.03"),
                          ("23.8 ± 0.7", "91.3 ± 0.8", "0.13 ± 0.04"), ("24.6 ± 0.4", "94.2 ± 0.4", "0.06 ± 0.02"),
                          ("24.8 ± 0.2", "93.6 ± 0.6", "0.04 ± 0.01")]),
}


def check_protocol(name: str, data) -> None:
    """Raise ConfigError unless dataset ``name`` is the published mixture (modes, sigma) of ``PROTOCOL``."""
    from gankernels.train.data import ring_modes

    if name not in PROTOCOL:
        raise ConfigError(f"--published: --data {name!r} has no published numbers; use ring8 and/or grid25")
    p = PROTOCOL[name]
    if name == "ring8":
        want = ring_modes(p["n_modes"], p["radius"])
    else:
        v = torch.arange(-p["extent"], p["extent"] + p["spacing"] / 2, p["spacing"])
        want = torch.cartesian_prod(v, v)
    if data.modes is None or data.modes.shape != want.shape or not torch.allclose(data.modes, want, atol=1e-6) \
            or abs(data.mode_std - p["std"]) > 1e-12:
        raise ConfigError(f"--published: dataset {name!r} is not the published mixture {p}")


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


def run_one(name: str, data: str, args, seed=None) -> dict:
    seed = args.seed if seed is None else seed
    recipe, options = _split(name)
    out = os.path.join(args.out, data, name.replace(":", "-") + (f"-s{seed}" if args.published else ""))
    shutil.rmtree(out, ignore_errors=True)
    cfg = RunConfig(recipe=recipe, data=data, batch=args.batch, steps=args.steps, seed=seed,
                    eval_every=args.steps, options=options)
    t0 = time.perf_counter()
    try:
        metrics = train(cfg, out, progress=False)
    except ConfigError as exc:
        return {"recipe": name, "data": data, "error": str(exc)}
    finite = all(math.isfinite(v) for k, v in metrics.items() if k.startswith("loss") and isinstance(v, float))
    row = {"recipe": name, "data": data, "finite_losses": finite, "seed": seed, "steps": args.steps, "batch": args.batch,
           "train_s": round(time.perf_counter() - t0, 1), **metrics}
    if args.refine and data != "digits":
        row["refined"] = _refine(out, seed)
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


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help=f"default 3000; {PUBLISHED_STEPS} with --published")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", nargs="+", default=None, help="default ring8 grid25 (--published: grid25 ring8)")
    ap.add_argument("--recipes", nargs="+", default=None,
                    help="recipe names; fgan:DIVERGENCE for one f-divergence (default: every recipe and "
                    f"every divergence; --published: {' '.join(PUBLISHED_RECIPES)})")
    ap.add_argument("--refine", action="store_true", help="also measure Langevin refinement (%% HQ)")
    ap.add_argument("--published", action="store_true",
                    help="the VEEGAN / PacGAN mixture protocol, several --seeds, mean +- std next to the papers")
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help=f"--published only: the seeds (default {' '.join(map(str, PUBLISHED_SEEDS))})")
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--json", default=None,
                    help=f"default bench/results_train_quality.json (--published: {PUBLISHED_JSON})")
    args = ap.parse_args(argv)
    pub = args.published
    if args.seeds is not None and not pub:
        ap.error("--seeds needs --published (a plain run has one --seed)")
    if pub and args.refine:
        ap.error("--published does not take --refine (the papers report raw generator samples)")
    args.steps = args.steps if args.steps is not None else (PUBLISHED_STEPS if pub else 3000)
    args.data = args.data or (["grid25", "ring8"] if pub else ["ring8", "grid25"])
    args.recipes = args.recipes or (PUBLISHED_RECIPES if pub else DEFAULT_RECIPES)
    args.seeds = (args.seeds or PUBLISHED_SEEDS) if pub else [args.seed]
    args.json = args.json or (PUBLISHED_JSON if pub else "bench/results_train_quality.json")
    if pub:
        bad = [d for d in args.data if d not in PROTOCOL]
        if bad:
            ap.error(f"--published: no published numbers for --data {' '.join(bad)}; use ring8 and/or grid25")
        if len(set(args.seeds)) != len(args.seeds):
            ap.error("--seeds: repeated seed")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.published:
        return main_published(args)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.steps} steps, batch {args.batch}, "
          f"seed {args.seed}", flush=True)
    rows = [run_one(r, d, args) for d in args.data for r in args.recipes]
    rows = merge_rows(_earlier_rows(args), rows)
    with open(args.json, "w") as f:
        json.dump({"steps": args.steps, "batch": args.batch, "seed": args.seed, "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "rows": rows}, f, indent=1)
    print(table(rows))


def summarise(rows) -> list:
    """Per (data, recipe): mean and sample std over the seeds of modes, % HQ and KL."""
    groups = {}
    for r in rows:
        if "error" not in r and "modes" in r:
            groups.setdefault((r["data"], r["recipe"]), []).append(r)
    out = []
    for (data, recipe), rs in groups.items():
        s = {"data": data, "recipe": recipe, "n_modes": rs[0]["n_modes"], "seeds": [r["seed"] for r in rs],
             "steps": rs[0]["steps"], "batch": rs[0]["batch"],
             "train_s": round(sum(r["train_s"] for r in rs) / len(rs), 1)}
        for k in ("modes", "hq", "kl"):
            v = torch.tensor([math.nan if r[k] is None else float(r[k]) for r in rs], dtype=torch.float64)
            s[k] = float(v.mean())
            s[k + "_std"] = float(v.std()) if len(rs) > 1 else 0.0
        out.append(s)
    return out


def published_table(summary, data: str) -> str:
    """Markdown: our mean +- std rows (``summarise``) above the papers' rows for one dataset."""
    lines = ["| method | source | modes | % HQ | reverse KL |", "|---|---|---:|---:|---:|"]
    for s in summary:
        if s["data"] == data:
            n = len(s["seeds"])

            def pm(k, scale, fmt):   # one seed: no spread to show
                return f"{scale * s[k]:{fmt}}" + (f" ± {scale * s[k + '_std']:{fmt}}" if n > 1 else "")
            lines.append(f"| {s['recipe']} | ours, {n} seed{'s' * (n > 1)} × {s['steps']:,} steps | "
                         f"{pm('modes', 1, '.1f')} | {pm('hq', 100, '.1f')} | {pm('kl', 1, '.3f')} |")
    for method, source, modes, hq, kl in PUBLISHED[data]:
        lines.append(f"| {method} | {source} | {modes} | {hq} | {kl or '–'} |")
    return "\n".join(lines)


def main_published(args) -> None:
    from gankernels.train.data import load_data

    for d in args.data:
        check_protocol(d, load_data(d))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; published protocol, {args.steps} steps, "
          f"batch {args.batch}, seeds {args.seeds}", flush=True)
    earlier = _earlier_rows(args, ("steps", "batch"))
    rows = []
    for d in args.data:
        for r in args.recipes:
            for seed in args.seeds:
                rows.append(run_one(r, d, args, seed))
                _write_published(args, earlier, rows)   # after every run: a cut-short run keeps what it measured
    summary = _write_published(args, earlier, rows)
    for d in args.data:
        print(f"\n{d}:\n{published_table(summary, d)}")


def _write_published(args, earlier, new) -> list:
    """Write the JSON: the earlier rows of the same budget, those of a (data, recipe, seed) measured again replaced."""
    rows = merge_rows(earlier, new, key=lambda r: (r["data"], r["recipe"], r.get("seed")))
    summary = summarise(rows)
    seeds = sorted({r["seed"] for r in rows if "seed" in r})
    with open(args.json, "w") as f:
        json.dump(json_safe({"protocol": PROTOCOL, "steps": args.steps, "batch": args.batch, "seeds": seeds,
                             "threads": torch.get_num_threads(), "torch": torch.__version__,
                             "summary": summary, "rows": rows}), f, indent=1)
    return summary


def _earlier_rows(args, budget=("steps", "batch", "seed")) -> list:
    """The rows of an earlier --json file of the same budget (steps, batch, seed), else none."""
    try:
        with open(args.json) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return []
    same = all(old.get(k) == getattr(args, k) for k in budget)
    return old.get("rows", []) if same else []


def merge_rows(old: list, new: list, key=lambda r: (r["data"], r["recipe"])) -> list:
    """``old`` with each row of a ``key`` (default (data, recipe)) that ``new`` measured again replaced,
    new ones appended, so runs of a few recipes or datasets update one table instead of overwriting it."""
    fresh = {key(r): r for r in new}
    merged = [fresh.pop(key(r), r) for r in old]
    return merged + [r for r in new if key(r) in fresh]


if __name__ == "__main__":
    main()
