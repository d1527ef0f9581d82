"""One rank of tests/test_train_distributed.py: the trainer's first steps data-parallel on 2 Gloo processes.

Launched K times with RANK, WORLD_SIZE and GANKERNELS_TEST_INIT (a ``file://`` rendezvous,
as ``dist_worker.py``): ``python train_dist_worker.py OUT_DIR``.  It initialises the process
group once and calls ``gankernels.train.train`` / ``resume`` for every case of ``CASES``
(``train`` then uses that group and leaves it alone); rank 0 writes the runs under
``OUT_DIR/<case>``.  The test runs the same cases single-process and compares the checkpoints.

float64: the trainer has no dtype flag; the worker (and the test's single-process runs) set
torch's default dtype to float64, so the networks, noise and mixture data are float64 and the
only difference between the two runs is the order of floating-point sums (DDP's all-reduce,
the sharded ops' blocks) -- which lets the comparison be tight.
"""
from __future__ import annotations

import os

import torch

from worker_process import error_of, join_group, run, save_and_leave

BATCH = 16   # the global batch: 8 rows per rank
STEPS = 3
# case: (recipe, options, steps, checkpoint every, evaluate every)
CASES = {
    "mmd-gan": ("mmd-gan", {}, STEPS, STEPS, STEPS),
    "flow-gan": ("flow-gan", {}, STEPS, STEPS, STEPS),
    "wgan-gp": ("wgan-gp", {"d_steps": 2}, STEPS, STEPS, STEPS),
    "ebgan": ("ebgan", {}, STEPS, STEPS, STEPS),
    "score-gan": ("score-gan", {"sigma": 0.5}, STEPS, STEPS, STEPS),
    "fgan": ("fgan", {"divergence": "js"}, STEPS, STEPS, STEPS),
    "alpha-gan": ("alpha-gan", {}, STEPS, STEPS, STEPS),
    "mmd-gan-resumed": ("mmd-gan", {}, 2, 2, 1),   # then resumed to STEPS under the same 2 processes
}


def config(case: str):
    from gankernels.train import RunConfig

    recipe, options, steps, ckpt, ev = CASES[case]
    return RunConfig(recipe=recipe, data="ring8", batch=BATCH, steps=steps, seed=3, hidden=16, z_dim=4,
                     eval_every=ev, ckpt_every=ckpt, options=dict(options))


def available(case: str) -> bool:
    import gankernels as gk

    need = {"ebgan": "pulling_away", "score-gan": "smoothed_score"}.get(case)
    return need is None or hasattr(gk, need)


def main(out_dir: str) -> None:
    from gankernels.train import resume, train

    torch.set_default_dtype(torch.float64)
    join_group()
    rank = torch.distributed.get_rank()
    results = {}
    for case in CASES:
        if available(case):
            results[case] = train(config(case), os.path.join(out_dir, case), progress=False, use_matplotlib=False)
    results["mmd-gan-resumed"] = resume(os.path.join(out_dir, "mmd-gan-resumed"), steps=STEPS, progress=False,
                                        use_matplotlib=False)
    # each rank names its own folder: only rank 0's may be written to
    results["own_out"] = train(config("flow-gan"), os.path.join(out_dir, "own_out", f"rank{rank}"),
                               progress=False, use_matplotlib=False)
    bad = config("flow-gan")
    bad.batch = 15
    results["err_batch"] = error_of(lambda: train(bad, os.path.join(out_dir, "bad"), progress=False))
    save_and_leave(results, out_dir)


if __name__ == "__main__":
    run(main)
