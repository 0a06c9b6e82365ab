r"""The optional part of the cell contract, and the one place that reads it.

Every cell keeps flax's contract: ``cell(carry, x) -> (carry, y)`` and
``initialize_carry(rng, input_shape)``. On top of it a cell MAY provide the whole-sequence method
`SequenceCell.sequence` and any of these class attributes (each has a default, so a cell of your
own needs none of them):

============================  =======================  ==================================================
attribute                     default                  meaning
============================  =======================  ==================================================
``carry_names``               see `carry_leaf_names`   names of the carry's leaves, in `jax.tree.leaves`
                                                       order, as the gradient diagnostics report them
                                                       (``("c", "h")`` for the LSTM's carry (c, h))
``sequence_backends``         None                     the backends where ``sequence`` is the faster path
                                                       (None: the accelerators; `experiments.policy`)
``time_chunkable``            False                    ``sequence`` may run over consecutive chunks of
                                                       time, the carry handed on, at no extra cost
``param_bounds``              ``{}``                   {parameter name: b}: kept in [-b, b] after each
                                                       update (IndRNN's recurrent weights)
``layers``                    ``(cell,)``              the cells stacked inside (`cells.stack`)
============================  =======================  ==================================================

Read them through the functions here (`has_sequence`, `sequence_options`, `sequence_backends`,
`time_chunkable`, `param_bounds`, `layers_of`, `carry_leaf_names`), never with `getattr` at the call site.
"""

import inspect
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import jax
from flax import linen as nn

Carry = Any

# Cells whose carry is (c, h) without a `carry_names`: flax's LSTM cells.
_CH_CELLS = ("flax.linen.recurrent.LSTMCell", "flax.linen.recurrent.OptimizedLSTMCell")


@runtime_checkable
class SequenceCell(Protocol):
    r"""A cell that runs all T steps of a sequence in one call, beside its one-step ``__call__``.

    ``sequence(carry, xs, perturbations=None, unroll=1, *, last_only=False, scan="associative")``
    computes the same thing as T calls of the step::

        carry_t, y_t = cell(carry_{t-1} + eps_t, x_t)        t = 1..T

    Shapes (time-major, B the batch axes, I the input and H the output width):

    - ``carry``: the cell's carry pytree, each leaf (B, ...) as ``initialize_carry`` makes it;
    - ``xs``: (T, B, I);
    - ``perturbations``: None, or a pytree like ``carry`` with a leading time axis (T, B, ...),
      eps_t added to the carry entering step t (the gradient diagnostics' probe, zero in
      training; `experiments.model.SequenceModel.unroll`);
    - ``unroll``: passed to the ``lax.scan`` over time, where there is one;
    - returns (final carry, ys (T, B, H)).

    Two keywords are optional; `sequence_options` passes each only to a method that takes it:
    ``last_only`` (return the last output (B, H) alone instead of ys) and ``scan`` (the linear
    recurrences' scan method, one of `cells.scan.METHODS`).

    It runs with bound parameters (``cell.apply(variables, ..., method="sequence")``) that the
    step created at init: the two paths share one set of parameters.
    """

    def sequence(
        self, carry: Carry, xs: jax.Array, perturbations: Carry | None = None, unroll: int = 1
    ) -> tuple[Carry, jax.Array]: ...


def has_sequence(cell: nn.Module) -> bool:
    """True when `cell` provides the whole-sequence method (`SequenceCell`)."""
    return isinstance(cell, SequenceCell) and callable(cell.sequence)


def sequence_options(cell: SequenceCell, **options: Any) -> dict[str, Any]:
    """The keyword options among `options` that the cell's ``sequence`` takes (all, given ``**kwargs``)."""
    parameters = inspect.signature(cell.sequence).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    return {k: v for k, v in options.items() if k in parameters}


def sequence_backends(cell: nn.Module) -> tuple[str, ...] | None:
    """The backends where the cell's ``sequence`` is the faster path, or None (the accelerators)."""
    return getattr(cell, "sequence_backends", None)


def time_chunkable(cell: nn.Module) -> bool:
    """True when the cell's ``sequence`` may run over consecutive chunks of time at no extra cost."""
    return bool(getattr(cell, "time_chunkable", False))


def param_bounds(cell: nn.Module) -> dict[str, float]:
    """{parameter name: b} of the cell's parameters kept in [-b, b] after each update; {} for most cells."""
    return dict(getattr(cell, "param_bounds", None) or {})


def layers_of(cell: nn.Module) -> Sequence[nn.Module]:
    """The cells inside a stack, first to last; ``(cell,)`` for any other cell."""
    return getattr(cell, "layers", None) or (cell,)


def carry_leaf_names(cell: nn.Module, carry: Carry) -> list[str]:
    """Names of the carry's leaves, in `jax.tree.leaves` order.

    A single array is "h". Otherwise the cell's ``carry_names`` if it has one naming each leaf
    once, ("c", "h") for flax's LSTM cells, else the pytree path joined by "." (tuple indices
    "0", "1"; dict keys; namedtuple fields). A stack's leaves are ``"<layer>.<name>"``, each layer
    named by this same rule (`cells.stack.StackedCell.carry_names`).
    """
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(carry)[0]]
    if len(paths) == 1 and not paths[0]:
        return ["h"]
    names = getattr(cell, "carry_names", None)
    cls = type(cell)
    if names is None and f"{cls.__module__}.{cls.__qualname__}" in _CH_CELLS and len(paths) == 2:
        names = ("c", "h")
    if names is not None and len(names) == len(paths) and len(set(names)) == len(names):
        return [str(n) for n in names]
    return [".".join(_key_name(k) for k in path) or "h" for path in paths]


def _key_name(key: Any) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)
