"""Sharded pairwise reductions over a ``torch.distributed`` process group.

Each of the K ranks of the group holds its shard of the samples: ``x_r`` [n_r, D],
``y_r`` [m_r, D] (and ``z_r``, weights ``w_r`` where the op has them); shards may have
different sizes.  X = [x_0; ...; x_{K-1}] (N rows) and Y (M rows) are the global
batches in rank order.  Every function returns what the single-process op returns
on the global batch:

* ``kernel_sum(x_r, y_r, k, w_r)``     = rank r's rows of ``gankernels.kernel_sum(X, Y, k, W)``
* ``kernel_flow(x_r, y_r, k, w_r)``    = rank r's rows of ``gankernels.kernel_flow(X, Y, k, W)``
* ``smoothed_score(x_r, y_r, s, w_r)`` = rank r's rows of ``gankernels.smoothed_score(X, Y, s, W)``
* ``witness(z_r, x_r, y_r, k)``        = rank r's rows of ``gankernels.witness(Z, X, Y, k)``
* ``mmd2(x_r, y_r, k, estimator)``     = ``gankernels.mmd2(X, Y, k, estimator)``, the same 0-dim value
  (bitwise) on every rank.

What is fused / how.  One small metadata all-gather per call checks that the
ranks agree (op, D, dtype, device type, kernel and parameters, weight layout,
requires_grad) and tells every rank the shard sizes; any bad input on any rank
then raises the same exception on every rank instead of leaving the others
waiting in a collective.  Then one autograd-aware all-gather of the set each
rank reduces against (uneven shards: padded to the largest, trimmed), and the
single-process fused engine on rank r's own rows.  ``mmd2`` is the quadratic
form v^T K v over Z = [X; Y] split by the owner of the left row: rank r
evaluates its own diagonal block in the engine's symmetric self mode and its
off-diagonal blocks with the next ``(K-1)//2`` ranks (half of the block with the
opposite rank when K is even), counted twice, so every unordered pair is
evaluated exactly once on one rank and the work is balanced -- (N+M)^2 / 2K
pairs per rank.  The K partial values are all-gathered and summed in rank order.

Gradients.  The collectives' backward passes compute the gradient of the **sum
over ranks of each rank's loss** (the convention of ``torch.distributed.nn``):
the backward of the all-gather sends every rank's gradient for the rows of
rank s to rank s (one ``all_to_all_single``) and sums them there, so a
gradient always lands on the shard that owns the rows.  Under DDP, which
averages parameter gradients over ranks, this gives the gradient of the mean
over ranks of the per-rank losses: backprop ``mmd2`` as is and the parameters
get the gradient of the global MMD^2; for row-wise ops (``kernel_flow`` etc.)
a per-rank loss that is a mean over the rank's rows gives the global mean.
Without DDP, backprop ``loss / world_size`` for replicated values such as
``mmd2`` to get exactly the single-process gradient.  The backward of the
all-to-all is the all-gather again, so double backward (gradient penalties on
the witness or on ``mmd2``) works as far as the engine supports it.  Every
rank must run the backward pass: it is a collective.

Communication per rank per step: O((N + M) D) -- the gathered rows forward,
their gradients backward, a constant ~2 KB of metadata and K scalars; never
anything N x M.  ``communication_bytes`` is the formula; ``count_communication``
counts the bytes actually passed to the collectives.

Memory: O((N + M) D) per rank (the gathered set); nothing N x M.

Limits: eager only (the collectives are not traced by ``torch.compile``);
every shard must be non-empty; tested with Gloo on CPU -- NCCL / GPUs are
untested.  Errors: no process group -> ``RuntimeError``; bad or inconsistent
input on any rank -> the same ``TypeError`` / ``ValueError`` on every rank,
naming the argument and the rank.
"""
from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from . import pairwise
from ._checks import check_choice, check_kernel, check_point_pair, check_real, check_tensor, check_weights
from .kernels import Kernel
from .pairwise import _acc_dtype, _encode, _self_diagonal

__all__ = [
    "kernel_sum", "kernel_flow", "smoothed_score", "witness", "mmd2", "all_gather_rows",
    "CommStats", "count_communication", "communication_bytes",
]

_ops_ns = torch.ops.gankernels

# ----------------------------------------------------------------------------- communication accounting


