"""A whole config checked before anything compiles: its fields, then what needs its built parts.

`validate(config)` runs `experiments.config.check_fields` (sizes, choices, rates), builds the parts once
(`experiments.build.build`), traces the cell on one step, checks what the task declares, the
--lr_multipliers groups and the memory the run would take, and returns the parts. Every failure is a
ConfigError naming the flag.
"""

import re
from typing import Any

import jax
import jax.numpy as jnp

from experiments.build import Parts, build
from experiments.config import Config, ConfigError, check_memory, lr_multipliers
from experiments.model import SequenceModel
from tasks import Task


def validate(config: Config, diagnostics_batch: int | None = None) -> Parts:
    """Check every field; raise ConfigError on the first bad one. Compiles nothing.

    The scalar fields first (`check_fields`, cheap), then what needs the config's parts, built once by
    `experiments.build.build` and returned: the cell traced on one step, the --lr_multipliers groups,
    and the memory the run would take. `diagnostics_batch`: sequences of the gradient diagnostics batch
    the run will measure (the `--batch` of `experiments.gradients`); None = training's own (`config.DIAG_BATCH`
    when --diag_every > 0).
    """
    parts = build(config)  # checks the scalar fields first
    _check_task_declarations(config, parts.task)
    _check_cell_runs(config, parts.model, parts.task)
    _check_lr_groups(config, parts.model, parts.task)
    check_memory(config, parts.model, parts.task, diagnostics_batch)
    return parts


def validate_cells(config: Config, cells: list[str], flag: str = "cells", **kwargs: Any) -> dict[str, Config]:
    """`config` for each cell of a --cells list, validated; an error names --cells (and the entry), not --cell."""
    configs = {}
    for cell in cells:
        configs[cell] = config.replace(cell=cell)
        try:
            validate(configs[cell], **kwargs)
        except ConfigError as e:
            entry = f" ({cell})" if len(cells) > 1 else ""
            raise ConfigError(re.sub(r"^--cell(=\S+)?: ", f"--{flag}={','.join(cells)}{entry}: ", str(e))) from None
    return configs


def parameter_names(model: SequenceModel, task: Task) -> list[str]:
    """The names (last path keys) of the cell's parameters, sorted; traced, not compiled."""
    x = jax.ShapeDtypeStruct((1, 2, task.input_size), "float32")
    params = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)["cell"]
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return sorted({str(getattr(path[-1], "key", path[-1])) for path in paths})


def _check_lr_groups(config: Config, model: SequenceModel, task: Task) -> None:
    groups = lr_multipliers(config.lr_multipliers)
    if not groups:
        return
    names = parameter_names(model, task)
    if unknown := sorted(set(groups) - set(names)):
        raise ConfigError(
            f"--lr_multipliers: {config.cell} has no parameter {', '.join(unknown)}; its parameters: {', '.join(names)}"
        )


def _check_task_declarations(config: Config, task: Task) -> None:
    """What a task declares (`tasks.base.Task`) against what it computes, traced on a tiny batch: the
    width of its inputs, and that its headline, table and solved metrics are keys of its `metrics`."""
    inputs, targets = jax.eval_shape(lambda k: task.sample(k, 2), jax.random.PRNGKey(0))
    name = f"--task={config.task}"
    if inputs.shape[-1] != task.input_size:
        raise ConfigError(
            f"{name}: sample() gives {inputs.shape[-1]} input features, input_size says {task.input_size}"
        )
    shape = (2, task.length, task.num_outputs) if task.readout == "all" else (2, task.num_outputs)
    keys = jax.eval_shape(task.metrics, jax.ShapeDtypeStruct(shape, jnp.float32), targets)
    if task.headline not in ("loss", "ratio"):
        raise ConfigError(f"{name}: headline={task.headline!r}, must be loss or ratio (a table ranks it, lower first)")
    if unknown := [k for k in (*task.table_metrics, task.solved_metric) if k not in keys]:
        raise ConfigError(f"{name}: declares metric {unknown[0]!r}, but metrics() gives {', '.join(keys)}")


def _check_cell_runs(config: Config, model: SequenceModel, task: Task) -> None:
    """Trace (not compile) one cell step, so a broken user cell fails here, in one line; its output and
    carry must be floating (an integer one has zero gradient: the cell would train nothing)."""
    x = jax.ShapeDtypeStruct((1, 2, task.input_size), "float32")

    def run(x: jax.Array) -> tuple[Any, Any]:
        params = model.init(jax.random.PRNGKey(0), x)
        model.apply(params, x)
        return model.cell.apply({"params": params["cell"]}, model.initial_carry(x), x[:, 0])

    try:
        carry, y = jax.eval_shape(run, x)
    except Exception as e:  # noqa: BLE001 - any failure of a user's cell becomes one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--cell={config.cell}: the cell fails on a (1, {task.input_size}) input: {first}") from None
    leaves = [("output", leaf, jnp.floating) for leaf in jax.tree.leaves(y)]  # real: the readout and loss are
    leaves += [("carry", leaf, jnp.inexact) for leaf in jax.tree.leaves(carry)]  # complex carries are fine
    if bad := [f"its {what} is {leaf.dtype}" for what, leaf, kind in leaves if not jnp.issubdtype(leaf.dtype, kind)]:
        raise ConfigError(f"--cell={config.cell}: {bad[0]}; it must be floating (no gradient flows through integers)")
