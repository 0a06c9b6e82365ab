"""A run's memory, estimated before anything compiles: the bytes it keeps at once by what keeps them
(`memory_estimate`), and the refusal of a run that clearly cannot fit in this machine's RAM (`check_memory`),
naming the flag of what takes the most."""

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp

from experiments import policy
from experiments.config import Config, learning_rates, num_members
from experiments.model import SequenceModel
from experiments.rules import flag_error
from tasks import Task


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


DIAG_BATCH = 32  # sequences in the diagnostics batch of training with --diag_every (TrainingRecorder)
OPTIMIZER_SLOTS = {"adam": 2, "rmsprop": 1, "sgd": 1}  # per-parameter arrays of state (sgd: momentum)


def _nbytes(tree: Any) -> int:
    return sum(leaf.size * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


def memory_estimate(config: Config, model: SequenceModel, task: Task, diagnostics_batch: int = 0) -> dict[str, int]:
    """Bytes a run keeps at once, by what keeps them; shapes from `jax.eval_shape` (no compilation).

    activations: the backward pass's (`SequenceModel.activation_bytes`); batch: a training batch;
    parameters: parameters, gradients and optimizer state; eval: the held-out set and one chunk's
    forward pass; diagnostics: a backward pass over the diagnostics batch with its per-step carry gradients.
    All per member, times the members (--num_seeds x the learning rates). The held-out sets are shared
    by the members; a sweep keeps two (test and validation) for the whole run.
    """
    key, one = jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 2, task.input_size), jnp.float32)

    def shapes(x: jax.Array) -> tuple[Any, Any, jax.Array]:
        params = model.init(key, x)
        carry, y = model.cell.apply({"params": params["cell"]}, model.initial_carry(x), x[:, 0])
        return params, carry, y

    params, carry, y = jax.eval_shape(shapes, one)
    slots = OPTIMIZER_SLOTS[config.optimizer] if config.optimizer != "sgd" or config.momentum else 0
    T, seeds = task.length, num_members(config)
    # per sequence and step, what an evaluation's forward pass stacks: outputs y and the readout's, when it reads all
    per_step = (y.size * y.dtype.itemsize + task.num_outputs * 4) if task.readout == "all" else 0

    held_out_sets = 2 if len(learning_rates(config)) > 1 else 1  # a sweep's validation set beside the test set

    def sample_bytes(n: int) -> int:
        return _nbytes(jax.eval_shape(lambda k: task.sample(k, n), key))

    estimate = {
        "activations": seeds * model.activation_bytes(config.batch_size, T, task.input_size),
        "batch": seeds * sample_bytes(config.batch_size),
        "parameters": seeds * (2 + slots) * _nbytes(params),
        "eval": held_out_sets * sample_bytes(config.eval_size)
        + seeds * min(config.eval_size, policy.EVAL_ROWS) * T * per_step,
        "diagnostics": 0,
    }
    if b := diagnostics_batch:  # one backward pass, plus the (T, B) carry perturbations and their gradients
        backward = model.activation_bytes(b, T, task.input_size) + sample_bytes(b)
        estimate["diagnostics"] = seeds * (backward + 2 * T * b * _nbytes(carry))
    return estimate


def check_memory(
    config: Config, model: SequenceModel, task: Task, diagnostics_batch: int | None = None, fraction: float = 0.8
) -> None:
    """Refuse a run that clearly cannot fit in RAM, naming the flag of what takes the most."""
    explicit = diagnostics_batch is not None
    if not explicit:
        diagnostics_batch = DIAG_BATCH if config.diag_every else 0
    estimate = memory_estimate(config, model, task, diagnostics_batch)
    need, ram = sum(estimate.values()), physical_memory_bytes()
    if need <= fraction * ram:
        return

    def gib(n: float) -> str:
        return f"{n / 2**30:.1f}" if n >= 2**30 / 10 else f"{n / 2**30:.2g}"

    parts = ", ".join(f"{k} {gib(v)}" for k, v in estimate.items() if v)
    total = f"in all ~{gib(need)} GiB ({parts}), more than {fraction:.0%} of this machine's {gib(ram)} GiB"
    largest = max(estimate, key=estimate.get)
    seeds = "--num_seeds" if len(learning_rates(config)) == 1 else "--num_seeds or the --learning_rate list"
    if largest in ("activations", "batch"):
        k = max(2, math.isqrt(task.length))
        with_remat = num_members(config) * dataclasses.replace(model, remat=k).activation_bytes(
            config.batch_size, task.length, task.input_size
        )
        remat = f"add --remat={k} (~{with_remat / 2**30:.2f} GiB of activations) or " if k != config.remat else ""
        raise flag_error(
            "seq_len",
            f"the backward pass would keep ~{gib(estimate['activations'])} GiB of activations, {total}; "
            f"{remat}lower --batch_size, --hidden_size or {seeds}",
            str(config.seq_len),
        )
    if largest == "parameters":
        raise flag_error(
            "hidden_size",
            f"parameters, gradients and {config.optimizer} state would take ~{gib(estimate['parameters'])} GiB, "
            f"{total}; lower --hidden_size or {seeds}",
            str(config.hidden_size),
        )
    if largest == "eval":
        raise flag_error(
            "eval_size",
            f"the held-out set of {config.eval_size} sequences of {task.length} steps and its evaluation would "
            f"take ~{gib(estimate['eval'])} GiB, {total}; lower --eval_size or --seq_len",
            str(config.eval_size),
        )
    flag, lower = ("batch", "lower --batch") if explicit else ("diag_every", "set --diag_every=0")
    value = diagnostics_batch if explicit else config.diag_every
    raise flag_error(
        flag,
        f"gradient diagnostics on a batch of {diagnostics_batch} sequences would take "
        f"~{gib(estimate['diagnostics'])} GiB, {total}; {lower} or add --remat",
        str(value),
    )
