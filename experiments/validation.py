"""A whole config checked before anything compiles: its fields, then what needs its built parts.

`validate(config)` runs `experiments.config.check_fields` (sizes, choices, rates), builds the parts once
(`experiments.build.build`), traces the cell on one step, checks what the task declares, the
--lr_multipliers groups and the memory the run would take, and returns the parts. Every failure is a
ConfigError naming the flag.
"""

from typing import Any

import jax
import jax.numpy as jnp

from experiments.build import Parts, build
from experiments.config import Config, ConfigError, lr_multipliers, user_code
from experiments.memory_estimate import check_memory
from experiments.model import SequenceModel
from experiments.rules import flag_error
from plugins import SignalExit, describe_exception
from tasks import Task


def validate(config: Config, diagnostics_batch: int | None = None, memory: bool = True) -> Parts:
    """Check every field; raise ConfigError on the first bad one. Compiles nothing.

    The scalar fields first (`check_fields`, cheap), then what needs the config's parts, built once by
    `experiments.build.build` and returned: the cell traced on one step, the --lr_multipliers groups,
    and the memory the run would take. `diagnostics_batch`: sequences of the gradient diagnostics batch
    the run will measure (the `--batch` of `experiments.gradients`); None = training's own (`memory_estimate.DIAG_BATCH`
    when --diag_every > 0).
    """
    parts = build(config)  # checks the scalar fields first
    with user_code("the task fails on a batch of 2", "task", config.task):
        _check_task_declarations(config, parts.task)
    _check_cell_runs(config, parts.model, parts.task)
    with user_code("", "cell", config.cell):
        _check_lr_groups(config, parts.model, parts.task)
    if memory:  # reading a run's files (--status, --render_only) needs no room to train it
        with user_code(f"--cell={config.cell} on --task={config.task}: estimating the run's memory"):
            check_memory(config, parts.model, parts.task, diagnostics_batch)
    return parts


def validate_cells(
    config: Config, cells: list[str], flag: str = "cells", listed: list[str] | None = None, **kwargs: Any
) -> dict[str, Config]:
    """`config` for each cell of a --cells list, validated; an error about --cell names --cells instead (and the
    entry, when `listed`, the whole list, default `cells`, has several): `--cells=a,b (b): ...`."""
    listed = listed or cells
    configs = {}
    for cell in cells:
        configs[cell] = config.replace(cell=cell)
        try:
            validate(configs[cell], **kwargs)
        except ConfigError as e:
            if e.field != "cell":
                raise
            entry = f" ({cell})" if len(listed) > 1 else ""
            raise e.relabel(f"--{flag}={','.join(listed)}{entry}") from None
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
        reason = f"{config.cell} has no parameter {', '.join(unknown)}; its parameters: {', '.join(names)}"
        raise flag_error("lr_multipliers", reason)


def _check_task_declarations(config: Config, task: Task) -> None:
    """What a task declares (`tasks.base.Task`) against what it computes, traced on a tiny batch: the
    width of its inputs, and that its headline, table and solved metrics are keys of its `metrics`."""
    inputs, targets = jax.eval_shape(lambda k: task.sample(k, 2), jax.random.PRNGKey(0))

    def refuse(reason: str) -> ConfigError:
        return flag_error("task", reason, config.task)

    if inputs.shape[-1:] != (task.input_size,):
        width = inputs.shape[-1] if inputs.shape else "no"
        raise refuse(f"sample() gives {width} input features, input_size says {task.input_size}")
    # a batch of other sequences than asked for would train and evaluate something else without a word
    if inputs.shape != (2, task.length, task.input_size):
        raise refuse(
            f"sample(key, 2) gives inputs of shape {inputs.shape}; they must be (batch, length, input_size) "
            f"= (2, {task.length}, {task.input_size})"
        )
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise refuse(f"sample() gives {inputs.dtype} inputs; they must be floating")
    if bad := [t.shape for t in jax.tree.leaves(targets) if t.shape[:1] != (2,)]:
        raise refuse(f"sample(key, 2) gives targets of shape {bad[0]}; they must be (batch, ...) = (2, ...)")
    shape = (2, task.length, task.num_outputs) if task.readout == "all" else (2, task.num_outputs)
    keys = jax.eval_shape(task.metrics, jax.ShapeDtypeStruct(shape, jnp.float32), targets)
    if task.headline not in ("loss", "ratio"):
        raise refuse(f"headline={task.headline!r}, must be loss or ratio (a table ranks it, lower first)")
    if unknown := [k for k in (*task.table_metrics, task.solved_metric) if k not in keys]:
        raise refuse(f"declares metric {unknown[0]!r}, but metrics() gives {', '.join(keys)}")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