@dataclass
class CommStats:
    """Collective calls of this rank: ``payload_bytes`` = bytes of the tensors it passed in,
    ``sent_bytes`` = bytes it sends to other ranks (all-gather: its input to each of the
    K - 1 others, as a ring does; all-to-all: every block but its own)."""

    calls: int = 0
    payload_bytes: int = 0
    sent_bytes: int = 0

    def add(self, payload: int, sent: int) -> None:
        self.calls += 1
        self.payload_bytes += payload
        self.sent_bytes += sent


_COUNTERS: List[CommStats] = []


@contextlib.contextmanager
def count_communication():
    """``with count_communication() as stats: ...`` counts this rank's collectives (forward and backward)."""
    stats = CommStats()
    _COUNTERS.append(stats)
    try:
        yield stats
    finally:
        _COUNTERS.remove(stats)


def _record(payload: int, sent: int) -> None:
    for stats in _COUNTERS:
        stats.add(payload, sent)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _all_gather(out: List[torch.Tensor], t: torch.Tensor, group) -> None:
    _record(_nbytes(t), (len(out) - 1) * _nbytes(t))
    dist.all_gather(out, t, group=group)


def _all_to_all(out: torch.Tensor, t: torch.Tensor, out_splits, in_splits, rank: int, group) -> None:
    row = _nbytes(t) // max(1, t.shape[0])
    _record(_nbytes(t), _nbytes(t) - in_splits[rank] * row)
    dist.all_to_all_single(out, t, output_split_sizes=out_splits, input_split_sizes=in_splits, group=group)


# ----------------------------------------------------------------------------- autograd-aware collectives

def _gather_forward(local: torch.Tensor, sizes: Sequence[int], group) -> torch.Tensor:
    local = local.contiguous()
    pad = max(sizes) - local.shape[0]
    if pad:
        local = torch.cat([local, local.new_zeros((pad,) + tuple(local.shape[1:]))])
    parts = [torch.empty_like(local) for _ in sizes]
    _all_gather(parts, local, group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def _scatter_sum_forward(full: torch.Tensor, sizes: Sequence[int], group) -> torch.Tensor:
    rank = dist.get_rank(group)
    own = sizes[rank]
    out = full.new_empty((len(sizes) * own,) + tuple(full.shape[1:]))
    _all_to_all(out, full.contiguous(), [own] * len(sizes), list(sizes), rank, group)
    return out.reshape((len(sizes), own) + tuple(full.shape[1:])).sum(0)  # fixed (rank) order


class _RowsCollective(torch.autograd.Function):
    """gather: [n_r, ...] on rank r -> [sum_r n_r, ...] on every rank.  scatter-sum: [sum_r n_r, ...] on every
    rank -> the rows of rank r summed over ranks.  Each is the other's adjoint, so the backward is the other one."""

    @staticmethod
    def forward(ctx, t, sizes, group, gather: bool):
        ctx.sizes, ctx.group, ctx.gather = sizes, group, gather
        return _gather_forward(t, sizes, group) if gather else _scatter_sum_forward(t, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        return _RowsCollective.apply(grad, ctx.sizes, ctx.group, not ctx.gather), None, None, None


def _gather_rows(local: torch.Tensor, sizes: Sequence[int], group) -> torch.Tensor:
    """Differentiable all-gather of rows of unequal counts (backward: the rows of this rank, summed over ranks)."""
    return _RowsCollective.apply(local, sizes, group, True)


# ----------------------------------------------------------------------------- agreement between ranks

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
           torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128)
_OPS = ("all_gather_rows", "kernel_sum", "kernel_flow", "smoothed_score", "witness", "mmd2")
_DEVICES = ("cpu", "cuda")
_SLOTS = 3          # named tensors per call
_CONFIG_SLOTS = 3   # configuration items per call (kernel, estimator, sigma, ...)
_MSG = 240          # bytes of an error message carried to the other ranks
# metadata row: [status, op, device type, dtype] + per tensor slot [present, rows, cols, requires_grad]
# + per configuration item a fingerprint + the error message, one byte per entry
_T0 = 4
_C0 = _T0 + 4 * _SLOTS
_M0 = _C0 + _CONFIG_SLOTS
_META = _M0 + _MSG


def _group_info(group) -> Tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "gankernels.distributed needs an initialised process group: call "
            "torch.distributed.init_process_group(...) first (torchrun sets up the environment for it)"
        )
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("group: this process is not a member of the given process group")
    return dist.get_world_size(group), rank


