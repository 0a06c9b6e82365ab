"""A sequence model: a cell unrolled over time (step by step or whole-sequence), then a linear readout."""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells import contract

Params = Any
Carry = Any


@dataclasses.dataclass(frozen=True)
class SequenceModel:
    """`outputs = readout(y_t)` with `(h_t, y_t) = cell(h_{t-1}, x_t)` for t = 1..T.

    Shapes: inputs (B, T, I) -> outputs (B, T, O) when `readout == "all"`, (B, O) when
    `readout == "last"`. Parameters are `{"cell": ..., "readout": ...}`.

    Two paths run the cell over time, with the same equations:

    - `step`: `jax.lax.scan` over the cell's `__call__` (any flax cell);
    - `sequence`: the cell's optional whole-sequence method (`cells.contract.SequenceCell`)
      `cell.sequence(carry, xs, perturbations=None, unroll=1) -> (carry, ys)`, xs (T, B, I) and
      ys (T, B, ...) time-major; the built-in rnn, lstm and gru provide a fused kernel with a
      hand-written backward pass (`cells.fused`).

    `path` picks one: "sequence" uses the cell's method when it has one (else the step scan),
    "step" always scans the step. `scan_unroll` is passed to the scans (see `experiments.policy`).

    `remat > 0` recomputes activations in chunks of `remat` steps during the backward pass
    (jax.checkpoint around each chunk, on either path): memory O(T / remat + remat) instead of
    O(T) for one extra forward pass.
    """

    cell: nn.Module
    num_outputs: int
    readout: str = "all"
    remat: int = 0
    path: str = "sequence"
    scan_unroll: int = 1
    time_chunk: int = 0
    linear_scan: str = "associative"

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

    @property
    def uses_sequence(self) -> bool:
        """True when the whole-sequence method runs (path "sequence" and the cell has one)."""
        return self.path == "sequence" and contract.has_sequence(self.cell)

    def unroll(
        self,
        params: Params,
        inputs: jax.Array,
        perturbations: Carry | None = None,
        carry: Carry | None = None,
        all_outputs: bool = True,
    ) -> tuple[Carry, jax.Array]:
        """Run the cell over time; return (final carry, outputs y (B, T, ...)).

        With `all_outputs=False` only the last output is returned, (B, ...), and no (T, B, ...)
        stack of outputs is kept across remat chunks (the step path never builds one).

        `perturbations`, a carry pytree with a leading time axis (T, B, ...), is added to
        the carry entering each step: `h_t = cell(h_{t-1} + eps_t, x_t)`. At zero it changes
        nothing, and its gradient is dL/dh_{t-1} for every t from one backward pass.
        """
        carry = self.initial_carry(inputs) if carry is None else carry
        xs = (jnp.swapaxes(inputs, 0, 1), perturbations)
        run = self._run_sequence if self.uses_sequence else self._run_steps
        run = functools.partial(run, params["cell"], last_only=not all_outputs)
        carry, ys = self._chunked(run, carry, xs, inputs.shape[1], last_only=not all_outputs)
        return carry, (jnp.swapaxes(ys, 0, 1) if all_outputs else ys)

    def _run_sequence(self, cell_params: Params, carry: Carry, xs: Any, last_only: bool) -> tuple[Carry, jax.Array]:
        x, eps = xs
        options = contract.sequence_options(self.cell, last_only=last_only, scan=self.linear_scan)
        carry, ys = self.cell.apply(
            {"params": cell_params}, carry, x, eps, self.scan_unroll, method="sequence", **options
        )
        return carry, (ys[-1] if last_only and not options.get("last_only") else ys)

    def _run_steps(self, cell_params: Params, carry: Carry, xs: Any, last_only: bool) -> tuple[Carry, jax.Array]:
        def step(carry: Carry, xs: tuple[jax.Array, Carry | None]) -> tuple[Carry, jax.Array]:
            x, eps = xs
            if eps is not None:
                carry = jax.tree.map(jnp.add, carry, eps)
            return self.cell.apply({"params": cell_params}, carry, x)

        if not last_only:
            return jax.lax.scan(step, carry, xs, unroll=self.scan_unroll)
        _, y_shape = jax.eval_shape(step, carry, jax.tree.map(lambda a: a[0], xs))

        def last_step(c: tuple[Carry, jax.Array], x: Any) -> tuple[tuple[Carry, jax.Array], None]:
            return step(c[0], x), None  # (carry, y) travel together

        (carry, y), _ = jax.lax.scan(
            last_step, (carry, jnp.zeros(y_shape.shape, y_shape.dtype)), xs, unroll=self.scan_unroll
        )
        return carry, y

    def _chunked(self, run, carry: Carry, xs: Any, length: int, last_only: bool) -> tuple[Carry, jax.Array]:
        """`run(carry, xs)` over all T steps, or chunk by chunk under jax.checkpoint when remat is on."""
        if self.uses_sequence and 0 < self.time_chunk < length:
            inner = functools.partial(self._over_chunks, run, k=self.time_chunk, last_only=last_only, checkpoint=False)

            def run_chunk(carry: Carry, xs: Any) -> tuple[Carry, jax.Array]:
                return inner(carry, xs, jax.tree.leaves(xs)[0].shape[0])
        else:
            run_chunk = run
        if self.remat <= 0 or self.remat >= length:
            return run_chunk(carry, xs)
        return self._over_chunks(run_chunk, carry, xs, length, self.remat, last_only, checkpoint=True)

    @staticmethod
    def _over_chunks(run, carry: Carry, xs: Any, length: int, k: int, last_only: bool, checkpoint: bool):
        if k >= length:
            return run(carry, xs)
        n_chunks = length // k
        head = jax.tree.map(lambda a: a[: n_chunks * k].reshape((n_chunks, k) + a.shape[1:]), xs)
        tail = jax.tree.map(lambda a: a[n_chunks * k :], xs)
        carry, ys = jax.lax.scan(jax.checkpoint(run) if checkpoint else run, carry, head)
        ys = ys[-1] if last_only else ys.reshape((n_chunks * k,) + ys.shape[2:])
        if length % k:
            carry, ys_tail = run(carry, tail)
            ys = ys_tail if last_only else jnp.concatenate([ys, ys_tail])
        return carry, ys

    def activation_bytes(self, batch_size: int, length: int, input_size: int) -> int:
        """Estimated bytes the backward pass keeps for one training batch (no compilation).

        From the residuals of the loss's vjp, found with `jax.eval_shape` (shapes only): at lengths 8
        and 16 without remat, their difference / 8 is what one step adds, whatever the path, the cell
        or the readout, and what does not grow with T (parameters) cancels out. Without remat: T such
        steps. With `remat = k`: the residuals of the remat model at the full length T (each chunk's
        carry and inputs, and the outputs, kept across chunks) less the parameters, plus k steps of
        one chunk's recomputed residuals, live while that chunk's backward runs.
        """

        def residual_bytes(model: "SequenceModel", n: int) -> int:
            x = jax.ShapeDtypeStruct((batch_size, n, input_size), jnp.float32)

            def residuals(inputs: jax.Array) -> Any:
                params = model.init(jax.random.PRNGKey(0), inputs)
                return jax.vjp(lambda p: model.apply(p, inputs), params)[1]

            return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(jax.eval_shape(residuals, x)))

        plain = dataclasses.replace(self, remat=0)
        short, long = residual_bytes(plain, 8), residual_bytes(plain, 16)
        per_step = max(0, long - short) // 8
        if 0 < self.remat < length:
            fixed = max(0, short - 8 * per_step)  # parameters and other length-independent residuals
            return max(0, residual_bytes(self, length) - fixed) + self.remat * per_step
        return length * per_step

    def apply(self, params: Params, inputs: jax.Array, perturbations: Carry | None = None) -> jax.Array:
        """Model outputs (logits or regression values) for a (B, T, I) batch."""
        _, ys = self.unroll(params, inputs, perturbations, all_outputs=self.readout == "all")
        return nn.Dense(self.num_outputs).apply({"params": params["readout"]}, ys)
