"""The cell conformance checks: does a recurrent cell keep the contract the rest of rnnlab relies on?

`check_cell(spec)` runs every check on a cell (a registered name, `package.module:Class`, a file, or a
built flax module) and returns one `CheckResult` each; it never raises for a faulty cell.

Checks (each one catches its own exceptions and reports them as a one-line failure):

- ``construct``: `make_cell(spec, hidden_size, options)` builds the cell.
- ``carry_init``: `initialize_carry(rng, (B, I))` is a pytree of arrays, each with leading dim B.
- ``carry_contract``: one step returns a carry with the same tree structure, shapes and dtypes,
  so `jax.lax.scan` can carry it.
- ``output``: y is a finite array of shape (B, ...).
- ``dtypes``: y is a real floating array and every carry leaf is floating (or complex): an integer
  output or carry cuts the gradient (it is exactly zero), so the cell would train nothing.
- ``jit``: the jitted step gives the same numbers as the eager one.
- ``gradients``: over an unrolled sequence, gradients w.r.t. the inputs and every parameter
  array are finite and not all zero (a parameter with zero gradient is usually unused).
- ``vmap``: `jax.vmap` over an extra leading axis equals one call on the stacked batch.
- ``determinism``: same rng gives identical params, carries and outputs; a different rng
  gives different params.
- ``scan``: `SequenceModel.unroll` (jax.lax.scan) matches a Python loop over the steps.
- ``sequence``: a cell with the optional whole-sequence method `sequence(carry, xs, perturbations,
  unroll)` gives the step scan's outputs, final carry and gradients (w.r.t. parameters, inputs,
  initial carry and carry perturbations) through `SequenceModel(path="sequence")`; a cell without
  one passes (the model scans its step).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from cells import make_cell
from experiments.checks import (
    ATOL,
    GRAD_ATOL,
    GRAD_RTOL,
    REFERENCE_FAN_IN,
    REFERENCE_LENGTH,
    RTOL,
    CheckError,
    CheckResult,
    check_sizes,
    compare,
    finite,
    key_path,
    one_line,
    require,
    shapes,
)
from experiments.model import SequenceModel
from plugins import SignalExit


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """(rtol, atol) of the comparisons between two float32 programs: `step` (one step: jit, vmap), `sequence`
    (T steps: scan, the sequence path's outputs and carry) and `gradients` (the sequence path's gradients)."""

    step: tuple[float, float]
    sequence: tuple[float, float]
    gradients: tuple[float, float]


def tolerances(hidden_size: int, input_size: int, seq_len: int) -> Tolerances:
    """The tolerances for a cell of width `hidden_size` on `input_size` inputs over `seq_len` steps.

    Two float32 programs that compute the same dot product of length n in different orders differ by at
    most 2 gamma_n sum_i |a_i b_i|, gamma_n = n u / (1 - n u), u = 2^-24: a bound linear in n, the fan-in
    of a step (n = hidden_size + input_size for the built-in cells). Over T steps each step adds its own
    rounding; a cell that does not amplify its carry keeps the sum growing like sqrt(T) (independent
    roundings). RTOL .. GRAD_ATOL hold at the default sizes (n = 11, T = 5); larger problems scale them
    by n / 11 (every comparison) and sqrt(T / 5) (the comparisons over T steps), never below.
    """
    width = max(1.0, (hidden_size + input_size) / REFERENCE_FAN_IN)
    length = width * max(1.0, math.sqrt(seq_len / REFERENCE_LENGTH))
    return Tolerances(
        step=(RTOL * width, ATOL * width),
        sequence=(RTOL * length, ATOL * length),
        gradients=(GRAD_RTOL * length, GRAD_ATOL * length),
    )


class _Harness:
    """Builds the cell, inputs, carry and params once; checks share them (and their compilations)."""

    def __init__(self, cell: nn.Module, input_size: int, batch: int, seq_len: int, hidden_size: int = 8):
        self.cell, self.B, self.I, self.T = cell, batch, input_size, seq_len
        self.tol = tolerances(hidden_size, input_size, seq_len)
        self.inputs = jax.random.normal(jax.random.PRNGKey(1), (batch, seq_len, input_size))
        self.x0, self.x1 = self.inputs[:, 0], self.inputs[:, 1 % seq_len]
        self.param_key = jax.random.PRNGKey(2)
        self._cache: dict[str, Any] = {}

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def carry0(self) -> Any:
        return self._cached("carry0", lambda: self.cell.initialize_carry(jax.random.PRNGKey(3), (self.B, self.I)))

    def init(self, key: jax.Array) -> Any:
        return self.cell.init(key, self.carry0(), self.x0).get("params", {})

    def params(self) -> Any:
        return self._cached("params", lambda: self.init(self.param_key))

    def step(self, carry: Any, x: jax.Array) -> tuple[Any, Any]:
        return self.cell.apply({"params": self.params()}, carry, x)

    def step0(self) -> tuple[Any, Any]:
        """(carry, y) after one eager step from the initial carry."""
        return self._cached("step0", lambda: self.step(self.carry0(), self.x0))

    def model(self) -> SequenceModel:
        return SequenceModel(self.cell, num_outputs=2)


def check_carry_init(h: _Harness) -> str:
    carry = h.carry0()
    leaves = jax.tree_util.tree_leaves_with_path(carry)
    require(len(leaves) > 0, "initialize_carry returned an empty pytree")
    for path, leaf in leaves:
        require(hasattr(leaf, "shape") and hasattr(leaf, "dtype"), f"carry{key_path(path)} is not an array")
        require(
            leaf.shape[:1] == (h.B,), f"carry{key_path(path)} has shape {leaf.shape}; expected leading batch dim {h.B}"
        )
    finite("carry", carry)
    return f"{len(leaves)} carry array(s): " + ", ".join(str(tuple(leaf.shape)) for _, leaf in leaves)


def check_carry_contract(h: _Harness) -> str:
    carry, _ = h.step0()
    want, got = h.carry0(), carry
    want_def, got_def = jax.tree.structure(want), jax.tree.structure(got)
    require(got_def == want_def, f"returned carry has structure {got_def}; initialize_carry gives {want_def}")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        (sa, da), (sb, db) = shapes(a), shapes(b)
        require(sa == sb, f"returned carry{key_path(path)} has shape {sa}; initial carry has {sb}")
        require(da == db, f"returned carry{key_path(path)} has dtype {da}; initial carry has {db}")
    return "returned carry matches initialize_carry"


def check_output(h: _Harness) -> str:
    _, y = h.step0()
    require(isinstance(y, jax.Array), f"y is a {type(y).__name__}; SequenceModel needs a single array")
    require(y.ndim >= 1 and y.shape[0] == h.B, f"y has shape {y.shape}; expected ({h.B}, ...)")
    finite("y", y)
    return f"y {tuple(y.shape)} {y.dtype}"


def check_dtypes(h: _Harness) -> str:
    carry, y = h.step0()
    require(
        jnp.issubdtype(y.dtype, jnp.floating),
        f"y is {y.dtype}; it must be floating (an integer output has zero gradient: the cell would train nothing)",
    )
    for path, leaf in jax.tree_util.tree_leaves_with_path(carry):
        require(
            jnp.issubdtype(leaf.dtype, jnp.inexact),
            f"carry{key_path(path)} is {leaf.dtype}; it must be floating "
            "(gradients cannot flow through an integer carry)",
        )
    return f"y {y.dtype}; carry " + ", ".join(sorted({str(leaf.dtype) for leaf in jax.tree.leaves(carry)}))


def check_jit(h: _Harness) -> str:
    carry1, _ = h.step0()
    apply = jax.jit(lambda p, c, x: h.cell.apply({"params": p}, c, x))
    rtol, atol = h.tol.step
    compare("jit", apply(h.params(), carry1, h.x1), h.step(carry1, h.x1), rtol=rtol, atol=atol)
    return f"jit == eager (rtol {rtol:.3g}, atol {atol:.3g})"


def check_gradients(h: _Harness) -> str:
    model = h.model()
    carry_T, ys = jax.eval_shape(model.unroll, {"cell": h.params()}, h.inputs)
    keys = iter(jax.random.split(jax.random.PRNGKey(4), 1 + len(jax.tree.leaves(carry_T))))
    cot_y = jax.random.normal(next(keys), ys.shape)
    cot_c = [jax.random.normal(next(keys), c.shape) for c in jax.tree.leaves(carry_T)]

    @jax.jit
    def loss_and_grads(params: Any, inputs: jax.Array) -> Any:
        def loss(params: Any, inputs: jax.Array) -> jax.Array:
            carry, ys = model.unroll({"cell": params}, inputs)
            total = jnp.sum(ys * cot_y)
            for c, w in zip(jax.tree.leaves(carry), cot_c, strict=True):
                if jnp.issubdtype(c.dtype, jnp.inexact):
                    total = total + jnp.sum(c * w)
            return total

        return jax.value_and_grad(loss, argnums=(0, 1))(params, inputs)

    value, (g_params, g_inputs) = loss_and_grads(h.params(), h.inputs)
    require(bool(np.isfinite(value)), f"loss is {float(value)}")
    finite("d loss / d params", g_params)
    finite("d loss / d inputs", g_inputs)
    require(bool(np.any(np.asarray(g_inputs) != 0)), "gradient w.r.t. the inputs is all zero")
    leaves = jax.tree_util.tree_leaves_with_path(g_params)
    require(len(leaves) > 0, "the cell has no parameters")
    zero = [key_path(p) for p, g in leaves if not np.any(np.asarray(g) != 0)]
    require(not zero, f"gradient is all zero for params {', '.join(zero)}")
    return f"finite, non-zero for inputs and {len(leaves)} param arrays"


def check_vmap(h: _Harness) -> str:
    carry1, _ = h.step0()
    carries = jax.tree.map(lambda a, b: jnp.stack([a, b]), h.carry0(), carry1)  # (2, B, ...)
    xs = jnp.stack([h.x0, h.x1])  # (2, B, I)
    got = jax.vmap(h.step)(carries, xs)
    flat = jax.tree.map(lambda a: a.reshape((2 * h.B,) + a.shape[2:]), (carries, xs))
    want = jax.tree.map(lambda a: a.reshape((2, h.B) + a.shape[1:]), h.step(*flat))
    rtol, atol = h.tol.step
    compare("vmap", got, want, rtol=rtol, atol=atol)
    return "vmap over a leading axis == stacked batch"


def check_determinism(h: _Harness) -> str:
    rng = jax.random.PRNGKey(3)
    compare("initialize_carry (same rng)", h.cell.initialize_carry(rng, (h.B, h.I)), h.carry0(), exact=True)
    compare("params (same rng)", h.init(h.param_key), h.params(), exact=True)
    compare("step (same params)", h.step(h.carry0(), h.x0), h.step0(), exact=True)
    other = h.init(jax.random.PRNGKey(5))
    same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), other, h.params()))
    require(not all(same), "a different rng gave identical params")
    return "same rng -> identical; different rng -> different params"


def check_scan(h: _Harness) -> str:
    model = h.model()
    unroll = jax.jit(lambda p, x, c: model.unroll(p, x, carry=c))
    carry_T, ys = unroll({"cell": h.params()}, h.inputs, h.carry0())
    require(ys.shape[:2] == (h.B, h.T), f"unroll outputs have shape {ys.shape}; expected ({h.B}, {h.T}, ...)")
    finite("unroll outputs", ys)
    carry, loop_ys = h.carry0(), []
    for t in range(h.T):
        carry, y = h.step(carry, h.inputs[:, t])
        loop_ys.append(y)
    rtol, atol = h.tol.sequence
    compare("scan outputs", ys, jnp.stack(loop_ys, axis=1), rtol=rtol, atol=atol)
    compare("scan final carry", carry_T, carry, rtol=rtol, atol=atol)
    return f"unroll over T={h.T} == Python loop; outputs {tuple(ys.shape)}"


def check_sequence(h: _Harness) -> str:
    seq = SequenceModel(h.cell, num_outputs=2, path="sequence")
    if not seq.uses_sequence:
        h.step0()  # the sequence path is the step scan, which must run
        return "no sequence method: SequenceModel scans the step"
    step = dataclasses.replace(seq, path="step")
    keys = iter(jax.random.split(jax.random.PRNGKey(6), 64))

    def noise(shape: tuple[int, ...], dtype: Any, scale: float = 1.0) -> jax.Array:
        return (scale * jax.random.normal(next(keys), shape)).astype(dtype)

    carry = jax.tree.map(lambda c: noise(c.shape, c.dtype, 0.5), h.carry0())
    eps = jax.tree.map(lambda c: noise((h.T,) + c.shape, c.dtype, 0.1), h.carry0())
    params = h.params()  # outside eval_shape: the harness caches it
    carry_T, ys = jax.eval_shape(lambda: step.unroll({"cell": params}, h.inputs, eps, carry))
    cot = (jax.tree.map(lambda c: noise(c.shape, c.dtype), carry_T), noise(ys.shape, ys.dtype))

    def outputs_and_grads(model: SequenceModel) -> Any:
        def loss(params: Any, inputs: jax.Array, carry: Any, eps: Any) -> tuple[jax.Array, Any]:
            out = model.unroll({"cell": params}, inputs, eps, carry)
            total = sum(
                jnp.sum(jnp.real(o * w)) for o, w in zip(jax.tree.leaves(out), jax.tree.leaves(cot), strict=True)
            )
            return total, out

        run = jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)
        (_, out), grads = jax.jit(run)(params, h.inputs, carry, eps)
        return out, grads

    (seq_carry, seq_ys), seq_grads = outputs_and_grads(seq)
    (step_carry, step_ys), step_grads = outputs_and_grads(step)
    rtol, atol = h.tol.sequence
    compare("sequence outputs", seq_ys, step_ys, rtol=rtol, atol=atol)
    compare("sequence final carry", seq_carry, step_carry, rtol=rtol, atol=atol)
    rtol, atol = h.tol.gradients
    for name, got, want in zip(
        ("params", "inputs", "initial carry", "perturbations"), seq_grads, step_grads, strict=True
    ):
        compare(f"sequence d loss / d {name}", got, want, rtol=rtol, atol=atol)
    return f"sequence path == step scan over T={h.T}: outputs, final carry, gradients"


CHECKS: tuple[tuple[str, Callable[[_Harness], str]], ...] = (
    ("carry_init", check_carry_init),
    ("carry_contract", check_carry_contract),
    ("output", check_output),
    ("dtypes", check_dtypes),
    ("jit", check_jit),
    ("gradients", check_gradients),
    ("vmap", check_vmap),
    ("determinism", check_determinism),
    ("scan", check_scan),
    ("sequence", check_sequence),
)


def check_cell(
    spec: str | nn.Module,
    hidden_size: int = 8,
    input_size: int = 3,
    batch: int = 2,
    seq_len: int = 5,
    options: str | dict[str, Any] = "",
) -> list[CheckResult]:
    """Run every conformance check on a cell; never raises for a faulty cell.

    `spec` is a registered name, a `package.module:Class` path (built by `make_cell` with
    `hidden_size` and `options`) or an already-built flax module (then those two are ignored).
    Sizes outside SIZE_BOUNDS raise ConfigError (they are the caller's mistake, not the cell's).
    """
    check_sizes(hidden_size=hidden_size, input_size=input_size, batch=batch, seq_len=seq_len)
    if isinstance(spec, nn.Module):
        cell = spec
    else:
        try:
            cell = make_cell(spec, hidden_size, options)
        except SignalExit:
            raise
        except (Exception, SystemExit) as e:  # a faulty cell is reported, not raised
            return [CheckResult("construct", False, one_line(e))]
    results = [CheckResult("construct", True, type(cell).__name__)]
    harness = _Harness(cell, input_size=input_size, batch=batch, seq_len=seq_len, hidden_size=hidden_size)
    for name, check in CHECKS:
        try:
            results.append(CheckResult(name, True, check(harness)))
        except SignalExit:
            raise
        except (Exception, SystemExit) as e:  # a cell that calls sys.exit() fails the check, it does not end the suite
            message = str(e) if isinstance(e, CheckError) else one_line(e)
            results.append(CheckResult(name, False, message.splitlines()[0] if message else ""))
    return results