def _meta_device(group) -> torch.device:
    if str(dist.get_backend(group)).lower() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _fingerprint(value) -> int:
    try:
        return zlib.crc32(repr(value).encode())
    except Exception:  # a repr that fails: the local checks reject the value anyway
        return 0


def _encode_meta(op, tensors, config, error) -> List[int]:
    status, message = 0, b""
    if error is not None:
        status = 1 if isinstance(error, TypeError) else 2
        message = str(error).encode()[:_MSG]
    first = next((t for t in tensors.values() if isinstance(t, torch.Tensor)), None)
    device = _DEVICES.index(first.device.type) if first is not None and first.device.type in _DEVICES else 2
    dtype = _DTYPES.index(first.dtype) if first is not None and first.dtype in _DTYPES else len(_DTYPES)
    meta = [status, _OPS.index(op), device, dtype]
    for t in list(tensors.values()) + [None] * (_SLOTS - len(tensors)):
        if isinstance(t, torch.Tensor) and error is None:
            cols = -1 if t.dim() == 1 else (t.shape[1] if t.dim() > 1 else 0)
            meta += [1, t.shape[0], cols, int(t.requires_grad and torch.is_grad_enabled())]
        else:
            meta += [0, 0, 0, 0]
    meta += [_fingerprint(v) for v in config.values()] + [0] * (_CONFIG_SLOTS - len(config))
    return meta + list(message) + [0] * (_MSG - len(message))


def _describe_cols(present: int, cols: int) -> str:
    if not present:
        return "None"
    return "[rows]" if cols == -1 else f"[rows, {cols}]"


def _check_table(op, table, names, config_names) -> None:
    """Raise the same error on every rank if any rank failed or the ranks disagree."""
    world = len(table)
    for r, row in enumerate(table):
        if row[0]:
            msg = bytes(row[_M0:]).rstrip(b"\0").decode(errors="replace")
            raise (TypeError if row[0] == 1 else ValueError)(f"gankernels.distributed.{op} on rank {r}: {msg}")

    def differ(col):
        return next((r for r in range(1, world) if table[r][col] != table[0][col]), None)

    r = differ(1)
    if r is not None:
        raise ValueError(f"gankernels.distributed: rank 0 called {_OPS[table[0][1]]} but rank {r} called "
                         f"{_OPS[table[r][1]]}; every rank must make the same calls in the same order")
    r = differ(2)
    if r is not None:
        kinds = _DEVICES + ("another device type",)
        raise ValueError(f"gankernels.distributed.{op}: the inputs must be on the same device type on every "
                         f"rank, got {kinds[table[0][2]]} on rank 0 and {kinds[table[r][2]]} on rank {r}")
    r = differ(3)
    if r is not None:
        d0, dr = (_DTYPES[table[i][3]] if table[i][3] < len(_DTYPES) else "another dtype" for i in (0, r))
        raise TypeError(f"gankernels.distributed.{op}: {', '.join(names)} must have the same dtype on every rank, "
                        f"got {d0} on rank 0 and {dr} on rank {r}")
    for i, name in enumerate(names):
        base = _T0 + 4 * i
        r = differ(base)
        if r is None:
            r = differ(base + 2)
        if r is not None:
            c0, cr = table[0][base + 2], table[r][base + 2]
            if table[0][base] and table[r][base] and c0 > 0 and cr > 0:
                raise ValueError(f"gankernels.distributed.{op}: {name} must have the same dimension (number of "
                                 f"columns) on every rank, got {c0} on rank 0 and {cr} on rank {r}")
            raise ValueError(f"gankernels.distributed.{op}: {name} must have the same layout on every rank, got "
                             f"{_describe_cols(table[0][base], c0)} on rank 0 and "
                             f"{_describe_cols(table[r][base], cr)} on rank {r}")
        r = differ(base + 3)
        if r is not None:
            raise ValueError(f"gankernels.distributed.{op}: {name} requires grad on some ranks but not on others "
                             f"(rank 0: {bool(table[0][base + 3])}, rank {r}: {bool(table[r][base + 3])}); "
                             "the backward pass is a collective, so it must be the same on every rank")
    for i, name in enumerate(config_names):
        r = differ(_C0 + i)
        if r is not None:
            raise ValueError(f"gankernels.distributed.{op}: {name} must be the same on every rank "
                             f"(rank 0 and rank {r} differ)")


