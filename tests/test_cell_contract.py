"""The optional cell surface (`cells.contract`): the whole-sequence Protocol, its companions, carry leaf names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cells import CELLS, make_cell
from cells.contract import (
    SequenceCell,
    carry_leaf_names,
    has_sequence,
    layers_of,
    param_bounds,
    sequence_backends,
    sequence_options,
    time_chunkable,
)
from experiments.model import SequenceModel

WITH_SEQUENCE = {"rnn", "irnn", "lstm", "lstm_fb0", "gru", "exprnn", "lru", "mingru", "minlstm"}
PLUGIN = "examples.my_cells:MinGRUCell"  # a user's cell: the step contract alone


@pytest.mark.parametrize("name", sorted(CELLS.names()))
def test_each_built_in_cell_with_a_sequence_method_satisfies_the_protocol(name):
    cell = make_cell(name, 3)
    assert isinstance(cell, SequenceCell) == has_sequence(cell) == (name in WITH_SEQUENCE)


def test_a_stack_has_the_sequence_method_whatever_its_layers():
    for spec in ("lstm", PLUGIN):
        stack = make_cell(spec, 3, num_layers=2)
        assert isinstance(stack, SequenceCell) and has_sequence(stack) and len(layers_of(stack)) == 2


def test_companions_default_for_a_cell_without_them():
    cell = make_cell(PLUGIN, 3)
    assert not has_sequence(cell) and sequence_backends(cell) is None and not time_chunkable(cell)
    assert list(layers_of(cell)) == [cell] and param_bounds(cell) == {}
    assert param_bounds(make_cell("indrnn", 3, "bound_steps=8")) == {"recurrent_weight": 2.0 ** (1 / 8)}
    assert sequence_backends(make_cell("lru", 3)) is not None and time_chunkable(make_cell("mingru", 3))
    assert sequence_backends(make_cell("lstm", 2, num_layers=2)) is None
    assert sequence_backends(make_cell("lru", 2, num_layers=2)) == tuple(sorted(sequence_backends(make_cell("lru", 2))))


def test_sequence_options_passes_only_the_keywords_a_method_takes():
    assert sequence_options(make_cell("lstm", 3), last_only=True, scan="sequential") == {}
    assert sequence_options(make_cell("lru", 3), last_only=True, scan="sequential") == {
        "last_only": True,
        "scan": "sequential",
    }


def test_a_plug_in_without_the_method_runs_its_step_on_the_sequence_path():
    model = SequenceModel(make_cell(PLUGIN, 3), 2, path="sequence")
    x = jnp.ones((2, 4, 3))
    params = model.init(jax.random.PRNGKey(0), x)
    assert not model.uses_sequence and model.apply(params, x).shape == (2, 4, 2)


def test_a_stack_names_each_layer_as_a_single_cell_is_named():
    """One naming rule for a cell and each layer of a stack of it (flax's LSTM: (c, h), not tuple positions)."""
    z = jnp.zeros((1, 2))
    for spec in ("lstm", "flax_lstm", "cornn", "gru"):
        single = carry_leaf_names(
            make_cell(spec, 2), make_cell(spec, 2).initialize_carry(jax.random.PRNGKey(0), (1, 2))
        )
        stack = make_cell(spec, 2, num_layers=2)
        names = carry_leaf_names(stack, stack.initialize_carry(jax.random.PRNGKey(0), (1, 2)))
        assert names == [f"{i}.{n}" for i in range(2) for n in single], spec
    assert carry_leaf_names(make_cell("flax_lstm", 2), (z, z)) == ["c", "h"]
    np.testing.assert_equal(make_cell("flax_lstm", 2, num_layers=2).carry_names, ("0.c", "0.h", "1.c", "1.h"))
