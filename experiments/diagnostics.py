"""Gradient diagnostics: how dL/dh_t vanishes over time, for any cell.

Index convention (every per-step array here, in the .npz/.json files and in the plots)
------------------------------------------------------------------------------------
The model runs ``h_t = cell(h_{t-1}, x_t)`` for steps t = 1..T from the initial carry h_0
(T = ``inputs.shape[1]``, i.e. ``task.length``). Position ``i = 0..T-1`` of a per-step array
is step ``t = i + 1`` and holds what ENTERS that step::

    carry gradient   g[i] = ||dL/dh_i||       = ||dL/dh_{t-1}||, h_i = the carry after i steps
    input gradient   s[i] = ||dL/dx_{i+1}||   = ||dL/dx_t||

L depends on h_i only through steps i+1..T, so g[0] is the gradient at the initial carry
and g[T-1] the one at the carry entering the last step (the final carry h_T is not included).
All of g comes from ONE backward pass: a zero perturbation eps_t is added to the carry
entering every step, ``h_t = cell(h_{t-1} + eps_t, x_t)``, and dL/deps_t at eps = 0 is
dL/dh_{t-1} (`SequenceModel.unroll`).

L is the SUM of per-example losses, so row b of a (B, T) array is example b's own gradient
``||d loss_b / dh_{i,b}||`` (examples do not interact), not scaled by 1/B.

Norms are Euclidean over all non-batch axes. A carry pytree is reported per leaf (see
`carry_leaf_names`: "c" and "h" for the LSTM's (c, h)) and as the whole carry, the headline:
``||g||^2 = sum over leaves ||g_leaf||^2``.

Jacobian spectrum, the dynamics without the loss: ``sigma_max(J_t)``, ``J_t = dh_T/dh_t`` for
the flattened whole carry of one example and t in `jacobian_points` (same h_t as above, so
T - t steps separate them), by power iteration on ``J^T J`` with jvp / transposed jvp.
"""

import functools
import logging
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cells import contract
from experiments import formats, io
from experiments.model import SequenceModel

Params = Any
Carry = Any

DIAG_SEED = 2**31 - 2  # key of the fixed diagnostics batch (tasks.base.HELD_OUT_KEYS holds the held-out sets' keys)
HORIZON_FRACTION = 0.01
STATS = ("mean", "std", "q10", "q50", "q90")
_QUANTILES = (0.1, 0.5, 0.9)

# ---------------------------------------------------------------------------- carry leaves

# `carry_leaf_names` names a carry's leaves (a cell of your own can name them with a class attribute
# `carry_names = ("a", "b")`, in flattening order); `cells.contract` holds it, for the stacks too.
carry_leaf_names = contract.carry_leaf_names


def safe_norm(x: jax.Array, axis: int | tuple[int, ...]) -> jax.Array:
    """Euclidean norm over `axis`, scaled by the largest |entry| first.

    A plain sqrt(sum x^2) underflows once the entries fall below ~1e-19 in float32 (their squares
    pass the smallest normal number), exactly where vanishing gradients live; this one stays exact
    down to the float32 limit itself (~1e-38), below which the gradient is already 0.
    """
    scale = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    safe = jnp.where(scale > 0, scale, 1.0)
    return jnp.sqrt(jnp.sum(jnp.square(x / safe), axis=axis)) * jnp.squeeze(scale, axis)


def _leaf_norms(tree: Any, batch_axis: int) -> list[jax.Array]:
    """Norm of each leaf over every axis after `batch_axis`."""
    return [safe_norm(a, tuple(range(batch_axis + 1, a.ndim))) for a in jax.tree.leaves(tree)]


def _flatten_rows(tree: Any) -> jax.Array:
    """(P, ...) leaves -> (P, n): each row is one example's whole carry, raveled."""
    leaves = jax.tree.leaves(tree)
    return jnp.concatenate([a.reshape(a.shape[0], -1) for a in leaves], axis=1)


def _unflatten_rows(flat: jax.Array, like: Any) -> Any:
    leaves, treedef = jax.tree.flatten(like)
    sizes = [math.prod(a.shape[1:]) for a in leaves]
    parts = jnp.split(flat, np.cumsum(sizes)[:-1], axis=1)
    return treedef.unflatten([p.reshape(a.shape).astype(a.dtype) for p, a in zip(parts, leaves, strict=True)])