def _agree(op: str, group, tensors: Dict[str, object], config: Dict[str, object], validate) -> Dict[str, List[int]]:
    """Validate locally, exchange metadata, check it identically on every rank.

    ``validate()`` runs the local checks (raising TypeError / ValueError); ``tensors``
    are the named per-rank tensors whose row counts are returned per rank.
    """
    world, rank = _group_info(group)
    error = None
    try:
        validate()
    except Exception as err:  # noqa: BLE001 -- reported to every rank below, so that none waits
        error = err
    meta = torch.tensor(_encode_meta(op, tensors, config, error), dtype=torch.int64, device=_meta_device(group))
    parts = [torch.empty_like(meta) for _ in range(world)]
    _all_gather(parts, meta, group)
    table = [p.tolist() for p in parts]
    try:
        _check_table(op, table, list(tensors), list(config))
    except (TypeError, ValueError) as exc:
        if error is None:
            raise
        raise exc from error  # the same error as on the other ranks, chained to this rank's own
    if str(dist.get_backend(group)).lower() == "nccl" and table[0][2] != 1:
        raise ValueError(f"gankernels.distributed.{op}: the NCCL backend needs CUDA tensors")
    return {name: [row[_T0 + 4 * i + 1] for row in table] for i, name in enumerate(tensors)}


# ----------------------------------------------------------------------------- public API

def all_gather_rows(t: torch.Tensor, group=None) -> torch.Tensor:
    """The rows of every rank's ``t`` [n_r, ...] concatenated in rank order, on every rank.

    Shards may have different numbers of rows.  Autograd-aware: the gradient of
    the sum over ranks of each rank's loss reaches the rank that owns the rows
    (twice differentiable).  The hook for trainers that need a gathered batch.
    """
    def validate():
        check_tensor(t, "t")
        if t.dim() == 0 or t.shape[0] == 0:
            raise ValueError(f"t must have at least one dimension and one row, got shape {tuple(t.shape)}")

    shape = tuple(t.shape[1:]) if isinstance(t, torch.Tensor) else None
    dtype = str(t.dtype) if isinstance(t, torch.Tensor) else None
    sizes = _agree("all_gather_rows", group, {"t": t}, {"the shape of t after its first dimension": shape,
                                                        "the dtype of t": dtype}, validate)
    return _gather_rows(t, sizes["t"], group)


def _centres(y: torch.Tensor, w: Optional[torch.Tensor], sizes: Sequence[int], group):
    """Gather y and its weights (one collective) -> (Y, W or None)."""
    if w is None:
        return _gather_rows(y, sizes, group), None
    yw = _gather_rows(torch.cat([y, w], 1), sizes, group)
    return yw[:, : y.shape[1]], yw[:, y.shape[1]:]


def _weighted_reduction(op: str, x, y, weights, group, setting: Tuple[str, object], check_setting, compute,
                        matrix_weights: bool):
    """Shared body of kernel_sum / kernel_flow / smoothed_score: gather [y | w], reduce x against it.

    ``setting`` is the (name, value) of the kernel or sigma, checked by ``check_setting()``.
    """
    def validate():
        check_point_pair(x, y)
        check_setting()
        check_weights(weights, y.shape[0], y, "y", columns=matrix_weights)

    sizes = _agree(op, group, {"x": x, "y": y, "weights": weights}, dict([setting]), validate)
    w = None if weights is None else weights.to(x.dtype).reshape(y.shape[0], -1)
    Y, W = _centres(y, w, sizes["y"], group)
    if W is not None and weights.dim() == 1:
        W = W.squeeze(1)
    return compute(x, Y, W)


def kernel_sum(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, weights: Optional[torch.Tensor] = None,
               group=None) -> torch.Tensor:
    """Rank r's rows of ``gankernels.kernel_sum(X, Y, kernel, W)``: out_i = sum_j w_j k(x_i, y_j) over the global Y."""
    return _weighted_reduction("kernel_sum", x, y, weights, group, ("kernel", kernel), lambda: check_kernel(kernel),
                               lambda a, Y, W: pairwise.kernel_sum(a, Y, kernel, W), matrix_weights=True)


def kernel_flow(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, weights: Optional[torch.Tensor] = None,
                group=None) -> torch.Tensor:
    """Rank r's rows of ``gankernels.kernel_flow(X, Y, kernel, W)``: sum_j w_j grad_a k(x_i, y_j) over the global Y."""
    return _weighted_reduction("kernel_flow", x, y, weights, group, ("kernel", kernel), lambda: check_kernel(kernel),
                               lambda a, Y, W: pairwise.kernel_flow(a, Y, kernel, W), matrix_weights=False)


