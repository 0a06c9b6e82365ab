"""A sequence model: a cell unrolled over time by `jax.lax.scan`, then a linear readout."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

Params = Any
Carry = Any


@dataclasses.dataclass(frozen=True)
class SequenceModel:
    """`outputs = readout(y_t)` with `(h_t, y_t) = cell(h_{t-1}, x_t)` for t = 1..T.

    Shapes: inputs (B, T, I) -> outputs (B, T, O) when `readout == "all"`, (B, O) when
    `readout == "last"`. Parameters are `{"cell": ..., "readout": ...}`.

    `remat > 0` recomputes activations in chunks of `remat` steps during the backward pass
    (jax.checkpoint around each chunk's scan): memory O(T / remat + remat) instead of O(T)
    for one extra forward pass.
    """

    cell: nn.Module
    num_outputs: int
    readout: str = "all"
    remat: int = 0

    def init(self, rng: jax.Array, inputs: jax.Array) -> Params:
        cell_key, readout_key = jax.random.split(rng)
        carry = self.initial_carry(inputs)
        cell_params = self.cell.init(cell_key, carry, inputs[:, 0])["params"]
        _, y = jax.eval_shape(lambda: self.cell.apply({"params": cell_params}, carry, inputs[:, 0]))
        readout_params = nn.Dense(self.num_outputs).init(readout_key, jnp.zeros(y.shape, y.dtype))["params"]
        return {"cell": cell_params, "readout": readout_params}

    def initial_carry(self, inputs: jax.Array) -> Carry:
        """The cell's initial carry for a (B, T, I) batch (deterministic: rng fixed at 0)."""
        return self.cell.initialize_carry(jax.random.PRNGKey(0), inputs[:, 0].shape)

    def unroll(
        self,
        params: Params,
        inputs: jax.Array,
        perturbations: Carry | None = None,
        carry: Carry | None = None,
        all_outputs: bool = True,
    ) -> tuple[Carry, jax.Array]:
        """Run the cell over time; return (final carry, outputs y (B, T, ...)).

        With `all_outputs=False` only the last output is returned, (B, ...), and the (T, B, ...)
        stack of outputs is never built.

        `perturbations`, a carry pytree with a leading time axis (T, B, ...), is added to
        the carry entering each step: `h_t = cell(h_{t-1} + eps_t, x_t)`. At zero it changes
        nothing, and its gradient is dL/dh_{t-1} for every t from one backward pass.
        """
        cell_params = params["cell"]
        carry = self.initial_carry(inputs) if carry is None else carry

        def step(carry: Carry, xs: tuple[jax.Array, Carry | None]) -> tuple[Carry, jax.Array]:
            x, eps = xs
            if eps is not None:
                carry = jax.tree.map(jnp.add, carry, eps)
            return self.cell.apply({"params": cell_params}, carry, x)

        xs = (jnp.swapaxes(inputs, 0, 1), perturbations)
        if all_outputs:
            carry, ys = self._scan(step, carry, xs, inputs.shape[1])
            return carry, jnp.swapaxes(ys, 0, 1)
        _, y_shape = jax.eval_shape(step, carry, jax.tree.map(lambda a: a[0], xs))
        last_step = lambda c, x: (step(c[0], x), None)  # noqa: E731  (carry, y) travel together
        (carry, y), _ = self._scan(last_step, (carry, jnp.zeros(y_shape.shape, y_shape.dtype)), xs, inputs.shape[1])
        return carry, y

    def _scan(self, step, carry: Carry, xs: Any, length: int) -> tuple[Carry, jax.Array | None]:
        if self.remat <= 0 or self.remat >= length:
            return jax.lax.scan(step, carry, xs)
        k, n_chunks = self.remat, length // self.remat
        head = jax.tree.map(lambda a: a[: n_chunks * k].reshape((n_chunks, k) + a.shape[1:]), xs)
        tail = jax.tree.map(lambda a: a[n_chunks * k :], xs)
        chunk = jax.checkpoint(lambda c, x: jax.lax.scan(step, c, x))
        carry, ys = jax.lax.scan(chunk, carry, head)
        if ys is not None:
            ys = ys.reshape((n_chunks * k,) + ys.shape[2:])
        if length % k:
            carry, ys_tail = jax.lax.scan(step, carry, tail)
            ys = None if ys is None else jnp.concatenate([ys, ys_tail])
        return carry, ys

    def activation_bytes(self, batch_size: int, length: int, input_size: int) -> int:
        """Estimated bytes the backward pass keeps for one sequence batch (no compilation).

        Per step, the cell's vjp residuals with a batch axis (found with `jax.eval_shape`),
        times T; with `remat = k`: T/k stored carries plus k steps of residuals.
        """
        x = jax.ShapeDtypeStruct((batch_size, 2, input_size), jnp.float32)

        def residuals(inputs: jax.Array) -> tuple[Any, Carry]:
            params = self.init(jax.random.PRNGKey(0), inputs)
            carry = self.initial_carry(inputs)
            step = lambda c: self.cell.apply({"params": params["cell"]}, c, inputs[:, 0])  # noqa: E731
            return jax.vjp(step, carry)[1], carry

        vjp_fn, carry = jax.eval_shape(residuals, x)

        def nbytes(tree: Any) -> int:  # arrays with a batch axis only: parameters are not per step
            leaves = [leaf for leaf in jax.tree.leaves(tree) if leaf.shape[:1] == (batch_size,)]
            return sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)

        per_step, carry_bytes = nbytes(vjp_fn), nbytes(carry)
        if 0 < self.remat < length:
            return length // self.remat * carry_bytes + self.remat * per_step
        return length * per_step

    def apply(self, params: Params, inputs: jax.Array, perturbations: Carry | None = None) -> jax.Array:
        """Model outputs (logits or regression values) for a (B, T, I) batch."""
        _, ys = self.unroll(params, inputs, perturbations, all_outputs=self.readout == "all")
        return nn.Dense(self.num_outputs).apply({"params": params["readout"]}, ys)