def _as_float(inputs: jax.Array) -> jax.Array:
    return inputs if jnp.issubdtype(inputs.dtype, jnp.inexact) else inputs.astype(jnp.float32)


# ---------------------------------------------------------------------------- per-step norms


def measure(model: SequenceModel, task: Any, params: Params, inputs: jax.Array, targets: jax.Array) -> dict:
    """Per-example, per-step gradient norms from one forward + backward pass.

    With L = sum_b loss_b (`task.per_example_loss`), eps a zero carry pytree (T, B, ...):

        carry[b, i]        = ||dL/dh_i||   for example b, the whole carry (i = 0..T-1, see module doc)
        leaves[name][b, i] = the same for one carry leaf
        input[b, i]        = ||dL/dx_{i+1}||

    Args: inputs (B, T, I), targets as `task.sample` returns them.
    Returns: {"loss": (B,), "carry": (B, T), "input": (B, T), "leaves": {name: (B, T)}}.
    """
    inputs = _as_float(inputs)
    carry0 = model.initial_carry(inputs)
    T = inputs.shape[1]
    eps = jax.tree.map(lambda c: jnp.zeros((T,) + c.shape, c.dtype), carry0)

    def total_loss(eps: Carry, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        per_example = task.per_example_loss(model.apply(params, x, eps), targets)
        return jnp.sum(per_example), per_example

    grad_fn = jax.grad(total_loss, argnums=(0, 1), has_aux=True)
    (g_eps, g_x), per_example = grad_fn(eps, inputs)
    leaf_norms = [n.T for n in _leaf_norms(g_eps, batch_axis=1)]  # (T, B) -> (B, T)
    names = carry_leaf_names(model.cell, carry0)
    return {
        "loss": per_example,
        "carry": safe_norm(jnp.stack(leaf_norms, axis=-1), -1),  # sqrt(sum over leaves of squares)
        "input": safe_norm(g_x, -1),
        "leaves": dict(zip(names, leaf_norms, strict=True)),
    }


def batch_stats(x: jax.Array) -> dict[str, jax.Array]:
    """Spread over the batch of a (B, T) array: mean, std and the 10/50/90% quantiles, each (T,)."""
    q = jnp.quantile(x, jnp.asarray(_QUANTILES), axis=0)
    return {"mean": x.mean(0), "std": x.std(0), "q10": q[0], "q50": q[1], "q90": q[2]}


# ---------------------------------------------------------------------------- Jacobian spectrum


def jacobian_points(length: int, num: int = 16) -> np.ndarray:
    """Up to `num` carry indices t in [0, length-1], log-spaced in the distance T - t (1 .. T), ascending."""
    if num <= 0:
        return np.zeros((0,), np.int32)
    distances = np.unique(np.round(np.geomspace(1, length, num)).astype(np.int64))
    return np.sort(length - distances).astype(np.int32)


def carry_history(model: SequenceModel, params: Params, inputs: jax.Array) -> Carry:
    """The carries h_0 .. h_{T-1} entering each step, leaves (T, B, ...) (index i = h_i)."""
    cell_params = params["cell"]

    def step(carry: Carry, x: jax.Array) -> tuple[Carry, Carry]:
        new, _ = model.cell.apply({"params": cell_params}, carry, x)
        return new, carry

    inputs = _as_float(inputs)
    _, hs = jax.lax.scan(step, model.initial_carry(inputs), jnp.swapaxes(inputs, 0, 1))
    return hs


def jacobian_sigmas(
    model: SequenceModel,
    params: Params,
    inputs: jax.Array,
    ts: jax.Array,
    num_iters: int = 20,
    key: jax.Array | None = None,
) -> jax.Array:
    """sigma_max(dh_T/dh_t) per example and t, by power iteration; no dense Jacobian.

    For each example b and t in `ts` (TRACED ints in [0, T-1], so new t's do not recompile)
    one row runs a masked scan over all T steps from the actual h_t of a forward pass,
    applying the cell only at steps s > t (1-based): f(h_t) = h_T. The rows form one batch,
    so the map is block-diagonal and each row's power iteration is its own:

        u <- J v / ||J v||,  v <- J^T u / ||J^T u||  (jvp of the linearised scan, then its transpose);
        sigma = ||J v||

    Cost: one linearised forward pass plus `num_iters` x (jvp + vjp) over B * K rows.
    Args: inputs (B, T, I) (keep B small), ts (K,) int. Returns sigmas (B, K).
    """
    inputs = _as_float(inputs)
    B, T = inputs.shape[:2]
    K = ts.shape[0]
    hs = carry_history(model, params, inputs)  # (T, B, ...)
    start = jax.tree.map(lambda a: a[ts].swapaxes(0, 1).reshape((B * K,) + a.shape[2:]), hs)  # row p = b*K + k
    x_rows = jnp.swapaxes(jnp.repeat(inputs, K, axis=0), 0, 1)  # (T, B*K, I)
    t_rows = jnp.tile(ts, B)
    cell_params = params["cell"]

    def tail(flat: jax.Array) -> jax.Array:
        def step(carry: Carry, xs: tuple[jax.Array, jax.Array]) -> tuple[Carry, None]:
            x, i = xs  # i = s - 1 for step s: the step maps h_i -> h_{i+1}
            new, _ = model.cell.apply({"params": cell_params}, carry, x)
            active = i >= t_rows

            def keep(n: jax.Array, o: jax.Array) -> jax.Array:
                return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

            return jax.tree.map(keep, new, carry), None

        final, _ = jax.lax.scan(step, _unflatten_rows(flat, start), (x_rows, jnp.arange(T)))
        return _flatten_rows(final)

    flat0 = _flatten_rows(start)
    _, jvp = jax.linearize(tail, flat0)
    vjp = jax.linear_transpose(jvp, flat0)

    def normalize(v: jax.Array, fallback: jax.Array) -> jax.Array:
        norm = safe_norm(v, 1)[:, None]
        return jnp.where(norm > 0, v / jnp.where(norm > 0, norm, 1.0), fallback)

    def power_step(_: int, v: jax.Array) -> jax.Array:
        u = normalize(jvp(v), v)  # normalised before the transpose, so J^T J v cannot underflow
        return normalize(vjp(u)[0], v)

    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, flat0.shape, flat0.dtype)
    v = jax.lax.fori_loop(0, num_iters, power_step, normalize(v0, v0))
    return safe_norm(jvp(v), 1).reshape(B, K)