def smoothed_score(x: torch.Tensor, y: torch.Tensor, sigma: float, weights: Optional[torch.Tensor] = None,
                   group=None) -> torch.Tensor:
    """Rank r's rows of ``gankernels.smoothed_score(X, Y, sigma, W)``: the score of the global Y smoothed by N(0, sigma^2 I)."""
    import gankernels

    return _weighted_reduction("smoothed_score", x, y, weights, group, ("sigma", sigma),
                               lambda: check_real(sigma, "sigma", "positive"),
                               lambda a, Y, W: gankernels.smoothed_score(a, Y, sigma, W), matrix_weights=False)


def _split_xy(xy: torch.Tensor, x_sizes, y_sizes):
    """[x_0; y_0; x_1; y_1; ...] -> (X, Y)."""
    blocks = xy.split([n + m for n, m in zip(x_sizes, y_sizes)])
    return torch.cat([b[:n] for b, n in zip(blocks, x_sizes)]), torch.cat([b[n:] for b, n in zip(blocks, x_sizes)])


def witness(z: torch.Tensor, x: torch.Tensor, y: torch.Tensor, kernel: Kernel, group=None) -> torch.Tensor:
    """Rank r's rows of ``gankernels.witness(Z, X, Y, kernel)``: mean_i k(z, x_i) - mean_j k(z, y_j) over the global X, Y."""
    def validate():
        check_point_pair(x, y)
        check_point_pair(z, x, "z", "x")
        check_kernel(kernel)

    sizes = _agree("witness", group, {"z": z, "x": x, "y": y}, {"kernel": kernel}, validate)
    X, Y = _split_xy(_gather_rows(torch.cat([x, y]), [n + m for n, m in zip(sizes["x"], sizes["y"])], group),
                     sizes["x"], sizes["y"])
    return pairwise.witness(z, X, Y, kernel)


