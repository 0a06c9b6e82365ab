"""--lr_multipliers: a parameter group gets its own learning rate (exprnn's orthogonal parameter at lr/10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.config import Config, ConfigError, lr_multipliers
from experiments.experiment import Experiment
from experiments.validation import validate

BASE = Config(cell="exprnn", seq_len=6, hidden_size=4, batch_size=4, optimizer="sgd", momentum=0.0, clip_norm=0.0)


def _update(config: Config):
    exp = Experiment(config)
    state = exp.init_states(jnp.arange(1))
    new = jax.vmap(exp.train_step)(state)
    return jax.tree.map(lambda a, b: np.asarray(b - a), state.params, new.params)


def test_a_group_moves_at_its_own_rate_and_the_rest_at_the_default():
    plain = _update(BASE)
    scaled = _update(BASE.replace(lr_multipliers="recurrent_skew=0.1"))
    expected = 0.1 * plain["cell"]["recurrent_skew"]  # updates are differences of parameters: float32 rounding
    np.testing.assert_allclose(scaled["cell"]["recurrent_skew"], expected, atol=1e-3 * np.abs(expected).max())
    assert np.abs(plain["cell"]["recurrent_skew"]).max() > 0
    for name in ("input_kernel", "bias"):
        np.testing.assert_array_equal(scaled["cell"][name], plain["cell"][name])
    np.testing.assert_array_equal(scaled["readout"]["kernel"], plain["readout"]["kernel"])


def test_groups_apply_in_every_layer_of_a_stack():
    plain = _update(BASE.replace(cell="rnn", num_layers=2))
    scaled = _update(BASE.replace(cell="rnn", num_layers=2, lr_multipliers="recurrent_kernel=3"))
    for layer in ("layers_0", "layers_1"):
        expected = 3 * plain["cell"][layer]["recurrent_kernel"]
        np.testing.assert_allclose(
            scaled["cell"][layer]["recurrent_kernel"], expected, atol=1e-3 * np.abs(expected).max()
        )
        np.testing.assert_array_equal(scaled["cell"][layer]["bias"], plain["cell"][layer]["bias"])


@pytest.mark.parametrize(
    "value,message",
    [
        ("recurrent_skw=0.1", "--lr_multipliers: exprnn has no parameter recurrent_skw; its parameters: bias, "),
        ("recurrent_skew=0", "--lr_multipliers='recurrent_skew=0': 'recurrent_skew=0' is not name=factor"),
        ("recurrent_skew=nan", "--lr_multipliers="),
        ("recurrent_skew", "--lr_multipliers="),
        ("bias=1,bias=2", "--lr_multipliers="),
    ],
)
def test_bad_groups_are_one_line_errors(value, message):
    with pytest.raises(ConfigError) as e:
        validate(BASE.replace(lr_multipliers=value))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_parse():
    assert lr_multipliers("") == {}
    assert lr_multipliers("recurrent_skew=0.1, bias=2") == {"recurrent_skew": 0.1, "bias": 2.0}