# ---------------------------------------------------------------------------- one diagnostic


def diagnose(
    model: SequenceModel,
    task: Any,
    params: Params,
    inputs: jax.Array,
    targets: jax.Array,
    ts: jax.Array,
    jacobian_examples: int = 4,
    power_iters: int = 20,
) -> dict[str, jax.Array]:
    """Everything for one parameter set, as a flat dict of arrays (T = inputs.shape[1], K = len(ts)).

    Keys: "loss" (mean per-example loss); f"carry_grad_{stat}", f"input_grad_{stat}" and per leaf
    f"carry_grad_{stat}:{leaf}" for stat in STATS, each (T,) (index convention: module doc);
    "jacobian_sigma" (K,), the mean over the first `jacobian_examples` sequences of
    sigma_max(dh_T/dh_t) for t = ts, and "jacobian_sigma_std" (K,).
    """
    m = measure(model, task, params, inputs, targets)
    out = {"loss": jnp.mean(m["loss"])}
    for what, x in [("carry_grad", m["carry"]), ("input_grad", m["input"])]:
        out.update({f"{what}_{k}": v for k, v in batch_stats(x).items()})
    for name, x in m["leaves"].items():
        out.update({f"carry_grad_{k}:{name}": v for k, v in batch_stats(x).items()})
    E = min(jacobian_examples, inputs.shape[0])
    if ts.shape[0] and E > 0:
        sig = jacobian_sigmas(model, params, inputs[:E], ts, power_iters)
        out["jacobian_sigma"], out["jacobian_sigma_std"] = sig.mean(0), sig.std(0)
    else:
        out["jacobian_sigma"] = out["jacobian_sigma_std"] = jnp.zeros((ts.shape[0],))
    return out


