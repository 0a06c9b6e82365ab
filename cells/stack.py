r"""Depth: N cells stacked in time, as one cell whose carry is the tuple of the layers' carries."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells import contract


class StackedCell(nn.RNNCellBase):
    r"""``layers[0] -> layers[1] -> ...``: the output y of layer l at step t is layer l+1's input.

    For one step, with carry (c^1, ..., c^N) and input x_t::

        c^1_t, y^1_t = layer_1(c^1_{t-1}, x_t)
        c^l_t, y^l_t = layer_l(c^l_{t-1}, y^{l-1}_t)      l = 2..N;   y_t = y^N_t

    Parameters ``layers_0`` .. ``layers_{N-1}``; carry: a tuple of the layers' carries (each zeros or
    whatever its cell starts from). Any cell stacks, a user's too. The carry leaves are named
    ``"<layer>.<name>"`` (e.g. ``0.c``, ``0.h``, ``1.h``), so the gradient diagnostics report
    dL/dh_t per layer. ``sequence`` runs the layers one after another over the whole sequence,
    each by its own whole-sequence method when it has one (the fused kernel of rnn/lstm/gru),
    else by a scan of its step: the same numbers as the step, layer by layer.
    """

    layers: Sequence[nn.Module]

    @nn.compact
    def __call__(self, carry: tuple, x: jax.Array) -> tuple[tuple, jax.Array]:
        new = []
        for layer, c in zip(self.layers, carry, strict=True):
            c, x = layer(c, x)
            new.append(c)
        return tuple(new), x

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> tuple:
        carries, shape = [], input_shape
        for key, layer in zip(jax.random.split(rng, len(self.layers)), self.layers, strict=True):
            carries.append(layer.initialize_carry(key, shape))
            shape = input_shape[:-1] + (_width(layer),)
        return tuple(carries)

    @property
    def num_feature_axes(self) -> int:
        return 1

    @property
    def sequence_backends(self) -> tuple[str, ...] | None:
        """Where the stack runs whole sequences by default: wherever one of its layers prefers it."""
        preferred = [contract.sequence_backends(layer) for layer in self.layers]
        if all(p is None for p in preferred):
            return None
        return tuple(sorted({b for p in preferred for b in (p or ("gpu", "cuda", "rocm", "tpu"))}))

    @property
    def carry_names(self) -> tuple[str, ...]:
        """``"<layer>.<name>"`` for each layer's leaves, named by `cells.contract.carry_leaf_names`."""
        names = []
        for i, layer in enumerate(self.layers):
            carry = jax.eval_shape(lambda layer=layer: layer.initialize_carry(jax.random.PRNGKey(0), (1, 1)))
            names += [f"{i}.{name}" for name in contract.carry_leaf_names(layer, carry)]
        return tuple(names)

    @property
    def time_chunkable(self) -> bool:
        """Its whole sequence may run in chunks of time when every layer's may (`Cell.time_chunkable`)."""
        return all(contract.time_chunkable(layer) for layer in self.layers)

    def sequence(
        self,
        carry: tuple,
        xs: jax.Array,
        perturbations: Any = None,
        unroll: int = 1,
        last_only: bool = False,
        scan: str = "associative",
    ) -> tuple[tuple, Any]:
        """All T steps, layer after layer: xs (T, B, I) -> (final carries, ys (T, B, H_N)).

        `last_only`: ys is the last layer's last output (B, H_N) alone; `scan`: passed to the layers
        whose whole-sequence method takes it (the linear-recurrence cells, `cells.scan`).
        """
        params = self.variables["params"]
        finals = []
        for i, (layer, c) in enumerate(zip(self.layers, carry, strict=True)):
            eps = None if perturbations is None else perturbations[i]
            unbound = layer.clone(parent=None)
            variables = {"params": params[f"layers_{i}"]}
            last = last_only and i == len(self.layers) - 1
            if contract.has_sequence(unbound):
                options = contract.sequence_options(unbound, last_only=last, scan=scan)
                c, xs = unbound.apply(variables, c, xs, eps, unroll, method="sequence", **options)
                if last and not options.get("last_only"):
                    xs = xs[-1]
            else:
                c, xs = _scan_steps(unbound, variables, c, xs, eps, unroll)
                xs = xs[-1] if last else xs
            finals.append(c)
        return tuple(finals), xs


def _scan_steps(cell: nn.Module, variables: dict, carry: Any, xs: jax.Array, eps: Any, unroll: int):
    def step(c: Any, inp: tuple) -> tuple[Any, jax.Array]:
        x, e = inp
        c = c if e is None else jax.tree.map(jnp.add, c, e)
        return cell.apply(variables, c, x)

    return jax.lax.scan(step, carry, (xs, eps), unroll=unroll)


def _width(cell: nn.Module) -> int:
    for field in ("hidden_size", "features"):
        if hasattr(cell, field):
            return getattr(cell, field)
    raise ValueError(f"cannot stack {type(cell).__name__}: it has no hidden_size or features field")
