"""One constructor: `build(config)` makes a config's task, cell, model and optimizer, each once.

Validation (`experiments.validation.validate`), training (`experiments.experiment.Experiment`), the gradient
diagnostics, the memory benchmark and the tables all get their parts here, so a part is built one
way and a run builds each once. Errors are ConfigErrors naming the flag.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from cells import contract, make_cell
from experiments import policy
from experiments.config import Config, ConfigError, check_fields, learning_rates, lr_multipliers
from experiments.model import SequenceModel
from experiments.rules import flag_error
from tasks import Task, make_task


class Parts(NamedTuple):
    """What a config builds: its task, cell (stacked when --num_layers > 1), model and optimizer."""

    task: Task
    cell: nn.Module
    model: SequenceModel
    optimizer: optax.GradientTransformation


def build(config: Config, backend: str | None = None) -> Parts:
    """The parts of `config`, the model's path and unroll resolved for `backend` (default: JAX's).
    Checks the scalar fields first (`check_fields`); compiles nothing."""
    check_fields(config)
    try:
        policy.matmul_precision(backend or jax.default_backend(), config.matmul_precision)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    task = _make_task(config)
    try:
        cell = make_cell(config.cell, config.hidden_size, config.cell_options, config.num_layers)
    except ValueError as e:
        raise flag_error(_cell_error_flag(str(e)), str(e)) from None
    return Parts(task, cell, make_model(config, cell, task, backend), make_optimizer(config))


def _make_task(config: Config) -> Task:
    """`make_task` of `config`; a ValueError becomes a ConfigError naming the flag at fault (`_task_error_flag`)."""
    try:
        return make_task(config.task, config.seq_len, config.task_options)
    except ValueError as e:
        flag = _task_error_flag(config, str(e))
        raise flag_error(flag, str(e), str(getattr(config, flag))) from None


def _task_error_flag(config: Config, message: str) -> str:
    """The flag a `tasks.make_task` error is about. `make_task` raises plain ValueErrors, told apart by the
    words it writes: an option it cannot parse, does not know or that the task refuses mentions "option"
    (--task_options, also when the task refused the options together with seq_len); else a constructor that
    refuses its length names seq_len (--seq_len); else the name does not load or build (--task)."""
    if "option" in message and (config.task_options or "seq_len" not in message):
        return "task_options"
    return "seq_len" if "seq_len" in message else "task"


def _cell_error_flag(message: str) -> str:
    """The flag a `cells.make_cell` error is about: --cell_options when it mentions an option (one it cannot
    parse, does not know, or that the cell refused), else --cell (the name does not load or build)."""
    return "cell_options" if "option" in message else "cell"


def make_model(config: Config, cell: Any, task: Task, backend: str | None = None) -> SequenceModel:
    """The SequenceModel of `config`, its path and unroll resolved for `backend` (default: JAX's)."""
    backend = backend or jax.default_backend()
    return SequenceModel(
        cell,
        task.num_outputs,
        task.readout,
        config.remat,
        path=policy.sequence_path(backend, config.sequence_path, contract.sequence_backends(cell)),
        scan_unroll=policy.scan_unroll(backend, config.unroll),
        time_chunk=policy.time_chunk(backend, contract.time_chunkable(cell)),
    )


def member_learning_rates(config: Config, rate: float) -> np.ndarray:
    """The learning rates of a member training at `rate`: `rate`, then factor x rate for each
    `--lr_multipliers` group in its order; (1 + G,) float32, each product taken in float64 and rounded once."""
    groups = lr_multipliers(config.lr_multipliers)
    return np.asarray([rate, *(f * rate for f in groups.values())], np.float32)


def param_bounds(cell: nn.Module) -> dict[str, float]:
    """{parameter name: b}: the cell parameters of that name (in every layer) that are kept in [-b, b]
    after each update (a cell's optional `param_bounds` property, e.g. IndRNN's |u| <= 2^(1/T))."""
    layers = contract.layers_of(cell)
    bounds: dict[str, float] = {}
    for layer in layers:
        bounds.update(contract.param_bounds(layer))
    return bounds


def project(bounds: dict[str, float]) -> optax.GradientTransformation:
    """Projection after the update: the update u of a bounded cell parameter p becomes clip(p + u, -b, b) - p,
    so that p + u lies in [-b, b] (as IndRNN's reference code clips its recurrent weights after each step)."""

    def bounded(path: tuple, update: jax.Array, param: jax.Array) -> jax.Array:
        name = str(getattr(path[-1], "key", path[-1]))
        if path[0] != jax.tree_util.DictKey("cell") or name not in bounds:
            return update
        return jnp.clip(param + update, -bounds[name], bounds[name]) - param

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        return jax.tree_util.tree_map_with_path(bounded, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config: Config, rates: Any = None) -> optax.GradientTransformation:
    """adam | rmsprop | sgd(momentum), after elementwise clipping when clip_value > 0 and global-norm
    clipping when clip_norm > 0, then the projection of bounded parameters (`param_bounds`), its learning
    rates in its state (`optax.inject_hyperparams`, always: one code path for one rate and a sweep).

    `--lr_multipliers=name=f,...`: the cell parameters named `name` (in every layer) get their own
    optimizer with learning rate f x lr (`optax.multi_transform`); the others share the default one.

    The state's `hyperparams`: "learning_rate" (), and with groups "group_learning_rates" (G,).
    `update` reads them from the state, so one optimizer updates every member of a sweep; `rates`
    ((1 + G,), `member_learning_rates`) are only what `init` puts in a new state (default: those
    of the config's first learning rate).
    """
    groups = lr_multipliers(config.lr_multipliers)
    bounds = param_bounds(make_cell(config.cell, config.hidden_size, config.cell_options, config.num_layers))
    projection = [project(bounds)] if bounds else []
    if rates is None:
        rates = member_learning_rates(config, learning_rates(config)[0])
    rates = jnp.asarray(rates)

    def base(lr: jax.Array) -> optax.GradientTransformation:
        return {
            "adam": lambda: optax.adam(lr),
            "rmsprop": lambda: optax.rmsprop(lr, decay=config.rmsprop_decay, eps=1e-8),
            "sgd": lambda: optax.sgd(lr, momentum=config.momentum or None),
        }[config.optimizer]()

    def label(path: tuple, _: Any) -> str:
        name = str(getattr(path[-1], "key", path[-1]))
        return name if path[0] == jax.tree_util.DictKey("cell") and name in groups else "default"

    def optimizer(learning_rate: jax.Array, group_learning_rates: jax.Array | None = None) -> Any:
        opt = base(learning_rate)
        if groups:
            transforms = {"default": opt, **{g: base(group_learning_rates[i]) for i, g in enumerate(groups)}}
            opt = optax.multi_transform(transforms, lambda params: jax.tree_util.tree_map_with_path(label, params))
        clips = [optax.clip(config.clip_value)] if config.clip_value > 0 else []
        clips += [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm > 0 else []
        return optax.chain(*clips, opt, *projection) if clips or projection else opt

    inject = optax.inject_hyperparams(optimizer, hyperparam_dtype=jnp.float32)
    return inject(rates[0], rates[1:]) if groups else inject(rates[0])