def _mmd2_blocks(rank: int, world: int, sizes: Sequence[int]) -> List[Tuple[int, int, int, int, int]]:
    """Off-diagonal blocks rank ``rank`` evaluates: (q0, q1, s, c0, c1) = its rows q0:q1 against rows c0:c1 of rank s.

    Each unordered pair of rows on two different ranks is covered exactly once over
    all ranks: rank r takes the blocks of ranks r+1 ... r+(K-1)//2 (mod K) whole,
    and for even K the block pair with the opposite rank s = r + K/2 is split:
    the lower rank takes its first half of rows against all of s, the upper rank
    all its rows against the second half of the lower rank's rows.
    """
    out = []
    for d in range(1, (world - 1) // 2 + 1):
        s = (rank + d) % world
        out.append((0, sizes[rank], s, 0, sizes[s]))
    if world % 2 == 0:
        s = (rank + world // 2) % world
        if rank < s:
            out.append((0, sizes[rank] // 2, s, 0, sizes[s]))
        else:
            out.append((0, sizes[rank], s, sizes[s] // 2, sizes[s]))
    return [b for b in out if b[1] > b[0] and b[4] > b[3]]


def _mmd2_weights(n: int, m: int, big_n: int, big_m: int, estimator: str, like: torch.Tensor):
    """Left / right pair weights (A, B) of one rank's rows [x_r; y_r] and the diagonal weights.

    value = sum_{a,b} A_a . B_b k(z_a, z_b) (minus the diagonal for "unbiased"):
    biased A = B = v (1/N on x rows, -1/M on y rows); unbiased A = one-hot group,
    B = the group's column of [[1/(N(N-1)), -1/(NM)], [-1/(NM), 1/(M(M-1))]].
    """
    def rows(xv, yv):
        return torch.cat([like.new_tensor([xv]).expand(n, len(xv)), like.new_tensor([yv]).expand(m, len(yv))])

    if estimator == "biased":
        v = rows([1.0 / big_n], [-1.0 / big_m])
        return v, v, None
    cxx, cyy, cxy = 1.0 / (big_n * (big_n - 1)), 1.0 / (big_m * (big_m - 1)), -1.0 / (big_n * big_m)
    return rows([1.0, 0.0], [0.0, 1.0]), rows([cxx, cxy], [cxy, cyy]), rows([cxx], [cyy]).squeeze(1)


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, estimator: str = "biased", group=None) -> torch.Tensor:
    """``gankernels.mmd2(X, Y, kernel, estimator)`` over the global batches, the same value on every rank."""
    def validate():
        check_point_pair(x, y)
        check_kernel(kernel)
        check_choice(estimator, "estimator", ("biased", "unbiased"))

    sizes = _agree("mmd2", group, {"x": x, "y": y}, {"kernel": kernel, "estimator": estimator}, validate)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    big_n, big_m = sum(sizes["x"]), sum(sizes["y"])
    if estimator == "unbiased" and (big_n < 2 or big_m < 2):
        raise ValueError(f"the unbiased estimator needs at least 2 samples in x and y over all ranks, "
                         f"got N={big_n}, M={big_m}")
    acc = _acc_dtype(x)
    family, params = _encode(kernel, x.shape[1])
    z_sizes = [n + m for n, m in zip(sizes["x"], sizes["y"])]
    local = torch.cat([x, y])
    blocks = _gather_rows(local, z_sizes, group).to(acc).split(z_sizes)
    own = local.to(acc)
    weights = [_mmd2_weights(n, m, big_n, big_m, estimator, own) for n, m in zip(sizes["x"], sizes["y"])]
    a, b, diag = weights[rank]
    partial = (a * _ops_ns.ksum(own, None, b, family, params)).sum()
    by_query: Dict[Tuple[int, int], List[Tuple[int, int, int]]] = {}
    for q0, q1, s, c0, c1 in _mmd2_blocks(rank, world, z_sizes):
        by_query.setdefault((q0, q1), []).append((s, c0, c1))
    for (q0, q1), centres in by_query.items():
        zc = torch.cat([blocks[s][c0:c1] for s, c0, c1 in centres])
        bc = torch.cat([weights[s][1][c0:c1] for s, c0, c1 in centres])
        partial = partial + 2.0 * (a[q0:q1] * _ops_ns.ksum(own[q0:q1], zc, bc, family, params)).sum()
    if diag is not None:
        partial = partial - (diag * _self_diagonal(kernel, own)).sum()
    # keep the gathered rows in the graph on every rank, so every rank joins the backward collective
    partial = partial + blocks[0][:0].sum()
    return _gather_rows(partial.reshape(1), [1] * world, group).sum().to(x.dtype)


# ----------------------------------------------------------------------------- the communication formula

def communication_bytes(op: str, dim: int, dtype: torch.dtype, x_rows: Sequence[int], y_rows: Sequence[int],
                        weight_cols: int = 0, rank: int = 0, backward: bool = True) -> CommStats:
    """Bytes rank ``rank`` passes to / sends through collectives in one call of ``op`` (plus its backward).

    ``x_rows`` / ``y_rows``: the shard sizes of every rank; ``weight_cols``: columns of
    the weights (0 for None, 1 for [M]).  With G_r rows of width c gathered (b bytes
    each) and K ranks: forward all-gather max(G)·c·b (sent (K-1)·max(G)·c·b), backward
    all-to-all sum(G)·c·b (sent (sum(G) - G_rank)·c·b), plus the metadata all-gather
    of 8·{meta} bytes.  mmd2 gathers [x; y] (G = n + m, c = D) and K partial values;
    witness gathers [x; y]; kernel_sum, kernel_flow, smoothed_score gather [y | w]
    (G = m, c = D + weight_cols).  O((N + M) D), independent of N·M.
    """
    world = len(x_rows)
    item = torch.empty((), dtype=dtype).element_size()
    acc_item = 8 if dtype == torch.float64 else 4
    stats = CommStats()

    def gather(rows, cols, itemsize):
        stats.add(max(rows) * cols * itemsize, (world - 1) * max(rows) * cols * itemsize)
        if backward:
            stats.add(sum(rows) * cols * itemsize, (sum(rows) - rows[rank]) * cols * itemsize)

    stats.add(8 * _META, 8 * _META * (world - 1))
    if op in ("mmd2", "witness"):
        gather([n + m for n, m in zip(x_rows, y_rows)], dim, item)
        if op == "mmd2":
            gather([1] * world, 1, acc_item)
    elif op in ("kernel_sum", "kernel_flow", "smoothed_score"):
        gather(list(y_rows), dim + weight_cols, item)
    else:
        raise ValueError(f"op must be one of mmd2, witness, kernel_sum, kernel_flow, smoothed_score, got {op!r}")
    return stats


communication_bytes.__doc__ = communication_bytes.__doc__.replace("{meta}", str(_META))
