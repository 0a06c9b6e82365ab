"""Recurrent cells keeping the flax contract `cell(carry, x) -> (carry, y)`.

Any `flax.linen` module with that `__call__` and `initialize_carry(rng, input_shape)`
plugs in, by registered name (`--cell=lstm`) or import path (`--cell=pkg.mod:MyCell`). What a
cell may add (a whole-sequence method, carry leaf names, ...) is in `cells.contract`.
"""

import ast
import functools
from typing import Any

from flax import linen as nn

from cells.contract import SequenceCell
from cells.cornn import CoRNNCell
from cells.exprnn import ExpRNNCell
from cells.gru import GRUCell
from cells.indrnn import IndRNNCell
from cells.lem import LEMCell
from cells.lru import LRUCell
from cells.lstm import LSTMCell
from cells.minrnn import MinGRUCell, MinLSTMCell
from cells.rnn import RNNCell
from cells.stack import StackedCell
from plugins import Registry, SignalExit, check_finite_options, constructor_fields, describe_exception, parse_options

CELLS = Registry("cell")
CELLS.register("rnn", RNNCell)
CELLS.register("irnn", functools.partial(RNNCell, activation="relu", recurrent_init="identity"))
CELLS.register("lstm", LSTMCell)
CELLS.register("lstm_fb0", functools.partial(LSTMCell, forget_bias=0.0))  # PyTorch's and flax's init
CELLS.register("gru", GRUCell)
CELLS.register("indrnn", IndRNNCell)
CELLS.register("cornn", CoRNNCell)
CELLS.register("lem", LEMCell)
CELLS.register("exprnn", ExpRNNCell)
CELLS.register("lru", LRUCell)
CELLS.register("mingru", MinGRUCell)
CELLS.register("minlstm", MinLSTMCell)
# Flax's own cells, for side-by-side checks (flax's LSTM has forget bias 0 and carry (c, h)).
CELLS.register("flax_lstm", nn.OptimizedLSTMCell)
CELLS.register("flax_gru", nn.GRUCell)


def make_cell(spec: str, hidden_size: int, options: str | dict[str, Any] = "", num_layers: int = 1) -> nn.Module:
    """Build a cell from a registered name or `package.module:Class`.

    The class takes its width as `hidden_size` (this repo) or `features` (flax's cells);
    `options` (a dict or "key=value,...") sets any other constructor field. `num_layers > 1`
    stacks that many such cells (`cells.stack.StackedCell`, same width and options). An option
    written `a|b|...` (a tuple or list in a dict) gives one value per layer, first to last (e.g.
    IndRNN's `recurrent_init=uniform|near_one`); it must list exactly `num_layers` values.
    Raises ValueError with a one-line message on any bad input.
    """
    options = parse_options(options) if isinstance(options, str) else dict(options)
    layered = {k: _per_layer(k, v, num_layers) for k, v in options.items() if _is_per_layer(v)}
    if num_layers > 1 or layered:
        layers = [{**options, **{k: v[i] for k, v in layered.items()}} for i in range(num_layers)]
        if num_layers == 1:
            return make_cell(spec, hidden_size, layers[0])
        return StackedCell(tuple(make_cell(spec, hidden_size, opts) for opts in layers))
    factory = CELLS.get(spec)
    fields = constructor_fields(factory)
    cls = getattr(factory, "func", factory)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and hasattr(cls, "initialize_carry")):
        raise ValueError(f"{spec!r} is not a flax.linen cell with initialize_carry(rng, input_shape)")
    width = next((f for f in ("hidden_size", "features") if f in fields), None)
    if width is None:
        raise ValueError(f"cell {spec!r} must take its width as a `hidden_size` or `features` field")
    unknown = sorted(set(options) - set(fields) - {width})
    if unknown:
        allowed = ", ".join(f for f in fields if f != width) or "none"
        raise ValueError(f"cell {spec!r} has no option {', '.join(unknown)}; its options: {allowed}")
    check_finite_options("cell", spec, cls, options)
    try:
        return factory(**{width: hidden_size}, **options)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cell {spec!r} rejected options {options}: {e}") from None
    except SignalExit:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a user's cell may fail in any way, even sys.exit()
        raise ValueError(f"cell {spec!r} failed to build: {describe_exception(e)}") from None


def _is_per_layer(value: Any) -> bool:
    return isinstance(value, list | tuple) or (isinstance(value, str) and "|" in value)


def _per_layer(key: str, value: Any, num_layers: int) -> list[Any]:
    """The per-layer values of option `key`: a tuple/list, or the text `a|b|...` (each a literal, else a string)."""
    values = list(value) if isinstance(value, list | tuple) else [_literal(v.strip()) for v in value.split("|")]
    if len(values) != num_layers:
        raise ValueError(f"option {key}={value!r} gives {len(values)} per-layer values for {num_layers} layer(s)")
    return values


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


__all__ = [
    "CELLS",
    "CoRNNCell",
    "ExpRNNCell",
    "GRUCell",
    "IndRNNCell",
    "LEMCell",
    "LRUCell",
    "LSTMCell",
    "MinGRUCell",
    "MinLSTMCell",
    "RNNCell",
    "SequenceCell",
    "StackedCell",
    "make_cell",
]
