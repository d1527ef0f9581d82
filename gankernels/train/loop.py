"""The one training loop, checkpoints, and sampling (with optional Langevin refinement).

A run lives in one folder: ``gankernels-run.json`` (the list of the run's own files,
written first; ``runfiles.py``), ``checkpoint.pt`` (atomic: temp file + fsync + rename),
``config.json``, ``metrics.jsonl`` (one line per evaluation; NaN and infinities as
``null``), ``samples/step_*.png``, ``samples.npy`` (the last evaluation's samples) and
``report.md``.  A checkpoint holds the networks, the optimisers, the step, the state of
the run's one ``torch.Generator``, the loss sums since the last evaluation and a sha256
of all of these; resuming from it reproduces the uninterrupted run exactly (CPU):
weights and ``metrics.jsonl`` alike (metrics logged after it by a killed run are
dropped and recomputed).
Evaluation draws its own fixed latent batch, so it never perturbs training.
Under ``torchrun --nproc-per-node K`` the same loop runs data-parallel on K
processes (``--batch`` is the global batch; ``parallel.py``): rank 0 alone
evaluates and writes the files, and the run equals the single-process run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

import gankernels as gk

from .data import Dataset, load_data
from .errors import ConfigError, one_line, require_op
from .metrics import EVAL_SAMPLES, digits_classifier, evaluate
from .parallel import check_batch, current_world, mean_logs, pairwise_ops, rank_device, session, wrap_ddp
from .picture import save_picture
from .recipes import Context, Recipe, data_kernel, make_recipe
from .runfiles import atomic_write, check_folder, claim, json_safe

__all__ = ["RunConfig", "train", "resume", "load_run", "sample", "CHECKPOINT"]

CHECKPOINT = "checkpoint.pt"
FORMAT = "gankernels.train/2"   # /1: no checksum, no loss sums
EVAL_SEED_OFFSET = 7919


@dataclass
class RunConfig:
    recipe: str
    data: str
    batch: int = 256
    steps: int = 2000
    seed: int = 0
    device: str = "cpu"
    lr: Optional[float] = None
    hidden: int = 128
    z_dim: int = 8
    eval_every: int = 0          # 0: steps // 10
    ckpt_every: int = 0          # 0: eval_every
    options: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("batch", "steps", "hidden", "z_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if self.batch < 2:
            raise ConfigError(f"--batch must be at least 2 (unbiased MMD^2), got {self.batch}")
        for name in ("eval_every", "ckpt_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        try:
            dev = torch.device(self.device)
        except RuntimeError:
            raise ConfigError(f"--device {self.device!r}: not a device (use cpu or cuda)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available here; use --device cpu")

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 10)

    @property
    def ckpt_interval(self) -> int:
        return self.ckpt_every or self.eval_interval


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_digest(state: Dict[str, Any]) -> str:
    """sha256 of a checkpoint's contents but its "sha256" entry: tensors by dtype, shape and bytes,
    other values by type and repr, dict entries in a fixed order (independent of torch.save's format)."""
    h = hashlib.sha256()

    def feed(obj):
        if isinstance(obj, dict):
            h.update(b"{%d;" % len(obj))
            for k in sorted(obj, key=repr):
                feed(k)
                feed(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(b"[%d;" % len(obj))
            for v in obj:
                feed(v)
        elif isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(f"{type(obj).__name__}:{obj!r};".encode())

    feed({k: v for k, v in state.items() if k != "sha256"})
    return h.hexdigest()


def save_checkpoint(path: str, cfg: RunConfig, recipe: Recipe, step: int, rng: torch.Generator,
                    elapsed: float, sums: Dict[str, float], count: int) -> None:
    state = {"format": FORMAT, "config": dataclasses.asdict(cfg), "step": step, "elapsed_s": elapsed,
             "recipe": recipe.state_dict(), "rng": rng.get_state(),
             "running": {"sums": dict(sums), "count": count}}
    state["sha256"] = checkpoint_digest(state)
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint at ``path``, checked against its sha256; a ConfigError saying what is wrong otherwise."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no checkpoint to resume from (train without --resume to start a new run)")
    try:
        with warnings.catch_warnings():   # torch's own advice would come out ahead of the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "weights only load failed" in str(exc).lower():
            raise ConfigError(f"{path}: cannot read the checkpoint: it holds pickled Python objects besides tensors, "
                              "which are not loaded (unpickling them could run code); it is not a gankernels "
                              "checkpoint -- start a new run in another --out") from None
        raise ConfigError(f"{path}: cannot read the checkpoint ({one_line(exc)}); it is damaged or not a gankernels "
                          "checkpoint -- restore it or start a new run in another --out") from None
    if isinstance(state, dict) and state.get("format") == "gankernels.train/1":
        raise ConfigError(f"{path}: written by an older gankernels (format gankernels.train/1, without a checksum "
                          f"or the running loss sums); this version reads {FORMAT} -- start a new run")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a {FORMAT} checkpoint; start a new run in another --out")
    try:
        intact = state.get("sha256") == checkpoint_digest(state)
    except Exception:   # a value the digest cannot read: not what save_checkpoint wrote
        intact = False
    if not intact:
        raise ConfigError(f"{path}: the checkpoint is damaged: its contents do not match the sha256 stored "
                          "in it -- restore it from a copy or start a new run in another --out")
    return state


def build(cfg: RunConfig, data: Dataset) -> Recipe:
    """The recipe with its initial weights, a function of cfg.seed only (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        recipe = make_recipe(cfg.recipe, data, cfg.hidden, cfg.z_dim, cfg.lr, cfg.options)
    return recipe.to(rank_device(cfg.device, current_world()))


def load_run(out: str):
    """(cfg, data, recipe, state) of the run in folder ``out`` from its checkpoint."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError(f"{out}: is a file, not a run folder")
    state = load_checkpoint(os.path.join(out, CHECKPOINT))
    try:
        cfg = RunConfig(**state["config"])
        legacy = cfg.options   # options renamed or removed since: n_critic -> d_steps; eta (no effect under Adam)
        if "n_critic" in legacy:
            legacy["d_steps"] = legacy.pop("n_critic")
        legacy.pop("eta", None)
        if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{out}: the run was trained with --device {cfg.device}, and CUDA is not available "
                              "here; open it on a machine with a GPU")
        data = load_data(cfg.data)
        recipe = build(cfg, data)
        recipe.load_state_dict(state["recipe"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"{out}/{CHECKPOINT}: does not match this version of the recipe "
                          f"({one_line(exc)})") from None
    return cfg, data, recipe, state


# ----------------------------------------------------------------------------- progress and files

class Progress:
    """One stderr line: step, rate, running losses and the last metrics (redrawn at most 4 times a second)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.last = total, enabled, 0.0
        self.tty = enabled and sys.stderr.isatty()

    def show(self, step: int, rate: float, logs: Dict[str, float], metrics: Dict[str, Any], force: bool = False):
        now = time.monotonic()
        if not self.enabled or (not force and (not self.tty or now - self.last < 0.25)):
            return
        self.last = now
        width = 20
        done = int(width * step / self.total)
        parts = [f"[{'#' * done}{'.' * (width - done)}] {step}/{self.total}", f"{rate:.1f} it/s"]
        parts += [f"{k} {v:.4g}" for k, v in logs.items()]
        parts += [_fmt_metric(k, v, metrics) for k, v in metrics.items() if k in ("modes", "hq", "kid", "classes")]
        line = " | ".join(parts)
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self):
        if self.tty:
            sys.stderr.write("\n")


def _fmt_metric(key: str, value, metrics) -> str:
    if value is None:   # a NaN or infinity read back from metrics.jsonl
        return f"{key} n/a"
    if key == "modes":
        return f"modes {value}/{metrics['n_modes']}"
    if key == "hq":
        return f"hq {100 * value:.1f}%"
    if key == "classes":
        return f"classes {value}/10"
    return f"{key} {value:.3g}"


def _read_metrics(path: str, upto: Optional[int] = None) -> List[Dict[str, Any]]:
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if upto is None or row.get("step", 0) <= upto:
                rows.append(row)
    return rows


def to_json(obj) -> str:
    """Strict JSON (RFC 8259): NaN and +-infinity become null."""
    return json.dumps(json_safe(obj), allow_nan=False)


def _write_metrics(path: str, rows: List[Dict[str, Any]]) -> None:
    atomic_write(path, lambda f: f.write("".join(to_json(r) + "\n" for r in rows).encode()))


def _eval_steps(cfg: RunConfig, start: int) -> List[int]:
    return [s for s in range(start + 1, cfg.steps + 1) if s % cfg.eval_interval == 0 or s == cfg.steps]


def run_files(cfg: RunConfig, start: int) -> List[str]:
    """The files (relative to the run folder) a run writes going from step ``start`` to ``cfg.steps``."""
    names = ["config.json", "metrics.jsonl", "metrics.jsonl.tmp", CHECKPOINT, CHECKPOINT + ".tmp",
             "samples.npy", "report.md"]
    return names + [f"samples/step_{s:07d}.png" for s in _eval_steps(cfg, start)]


def _eval_noise(cfg: RunConfig) -> torch.Tensor:
    g = torch.Generator().manual_seed(cfg.seed + EVAL_SEED_OFFSET)
    return torch.randn(EVAL_SAMPLES, cfg.z_dim, generator=g).to(cfg.device)


def _classifier(data: Dataset):
    return digits_classifier() if data.image_shape == (8, 8) and data.name == "digits" else None


# ----------------------------------------------------------------------------- training

def train(cfg: RunConfig, out: str, progress: bool = True, use_matplotlib: Optional[bool] = None,
          allow_nonempty_out: bool = False) -> Dict[str, Any]:
    """Train a new run of ``cfg`` in folder ``out``; returns the last evaluation's metrics.

    Everything is checked (configuration, data, recipe options, the folder) before anything
    is written.  ``out`` must be new, empty or a run folder without a checkpoint; with
    ``allow_nonempty_out`` any folder in which none of the run's file names is taken.
    Under torchrun: every rank calls this; rank 0 returns the metrics, the others ``{}``.
    """
    cfg.validate()
    check_batch(cfg.batch, current_world())
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out}: is a file, not a folder; name a folder for the run")
    if os.path.exists(os.path.join(out, CHECKPOINT)):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    check_folder(out, run_files(cfg, 0), new=True, allow_nonempty=allow_nonempty_out)
    data = load_data(cfg.data)
    recipe = build(cfg, data)
    rng = torch.Generator().manual_seed(cfg.seed)
    return _loop(out, cfg, data, recipe, rng, 0, 0.0, [], ({}, 0), progress, use_matplotlib)


def resume(out: str, steps: Optional[int] = None, progress: bool = True,
           use_matplotlib: Optional[bool] = None) -> Dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint, to ``steps`` in total (default: its configured steps).

    Metrics a killed run logged after the checkpoint are dropped; the steps after it are
    recomputed exactly as the uninterrupted run would have done them.
    """
    cfg, data, recipe, state = load_run(out)
    check_batch(cfg.batch, current_world())
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < state["step"]:
            raise ConfigError(f"--steps must be an integer >= the checkpoint's step {state['step']}, got {steps!r}")
        cfg.steps = steps
    check_folder(out, run_files(cfg, state["step"]))
    rng = torch.Generator()
    rng.set_state(state["rng"])
    history = _read_metrics(os.path.join(out, "metrics.jsonl"), upto=state["step"])
    running = (dict(state["running"]["sums"]), state["running"]["count"])
    return _loop(out, cfg, data, recipe, rng, state["step"], state["elapsed_s"], history, running, progress,
                 use_matplotlib)


def _loop(out, cfg, data, recipe, rng, start, elapsed, history, running, progress, use_matplotlib) -> Dict[str, Any]:
    world = current_world()
    device = rank_device(cfg.device, world)
    with session(world, device):
        if world.size > 1:
            recipe.wrap(wrap_ddp(device))
        ctx = Context(data, cfg.batch, cfg.z_dim, rng, device, world.rank, world.size, pairwise_ops(world))
        if not world.main:   # the same steps, no evaluation and no files
            for _ in range(start + 1, cfg.steps + 1):
                mean_logs(recipe.step(ctx), world)
            return {}
        return _main_loop(out, cfg, data, recipe, ctx, start, elapsed, history, running, progress, use_matplotlib,
                          world)


def _main_loop(out, cfg, data, recipe, ctx, start, elapsed, history, running, progress, use_matplotlib, world):
    claim(out, run_files(cfg, start))   # the list of the run's files goes first
    os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=1)
    metrics_path = os.path.join(out, "metrics.jsonl")
    _write_metrics(metrics_path, history)
    ckpt_path = os.path.join(out, CHECKPOINT)
    classifier, z_eval = _classifier(data), _eval_noise(cfg)
    bar = Progress(cfg.steps, progress)
    sums, count = running   # loss sums since the last evaluation (kept in the checkpoint)
    last = history[-1] if history else {}
    t0 = time.perf_counter() - elapsed
    t_rate = time.perf_counter()
    for step in range(start + 1, cfg.steps + 1):
        logs = mean_logs(recipe.step(ctx), world)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        evaluate_now = step % cfg.eval_interval == 0 or step == cfg.steps
        if evaluate_now:
            samples = recipe.generate(z_eval).cpu()
            last = {"step": step, "time_s": round(time.perf_counter() - t0, 3),
                    **{k: v / count for k, v in sums.items()}, **evaluate(data, samples, classifier)}
            history.append(last)
            with open(metrics_path, "a") as f:
                f.write(to_json(last) + "\n")
            save_picture(os.path.join(out, "samples", f"step_{step:07d}.png"), samples, data,
                         f"{cfg.recipe} on {cfg.data}, step {step}", use_matplotlib)
            sums, count = {}, 0
        if step % cfg.ckpt_interval == 0 or step == cfg.steps:
            save_checkpoint(ckpt_path, cfg, recipe, step, ctx.generator, time.perf_counter() - t0, sums, count)
        rate = (step - start) / max(time.perf_counter() - t_rate, 1e-9)
        bar.show(step, rate, logs, last, force=evaluate_now)
    bar.close()
    import numpy as np

    np.save(os.path.join(out, "samples.npy"), recipe.generate(z_eval).cpu().numpy())
    write_report(out, cfg, history, world.size, recipe.settings())
    return last