CHECK_BATCH = 3  # sequences the cell is traced on in validation: not 1, where a (1, ...) output fits any batch


def _check_cell_runs(config: Config, model: SequenceModel, task: Task) -> None:
    """Trace (not compile) the cell on a batch of CHECK_BATCH sequences, so a broken user cell fails here, in one
    line: it must keep its parameters in the `params` collection, keep the batch as the leading axis of its
    output and carry, return a carry like the one it starts from, and its output and carry must be floating
    (an integer one has zero gradient: the cell would train nothing)."""
    B = CHECK_BATCH

    def refuse(reason: str) -> ConfigError:
        return flag_error("cell", reason, config.cell)

    x = jax.ShapeDtypeStruct((B, 2, task.input_size), "float32")

    collections: list[str] = []  # of the cell's variables, seen while tracing

    def step(x: jax.Array) -> tuple[Any, Any]:
        carry0 = model.initial_carry(x)
        variables = model.cell.init(jax.random.PRNGKey(0), carry0, x[:, 0])
        collections.extend(variables)
        if "params" not in variables:
            return carry0, None
        carry, y = model.cell.apply({"params": variables["params"]}, carry0, x[:, 0])
        return carry0, (carry, y)

    try:
        carry0, out = jax.eval_shape(step, x)
    except Exception as e:  # noqa: BLE001 - any failure of a user's cell becomes one line
        raise refuse(f"the cell fails on a ({B}, {task.input_size}) input: {_first_line(e)}") from None
    except SignalExit:
        raise
    except SystemExit as e:
        raise refuse(f"the cell fails on a ({B}, {task.input_size}) input: {describe_exception(e)}") from None
    if out is None:
        found = f"its variables hold {', '.join(collections)}" if collections else "it has no variables"
        raise refuse(
            f"the cell has no `params` collection ({found}); declare its parameters with self.param or "
            "submodules (the optimizer trains `params`)"
        )
    carry, y = out
    if not isinstance(y, jax.ShapeDtypeStruct):
        raise refuse(f"its output is a {type(y).__name__}; it must be one array of shape ({B}, ...)")
    if y.shape[:1] != (B,):
        raise refuse(f"its output has shape {y.shape} on a batch of {B}; it must be ({B}, ...) (batch first)")
    for path, leaf0 in jax.tree_util.tree_leaves_with_path(carry0):
        if leaf0.shape[:1] != (B,):
            where = jax.tree_util.keystr(path) or ""
            raise refuse(
                f"initialize_carry gives carry{where} of shape {leaf0.shape} for a batch of {B}; it must be "
                f"({B}, ...) (batch first)"
            )
    if jax.tree.structure(carry) != jax.tree.structure(carry0) or any(
        (a.shape, a.dtype) != (b.shape, b.dtype)
        for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(carry0), strict=True)
    ):
        got = jax.tree.map(lambda a: a.shape, carry)
        want = jax.tree.map(lambda a: a.shape, carry0)
        raise refuse(
            f"one step returns a carry {got} unlike its initial carry {want} (shapes and dtypes must match "
            "for lax.scan)"
        )
    if jnp.issubdtype(y.dtype, jnp.complexfloating):  # the readout and loss are real
        raise refuse(f"its output is {y.dtype}; it must be real floating (take the real part, as lru does)")
    leaves = [("output", y, jnp.floating)]
    leaves += [("carry", leaf, jnp.inexact) for leaf in jax.tree.leaves(carry)]  # complex carries are fine
    if bad := [f"its {what} is {leaf.dtype}" for what, leaf, kind in leaves if not jnp.issubdtype(leaf.dtype, kind)]:
        raise refuse(f"{bad[0]}; it must be floating (no gradient flows through integers)")

    def whole(x: jax.Array) -> jax.Array:
        return model.apply(model.init(jax.random.PRNGKey(0), x), x)

    with user_code(f"the model fails on a ({B}, 2, {task.input_size}) batch", "cell", config.cell):
        jax.eval_shape(whole, x)
