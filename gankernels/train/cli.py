"""``gankernels train`` and ``gankernels sample``: argument parsing and one-line errors."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import ConfigError

# recipe options: flag -> (type, help); each recipe accepts only its own (recipes.py lists the defaults)
RECIPE_FLAGS = {
    "divergence": (str, "fgan: kl | reverse-kl | pearson | neyman | hellinger | js | gan | tv (default gan)"),
    "kernel": (str, "mmd-gan: gaussian | rq (on critic features); flow-gan: gaussian | laplacian | imq | energy "
               "| polyharmonic1 (in data space, each with the sign that pulls toward the data)"),
    "gp": (float, "gradient-penalty weight: fgan zero-centred critic penalty (default per divergence), wgan-gp "
           "(default 10), mmd-gan witness penalty (default 1); 0 = off"),
    "d_steps": (int, "critic steps per generator step, every recipe with a critic (default per recipe: "
                "wgan-gp 5, the others 1)"),
    "features": (int, "mmd-gan: critic feature dimension (default 16)"),
    "sigma": (float, "score-gan: one smoothing bandwidth (default: the ladder scale/32 ... scale)"),
    "margin": (float, "ebgan: margin m (default a quarter of the per-dimension data variance)"),
    "pt": (float, "ebgan: pulling-away weight (default 0.1)"),
    "code": (int, "ebgan: autoencoder code dimension (default 16)"),
    "l1": (float, "alpha-gan: L1 reconstruction weight (default 1)"),
}
# flags of earlier versions: each gives a one-line error that says what to use instead
REMOVED_FLAGS = {
    "eta": "--eta is gone: the generator loss 1/2 |G(z) - sg[G(z) + eta drift]|^2 only scaled its gradient by eta, "
           "which Adam divides out (the runs were the same up to Adam's epsilon); the step size is --lr",
    "n_critic": "--n-critic is now --d-steps (critic steps per generator step, every recipe with a critic)",
}
RUN_FLAGS = ("recipe", "data", "batch", "device", "seed", "lr", "hidden", "z_dim", "eval_every", "ckpt_every")


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a GAN recipe", description="Train a GAN recipe on CPU or CUDA; "
                       "writes checkpoint.pt (with a sha256 of its contents, checked on --resume), "
                       "metrics.jsonl, samples/*.png and report.md under --out, and first gankernels-run.json, "
                       "the list of the files the run writes: a run never writes a file that is not on it, and "
                       "puts a file on it only if no such file exists. A new run needs a new or empty --out "
                       "(or --allow-nonempty-out). "
                       "Data-parallel: torchrun --standalone --nproc-per-node K -m gankernels train ...")
    t.add_argument("--recipe", help="fgan | wgan-gp | mmd-gan | flow-gan | score-gan | ebgan | alpha-gan")
    t.add_argument("--data", help="ring8 | grid25 | digits | a .npy/.pt file holding a float tensor [N, D]")
    t.add_argument("--batch", type=int, help="batch size (default 256); under torchrun the global batch, "
                   "a multiple of the number of processes")
    t.add_argument("--steps", type=int, help="generator steps in total (default 2000)")
    t.add_argument("--out", required=True, help="run folder, e.g. runs/NAME: new or empty for a new run "
                   "(see --allow-nonempty-out), a run folder with --resume")
    t.add_argument("--device", help="cpu (default) or cuda")
    t.add_argument("--seed", type=int, help="seed (default 0): same seed, same run on CPU")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint "
                   "(exactly: weights and metrics.jsonl as if never stopped)")
    t.add_argument("--allow-nonempty-out", action="store_true",
                   help="start a new run in a non-empty --out that is not a gankernels run; refused, with "
                   "nothing written, if one of the run's file names (config.json, report.md, ...) is taken: "
                   "the run never writes over a file it did not create (its own are listed in "
                   "gankernels-run.json)")
    t.add_argument("--lr", type=float, help="Adam learning rate (default per recipe)")
    t.add_argument("--hidden", type=int, help="MLP width (default 128)")
    t.add_argument("--z-dim", type=int, help="latent dimension (default 8)")
    t.add_argument("--eval-every", type=int, help="evaluate and draw samples every K steps (default steps/10)")
    t.add_argument("--ckpt-every", type=int, help="checkpoint every K steps (default: --eval-every)")
    t.add_argument("--quiet", action="store_true", help="no progress line")
    for name, (typ, text) in RECIPE_FLAGS.items():
        t.add_argument("--" + name.replace("_", "-"), type=typ, help=text)
    for name in REMOVED_FLAGS:   # accepted only to say why they are gone
        t.add_argument("--" + name.replace("_", "-"), type=str, help=argparse.SUPPRESS)

    s = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Draw samples from a run's checkpoint, optionally refined by Langevin dynamics; "
                       "prints the metrics (JSON) and writes a picture.")
    s.add_argument("--run", required=True, help="the run folder (holding checkpoint.pt)")
    s.add_argument("--n", type=int, default=2500, help="number of samples (default 2500)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--refine", choices=["kernel-langevin", "disc-langevin"],
                   help="kernel-langevin: closed-form witness (data vs samples); disc-langevin: the trained critic")
    s.add_argument("--refine-steps", type=int, default=100)
    s.add_argument("--refine-step-size", type=float, help="default 1e-3 x scale^2 (scale: RMS radius of the data)")
    s.add_argument("--refine-temperature", type=float, default=None,
                   help="Langevin temperature tau: noise sqrt(2 step tau) per step (default 0.01); "
                   "0 = plain gradient ascent")
    s.add_argument("--save", help="write the (refined) samples to this .npy or .pt file (and a .png beside it)")


def run(args) -> int:
    try:
        return _train(args) if args.command == "train" else _sample(args)
    except ConfigError as exc:
        print(f"gankernels {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ngankernels {args.command}: interrupted; the last checkpoint is kept (continue with --resume)",
              file=sys.stderr)
        return 130


def _train(args) -> int:
    from .loop import RunConfig, resume, to_json, train

    for name, why in REMOVED_FLAGS.items():
        if getattr(args, name) is not None:
            raise ConfigError(why)
    options = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k) is not None}
    if args.resume:
        given = [k for k in RUN_FLAGS if getattr(args, k) is not None] + list(options)
        given += ["allow_nonempty_out"] if args.allow_nonempty_out else []
        if given:
            raise ConfigError("--resume continues the saved configuration; only --steps may be given "
                              f"(got {', '.join('--' + k.replace('_', '-') for k in given)})")
        last = resume(args.out, args.steps, progress=not args.quiet)
    else:
        if args.recipe is None or args.data is None:
            raise ConfigError("--recipe and --data are required for a new run (or pass --resume)")
        run_args = {k: getattr(args, k) for k in RUN_FLAGS + ("steps",) if getattr(args, k) is not None}
        last = train(RunConfig(**run_args, options=options), args.out, progress=not args.quiet,
                     allow_nonempty_out=args.allow_nonempty_out)
    if last:   # rank 0 (other ranks of a torchrun launch return {})
        print(to_json(last))
        print(f"report: {os.path.join(args.out, 'report.md')}", file=sys.stderr)
    return 0


def _sample(args) -> int:
    import numpy as np
    import torch

    from .loop import sample, to_json
    from .picture import save_picture
    from .runfiles import check_folder, claim

    if args.save is not None:
        if not args.save.endswith((".npy", ".pt")):
            raise ConfigError(f"--save {args.save}: the file name must end in .npy or .pt")
        folder = os.path.dirname(args.save) or "."
        if not os.path.isdir(folder):
            raise ConfigError(f"--save {args.save}: the folder {folder} does not exist")
        if os.path.isdir(args.save):
            raise ConfigError(f"--save {args.save}: is a folder; name a file")
    picture = None if args.save else "sample" + ("_" + args.refine if args.refine else "") + ".png"
    if picture:   # written in the run folder: one of the run's files
        check_folder(args.run, [picture], flag="--run")
    from .loop import REFINE_TEMPERATURE

    temperature = REFINE_TEMPERATURE if args.refine_temperature is None else args.refine_temperature
    res = sample(args.run, args.n, args.seed, args.refine, args.refine_steps, args.refine_step_size, temperature)
    print(to_json({"samples": "generator", **res["metrics"]}))
    x = res["samples"]
    if args.refine:
        print(to_json({"samples": args.refine, "temperature": temperature, **res["refined_metrics"]}))
        x = res["refined"]
    stem = os.path.splitext(args.save)[0] if args.save else os.path.join(args.run, picture[:-len(".png")])
    if picture:
        claim(args.run, [picture])
    if args.save:
        if args.save.endswith(".npy"):
            np.save(args.save, x.numpy())
        else:
            torch.save(x, args.save)
    save_picture(stem + ".png", x, res["data"], f"{os.path.basename(os.path.normpath(args.run))}"
                 + (f" + {args.refine}" if args.refine else ""))
    print(f"picture: {stem}.png", file=sys.stderr)
    return 0