def write_report(out: str, cfg: RunConfig, history: List[Dict[str, Any]], ranks: int = 1,
                 settings: Optional[Dict[str, Any]] = None) -> None:
    keys = [k for k in ("loss_d", "loss_g", "kid", "mmd2", "modes", "hq", "kl", "classes", "confident", "class_kl")
            if history and k in history[-1]]
    final = history[-1] if history else {}
    lines = [f"# {cfg.recipe} on {cfg.data}", "",
             f"Command: `{command(cfg, out, ranks)}`", "",
             f"Configuration: `{json.dumps(dataclasses.asdict(cfg))}`", "",
             f"gankernels {gk.__version__}, torch {torch.__version__}, device {cfg.device}, "
             f"torch threads {torch.get_num_threads()}"
             + (f", data-parallel over {ranks} processes" if ranks > 1 else "")
             + f"; {final.get('time_s', 0):.1f} s of training and evaluation.", ""]
    if settings:
        source = settings.get("source", "")
        lines += ["## Training settings", "",
                  "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {json.dumps(v)} |" for k, v in settings.items() if k != "source"]
        lines += ["", f"Source of these defaults: {source}." if source else "", ""]
    lines += ["## Final metrics (2,500 samples vs the held-out data)", ""]
    lines += [f"- {k}: {_report_value(k, final[k], final)}" for k in keys if k in final]
    lines += ["", "Metric definitions: `gankernels/train/metrics.py` (docs/MATH.md §6); KID of non-image data on per-dimension "
              "standardised features.", "",
              "## Metrics over training", "", "| step | time s | " + " | ".join(keys) + " |",
              "|---:|---:|" + "---:|" * len(keys)]
    for row in history:
        lines.append(f"| {row['step']} | {row['time_s']:.1f} | "
                     + " | ".join(_report_value(k, row.get(k, math.nan), row) for k in keys) + " |")
    if history:
        lines += ["", "## Samples (last evaluation)", "", f"![samples](samples/step_{final['step']:07d}.png)"]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def command(cfg: RunConfig, out: str, ranks: int = 1) -> str:
    """The ``gankernels train`` command line that starts this run (under torchrun for ``ranks`` > 1)."""
    flags = {"recipe": cfg.recipe, "data": cfg.data, "batch": cfg.batch, "steps": cfg.steps, "seed": cfg.seed}
    defaults = RunConfig(cfg.recipe, cfg.data)
    for name in ("device", "lr", "hidden", "z_dim", "eval_every", "ckpt_every"):
        if getattr(cfg, name) != getattr(defaults, name):
            flags[name] = getattr(cfg, name)
    flags.update({k: v for k, v in cfg.options.items() if v is not None})
    launcher = f"torchrun --standalone --nproc-per-node {ranks} -m" if ranks > 1 else "python -m"
    return f"{launcher} gankernels train " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items()) \
        + f" --out {out}"