def make_diagnose_fn(
    model: SequenceModel, task: Any, seed_axis: bool = False, jacobian_examples: int = 4, power_iters: int = 20
) -> Any:
    """`jit(diagnose)` as `fn(params, inputs, targets, ts)`; with `seed_axis`, params carry a leading
    seed axis and every output gains it. Build it once: later calls with the same shapes reuse the
    compiled program (ts is traced, so other t's of the same count do not recompile)."""
    fn = functools.partial(diagnose, model, task, jacobian_examples=jacobian_examples, power_iters=power_iters)
    if seed_axis:
        fn = jax.vmap(fn, in_axes=(0, None, None, None))
    return jax.jit(fn)


def leaf_names_of(model: SequenceModel, input_size: int) -> list[str]:
    """Carry leaf names of a model (traces nothing heavy: eval_shape of the initial carry)."""
    carry = jax.eval_shape(lambda: model.initial_carry(jnp.zeros((1, 1, input_size))))
    return carry_leaf_names(model.cell, carry)


# ---------------------------------------------------------------------------- summaries


def summarize(norms: np.ndarray, horizon_fraction: float = HORIZON_FRACTION) -> dict[str, Any]:
    """Summaries of one per-step norm curve (T,), e.g. the batch-mean ||dL/dh_i||, i = 0..T-1.

    - first, last, max: norm[0] = ||dL/dh_0||, norm[T-1] = ||dL/dh_{T-1}||, max over i.
    - ratio_first_last = norm[0] / norm[T-1] (< 1: smaller far from the loss).
    - decay_rate: least-squares slope b of log10 norm[i] = a + b i over steps with a finite norm > 0,
      in decades per step. Going back one step multiplies the norm by 10^-b: b > 0 vanishing,
      b < 0 exploding.
    - horizon: the number of steps back from the last (i = T-1, T-2, ...) over which the norm stays
      >= horizon_fraction * max (T: never drops below; 0: already below at the last step).
    """
    x = np.asarray(norms, np.float64)
    T = x.shape[0]
    ok = np.isfinite(x) & (x > 0)
    decay = float(np.polyfit(np.arange(T)[ok], np.log10(x[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
    finite = x[np.isfinite(x)]
    peak = float(finite.max()) if finite.size else float("nan")
    below = ~(x >= horizon_fraction * peak)
    horizon = int(np.argmax(below[::-1])) if below.any() else T
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(x[0] / x[-1])
    return {
        "first": float(x[0]),
        "last": float(x[-1]),
        "max": peak,
        "ratio_first_last": ratio,
        "decay_rate": decay,
        "horizon": horizon,
        "horizon_fraction": horizon_fraction,
    }


def summarize_arrays(arrays: dict[str, np.ndarray], horizon_fraction: float = HORIZON_FRACTION) -> dict[str, Any]:
    """Summaries of one `diagnose` output (no seed axis): headline whole carry, each leaf, inputs."""
    leaves = sorted(k.split(":", 1)[1] for k in arrays if k.startswith("carry_grad_mean:"))
    sigma = np.asarray(arrays["jacobian_sigma"])
    return {
        "loss": float(arrays["loss"]),
        "carry": summarize(arrays["carry_grad_mean"], horizon_fraction),
        "leaves": {n: summarize(arrays[f"carry_grad_mean:{n}"], horizon_fraction) for n in leaves},
        "input": summarize(arrays["input_grad_mean"], horizon_fraction),
        "jacobian_sigma_first": float(sigma[0]) if sigma.size else None,
    }


def to_json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats with None (strict JSON), recursively."""
    if isinstance(obj, dict):
        return {k: to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic `np.savez` (readable with `np.load(path)`, no pickle)."""
    io.atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}), mode="wb")


# ---------------------------------------------------------------------------- during training


class TrainingRecorder:
    """Gradient diagnostics during training, called by `experiments.train` when diag_every > 0.

    `recorder(step, params)` (params with the leading member axis of `experiments.train`: seeds, or
    seeds x learning rates in a sweep) measures every member on a fixed diagnostics batch (key
    DIAG_SEED, `batch_size` sequences) and rewrites, atomically:

    - diagnostics.npz: "steps" (R,), "seeds" (M,) and "learning_rates" (M,) of the M members, "t" (T,)
      = 1..T (step index, see module doc), "jacobian_t" (K,) and every `diagnose` key stacked as
      (R, M, ...), R = recorded steps. Without a sweep the members are the seeds (M = S).
    - diagnostics.jsonl: one record per member per recorded step, "step", "seed", "learning_rate" and
      the `summarize_arrays` summaries.

    One compiled program for the whole run. A resumed run keeps the records before its first
    new step and replaces the rest.
    """

    def __init__(
        self,
        exp: Any,
        workdir: str | Path,
        batch_size: int = 32,
        horizon_fraction: float = HORIZON_FRACTION,
        jacobian_points_count: int = 8,
        jacobian_examples: int = 2,
        power_iters: int = 10,
    ):
        self.exp = exp
        self.workdir = Path(workdir)
        self.horizon_fraction = horizon_fraction
        self.inputs, self.targets = exp.task.sample(jax.random.PRNGKey(DIAG_SEED), batch_size)
        self.length = int(self.inputs.shape[1])
        self.ts = jnp.asarray(jacobian_points(self.length, jacobian_points_count))
        self.seeds = np.asarray([seed for seed, _ in exp.members], np.int64)
        self.learning_rates = np.asarray([rate for _, rate in exp.members], np.float64)
        self._fn = make_diagnose_fn(exp.model, exp.task, True, jacobian_examples, power_iters)
        self.npz_path = self.workdir / "diagnostics.npz"
        self.jsonl_path = self.workdir / "diagnostics.jsonl"
        self._steps, self._rows = self._load()

    def _load(self) -> tuple[list[int], list[dict[str, np.ndarray]]]:
        if not self.npz_path.exists():
            return [], []
        try:
            with np.load(self.npz_path) as z:
                data = {k: z[k] for k in z.files}
            keys = [k for k in data if k not in ("steps", "seeds", "learning_rates", "t", "jacobian_t")]
            rates = formats.npz_learning_rates(data)  # None in a file from before sweeps: one rate, the run's
            same_rates = (
                np.array_equal(rates, self.learning_rates) if rates is not None else len(set(self.learning_rates)) == 1
            )
            if data["t"].shape != (self.length,) or not np.array_equal(data["seeds"], self.seeds) or not same_rates:
                raise ValueError("shapes differ")
            steps = [int(s) for s in data["steps"]]
            return steps, [{k: data[k][r] for k in keys} for r in range(len(steps))]
        except (OSError, KeyError, ValueError) as e:
            logging.warning("ignoring unreadable %s (%s); starting a new diagnostics history", self.npz_path, e)
            return [], []

    def __call__(self, step: int, params: Params) -> dict[str, np.ndarray]:
        out = jax.device_get(self._fn(params, self.inputs, self.targets, self.ts))
        keep = [r for r, s in enumerate(self._steps) if s < step]
        self._steps = [self._steps[r] for r in keep] + [int(step)]
        self._rows = [self._rows[r] for r in keep] + [{k: np.asarray(v) for k, v in out.items()}]
        arrays = {k: np.stack([row[k] for row in self._rows]) for k in self._rows[-1]}
        arrays.update(steps=np.asarray(self._steps), seeds=self.seeds, learning_rates=self.learning_rates)
        arrays.update(t=np.arange(1, self.length + 1), jacobian_t=self.ts)
        write_npz(self.npz_path, arrays)
        records = [r for r in io.read_jsonl(self.jsonl_path) if r.get("step", step) < step]
        for i, (seed, rate) in enumerate(zip(self.seeds, self.learning_rates, strict=True)):
            summary = summarize_arrays({k: np.asarray(v[i]) for k, v in out.items()}, self.horizon_fraction)
            member = {"step": int(step), "seed": int(seed), "learning_rate": float(rate)}
            records.append(to_json_safe({**member, **summary}))
        io.write_jsonl(self.jsonl_path, records)
        return out