def _report_value(key: str, value, row) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if key == "modes":
        return f"{value}/{row.get('n_modes', '?')}"
    if key in ("hq", "confident"):
        return f"{100 * value:.1f} %"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


# ----------------------------------------------------------------------------- sampling

REFINERS = ("kernel-langevin", "disc-langevin")
REFINE_TEMPERATURE = 0.01   # default Langevin temperature of ``sample --refine``; 0 = plain gradient ascent


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sample(out: str, n: int = EVAL_SAMPLES, seed: int = 0, refine: Optional[str] = None, steps: int = 100,
           step_size: Optional[float] = None, temperature: float = REFINE_TEMPERATURE) -> Dict[str, Any]:
    """Samples of the run in ``out``: ``{"data", "samples", "metrics", "refined", "refined_metrics"}``.

    ``refine``: Langevin dynamics x <- x + eta drift + sqrt(2 eta temperature) xi, with
    ``kernel-langevin``: drift = gradient of the closed-form witness of n reference data points
    vs the *current* samples (the fake centres move with the samples: one ``gk.kernel_langevin``
    step per call, centres refreshed between steps), or ``disc-langevin``: drift = gradient of
    the trained critic (``gk.langevin_sample`` with ``gk.discriminator_score``).
    ``temperature`` defaults to ``REFINE_TEMPERATURE`` (0.01); 0 is plain gradient ascent.
    ``step_size`` eta defaults to 1e-3 * scale^2 (scale = RMS radius of the data).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"--n must be an integer >= 2, got {n!r}")
    if refine is not None and refine not in REFINERS:
        raise ConfigError(f"--refine {refine!r}: use one of {', '.join(REFINERS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"--refine-steps must be an integer >= 0, got {steps!r}")
    if step_size is not None and not (_is_number(step_size) and step_size > 0 and math.isfinite(step_size)):
        raise ConfigError(f"--refine-step-size must be positive and finite, got {step_size!r}")
    if not (_is_number(temperature) and temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(f"--refine-temperature must be >= 0 and finite, got {temperature!r}")
    cfg, data, recipe, _ = load_run(out)
    g = torch.Generator().manual_seed(seed)
    x = recipe.generate(torch.randn(n, cfg.z_dim, generator=g).to(cfg.device))
    classifier = _classifier(data)
    result = {"data": data, "samples": x.cpu(), "metrics": evaluate(data, x, classifier)}
    if refine is None:
        return result
    eta = step_size if step_size is not None else 1e-3 * data.scale ** 2
    real = data.reference(n).to(x.device)
    if refine == "kernel-langevin":
        fn = require_op("kernel_langevin", "--refine kernel-langevin")
        weights = torch.cat([x.new_full((n,), 1.0 / n), x.new_full((n,), -1.0 / n)])
        kernel, y = data_kernel(data.scale), x
        for _ in range(steps):   # the fake centres are the samples as they are now
            y = fn(y, torch.cat([real, y]), kernel, weights, eta, 1, temperature, generator=g)
    else:
        score = require_op("discriminator_score", "--refine disc-langevin")
        run = require_op("langevin_sample", "--refine disc-langevin")
        critic = recipe.critic(real, x)
        if critic is None:
            raise ConfigError(f"--refine disc-langevin: recipe {cfg.recipe!r} has no critic network; "
                              "use --refine kernel-langevin")
        y = run(x, score(critic), steps, eta, temperature, generator=g)
    result.update(refined=y.cpu(), refined_metrics=evaluate(data, y, classifier))
    return result
