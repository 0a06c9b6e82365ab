"""Conformance suite: does a recurrent cell keep the contract the rest of rnnlab relies on?

Run it on your own cell (any `flax.linen` module with `__call__(carry, x) -> (carry, y)` and
`initialize_carry(rng, input_shape)`, taking its width as `hidden_size` or `features`)::

    python -m experiments.conformance my_package.my_module:MyCell --hidden_size=8 --cell_options=alpha=0.5

It prints one PASS/FAIL line per check and exits 1 if any check fails, 2 on a usage error (a bad
flag or size: one line, before any check runs).
Registered names work too (`python -m experiments.conformance lstm`), and so does a file
(`python -m experiments.conformance path/to/ugrnn.py:UGRNN`, no PYTHONPATH needed). From Python,
`check_cell(spec)` returns a list of `CheckResult`; `tests/test_conformance.py` runs it on every registered cell.

A task (`tasks.base.Task`) gets its own suite, `check_task(spec)`::

    python -m experiments.conformance --task=path/to/my_task.py:MyTask --task_options=num_symbols=3 --seq_len=8

Task checks: ``construct`` (`make_task(spec, seq_len, options)`); ``declarations`` (input_size,
num_outputs, readout "all" or "last", metric_name, headline "loss" or "ratio", a solved rule with
one threshold); ``sample`` (inputs (B, length, input_size) floating, targets with leading dim B,
both finite); ``determinism`` (`sample` is a pure function of its key: same key, identical batch;
other key, a different one; jitted equals eager); ``held_out`` (each split is a fixed set of at
most the size asked, the test and validation splits differ); ``baseline`` (finite and > 0);
``loss`` (`per_example_loss` has shape (B,), `loss` and `metrics` are finite on zero outputs, and
differentiable: a finite gradient w.r.t. the outputs); ``metrics`` (the headline, `table_metrics`
and the solved metric are keys of `metrics`, each a scalar).

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
from experiments.config import ConfigError
from experiments.model import SequenceModel
from plugins import SignalExit
from tasks import Task, make_task

RTOL, ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5  # gradients of two float32 programs: summation orders differ over T steps
# the problem RTOL .. GRAD_ATOL hold for: the default sizes, hidden_size + input_size = 8 + 3, seq_len 5
REFERENCE_FAN_IN, REFERENCE_LENGTH = 11, 5
# (low, high) of the sizes the checks run at: small inputs are the point, and a huge width would only hang
SIZE_BOUNDS = {"hidden_size": (1, 4096), "input_size": (1, 4096), "batch": (1, 1024), "seq_len": (2, 1000)}
MAX_ELEMENTS = 2**24  # batch x seq_len x (hidden_size + input_size): the gradient check keeps every step


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of one conformance check."""

    name: str
    passed: bool
    message: str = ""

    def __str__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return f"{status} {self.name}" + (f": {self.message}" if self.message else "")


class CheckError(Exception):
    """Raised inside a check to fail it with a message."""


def _one_line(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"the cell called sys.exit({e.code!r})"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def _path(path: tuple) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def _compare(name: str, got: Any, want: Any, exact: bool = False, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Fail unless two pytrees have the same structure and (near-)equal leaves."""
    got_def, want_def = jax.tree.structure(got), jax.tree.structure(want)
    _require(got_def == want_def, f"{name}: tree structure {got_def} != {want_def}")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        _require(a.shape == b.shape, f"{name}{_path(path)}: shape {a.shape} != {b.shape}")
        same = np.array_equal(a, b) if exact else np.allclose(a, b, rtol=rtol, atol=atol)
        if not same:
            diff = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) if a.size else 0.0
            raise CheckError(f"{name}{_path(path)} differs (max abs diff {diff:.3g})")


def _finite(name: str, tree: Any) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.inexact) and not np.all(np.isfinite(leaf)):
            raise CheckError(f"{name}{_path(path)} has non-finite values")


def _shapes(tree: Any) -> Any:
    return jax.tree.map(lambda a: (tuple(np.shape(a)), str(jnp.result_type(a))), tree)


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
    _require(len(leaves) > 0, "initialize_carry returned an empty pytree")
    for path, leaf in leaves:
        _require(hasattr(leaf, "shape") and hasattr(leaf, "dtype"), f"carry{_path(path)} is not an array")
        _require(
            leaf.shape[:1] == (h.B,), f"carry{_path(path)} has shape {leaf.shape}; expected leading batch dim {h.B}"
        )
    _finite("carry", carry)
    return f"{len(leaves)} carry array(s): " + ", ".join(str(tuple(leaf.shape)) for _, leaf in leaves)


def check_carry_contract(h: _Harness) -> str:
    carry, _ = h.step0()
    want, got = h.carry0(), carry
    want_def, got_def = jax.tree.structure(want), jax.tree.structure(got)
    _require(got_def == want_def, f"returned carry has structure {got_def}; initialize_carry gives {want_def}")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        (sa, da), (sb, db) = _shapes(a), _shapes(b)
        _require(sa == sb, f"returned carry{_path(path)} has shape {sa}; initial carry has {sb}")
        _require(da == db, f"returned carry{_path(path)} has dtype {da}; initial carry has {db}")
    return "returned carry matches initialize_carry"


def check_output(h: _Harness) -> str:
    _, y = h.step0()
    _require(isinstance(y, jax.Array), f"y is a {type(y).__name__}; SequenceModel needs a single array")
    _require(y.ndim >= 1 and y.shape[0] == h.B, f"y has shape {y.shape}; expected ({h.B}, ...)")
    _finite("y", y)
    return f"y {tuple(y.shape)} {y.dtype}"


def check_dtypes(h: _Harness) -> str:
    carry, y = h.step0()
    _require(
        jnp.issubdtype(y.dtype, jnp.floating),
        f"y is {y.dtype}; it must be floating (an integer output has zero gradient: the cell would train nothing)",
    )
    for path, leaf in jax.tree_util.tree_leaves_with_path(carry):
        _require(
            jnp.issubdtype(leaf.dtype, jnp.inexact),
            f"carry{_path(path)} is {leaf.dtype}; it must be floating (gradients cannot flow through an integer carry)",
        )
    return f"y {y.dtype}; carry " + ", ".join(sorted({str(leaf.dtype) for leaf in jax.tree.leaves(carry)}))


def check_jit(h: _Harness) -> str:
    carry1, _ = h.step0()
    apply = jax.jit(lambda p, c, x: h.cell.apply({"params": p}, c, x))
    rtol, atol = h.tol.step
    _compare("jit", apply(h.params(), carry1, h.x1), h.step(carry1, h.x1), rtol=rtol, atol=atol)
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
    _require(bool(np.isfinite(value)), f"loss is {float(value)}")
    _finite("d loss / d params", g_params)
    _finite("d loss / d inputs", g_inputs)
    _require(bool(np.any(np.asarray(g_inputs) != 0)), "gradient w.r.t. the inputs is all zero")
    leaves = jax.tree_util.tree_leaves_with_path(g_params)
    _require(len(leaves) > 0, "the cell has no parameters")
    zero = [_path(p) for p, g in leaves if not np.any(np.asarray(g) != 0)]
    _require(not zero, f"gradient is all zero for params {', '.join(zero)}")
    return f"finite, non-zero for inputs and {len(leaves)} param arrays"


def check_vmap(h: _Harness) -> str:
    carry1, _ = h.step0()
    carries = jax.tree.map(lambda a, b: jnp.stack([a, b]), h.carry0(), carry1)  # (2, B, ...)
    xs = jnp.stack([h.x0, h.x1])  # (2, B, I)
    got = jax.vmap(h.step)(carries, xs)
    flat = jax.tree.map(lambda a: a.reshape((2 * h.B,) + a.shape[2:]), (carries, xs))
    want = jax.tree.map(lambda a: a.reshape((2, h.B) + a.shape[1:]), h.step(*flat))
    rtol, atol = h.tol.step
    _compare("vmap", got, want, rtol=rtol, atol=atol)
    return "vmap over a leading axis == stacked batch"


def check_determinism(h: _Harness) -> str:
    rng = jax.random.PRNGKey(3)
    _compare("initialize_carry (same rng)", h.cell.initialize_carry(rng, (h.B, h.I)), h.carry0(), exact=True)
    _compare("params (same rng)", h.init(h.param_key), h.params(), exact=True)
    _compare("step (same params)", h.step(h.carry0(), h.x0), h.step0(), exact=True)
    other = h.init(jax.random.PRNGKey(5))
    same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), other, h.params()))
    _require(not all(same), "a different rng gave identical params")
    return "same rng -> identical; different rng -> different params"


def check_scan(h: _Harness) -> str:
    model = h.model()
    unroll = jax.jit(lambda p, x, c: model.unroll(p, x, carry=c))
    carry_T, ys = unroll({"cell": h.params()}, h.inputs, h.carry0())
    _require(ys.shape[:2] == (h.B, h.T), f"unroll outputs have shape {ys.shape}; expected ({h.B}, {h.T}, ...)")
    _finite("unroll outputs", ys)
    carry, loop_ys = h.carry0(), []
    for t in range(h.T):
        carry, y = h.step(carry, h.inputs[:, t])
        loop_ys.append(y)
    rtol, atol = h.tol.sequence
    _compare("scan outputs", ys, jnp.stack(loop_ys, axis=1), rtol=rtol, atol=atol)
    _compare("scan final carry", carry_T, carry, rtol=rtol, atol=atol)
    return f"unroll over T={h.T} == Python loop; outputs {tuple(ys.shape)}"


def check_sequence(h: _Harness) -> str:
    seq = SequenceModel(h.cell, num_outputs=2, path="sequence")
    if not seq.uses_sequence:
        h.step0()  # the sequence path is the step scan, which must run
        return "no sequence method: SequenceModel scans the step"
    step = dataclasses.replace(seq, path="step")
    keys = iter(jax.random.split(jax.random.PRNGKey(6), 64))
    noise = lambda shape, dtype, scale=1.0: (scale * jax.random.normal(next(keys), shape)).astype(dtype)  # noqa: E731
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
    _compare("sequence outputs", seq_ys, step_ys, rtol=rtol, atol=atol)
    _compare("sequence final carry", seq_carry, step_carry, rtol=rtol, atol=atol)
    rtol, atol = h.tol.gradients
    for name, got, want in zip(
        ("params", "inputs", "initial carry", "perturbations"), seq_grads, step_grads, strict=True
    ):
        _compare(f"sequence d loss / d {name}", got, want, rtol=rtol, atol=atol)
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
            return [CheckResult("construct", False, _one_line(e))]
    results = [CheckResult("construct", True, type(cell).__name__)]
    harness = _Harness(cell, input_size=input_size, batch=batch, seq_len=seq_len, hidden_size=hidden_size)
    for name, check in CHECKS:
        try:
            results.append(CheckResult(name, True, check(harness)))
        except SignalExit:
            raise
        except (Exception, SystemExit) as e:  # a cell that calls sys.exit() fails the check, it does not end the suite
            message = str(e) if isinstance(e, CheckError) else _one_line(e)
            results.append(CheckResult(name, False, message.splitlines()[0] if message else ""))
    return results


def check_sizes(**sizes: int) -> None:
    """ConfigError naming the flag unless every size is an integer within SIZE_BOUNDS (and, given all four,
    their product within MAX_ELEMENTS)."""
    for name, value in sizes.items():
        low, high = SIZE_BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"--{name}={value!r}: must be an integer in [{low}, {high}]")
    if {"batch", "seq_len", "hidden_size", "input_size"} <= sizes.keys():
        n = sizes["batch"] * sizes["seq_len"] * (sizes["hidden_size"] + sizes["input_size"])
        if n > MAX_ELEMENTS:
            raise ConfigError(
                f"--batch={sizes['batch']} x --seq_len={sizes['seq_len']} x (--hidden_size={sizes['hidden_size']} + "
                f"--input_size={sizes['input_size']}) = {n}: must be at most {MAX_ELEMENTS} (the checks keep every "
                "step of the batch in memory); lower one of them"
            )


# ---------------------------------------------------------------- tasks


def check_task(
    spec: str | Task, seq_len: int = 8, batch: int = 4, options: str | dict[str, Any] = ""
) -> list[CheckResult]:
    """Run every task conformance check; never raises for a faulty task.

    `spec` is a registered name, `package.module:Class` or `path/to/file.py:Class` (built by `make_task`
    with `seq_len` and `options`), or a built Task. Sizes outside SIZE_BOUNDS raise ConfigError.
    """
    check_sizes(seq_len=seq_len, batch=batch)
    if isinstance(spec, Task):
        task = spec
    else:
        try:
            task = make_task(spec, seq_len, options)
        except Exception as e:  # a faulty task is reported, not raised
            return [CheckResult("construct", False, _one_line(e))]
    results = [CheckResult("construct", True, repr(task))]
    for name, check in TASK_CHECKS:
        try:
            results.append(CheckResult(name, True, check(task, batch)))
        except Exception as e:
            message = str(e) if isinstance(e, CheckError) else _one_line(e)
            results.append(CheckResult(name, False, message.splitlines()[0] if message else ""))
    return results


def _outputs(task: Task, batch: int) -> jax.Array:
    """Zero readouts of the shape the model gives the task: (B, length, num_outputs) or (B, num_outputs)."""
    shape = (batch, task.length, task.num_outputs) if task.readout == "all" else (batch, task.num_outputs)
    return jnp.zeros(shape, jnp.float32)


def check_task_declarations(task: Task, batch: int) -> str:
    for name in ("input_size", "num_outputs"):
        value = getattr(task, name, None)
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"{name} is {value!r}; "
                 "it must be an integer >= 1")  # fmt: skip
    _require(getattr(task, "readout", None) in ("all", "last"), f"readout is {getattr(task, 'readout', None)!r}; "
             "it must be 'all' or 'last'")  # fmt: skip
    _require(isinstance(getattr(task, "metric_name", None), str), "metric_name is not declared (e.g. 'CE', 'MSE')")
    _require(task.headline in ("loss", "ratio"), f"headline is {task.headline!r}; it must be 'loss' or 'ratio'")
    below, above = task.solved_below, task.solved_above
    _require((below is None) != (above is None), "declare one of solved_below and solved_above (the solved rule)")
    _require(isinstance(task.length, int) and task.length >= task.seq_len, f"length is {task.length!r}; "
             f"it must be an integer >= seq_len {task.seq_len}")  # fmt: skip
    return f"input {task.input_size}, {task.num_outputs} outputs read at {task.readout}; solved: {task.solved_rule}"


def check_task_sample(task: Task, batch: int) -> str:
    inputs, targets = task.sample(jax.random.PRNGKey(0), batch)
    want = (batch, task.length, task.input_size)
    _require(
        tuple(inputs.shape) == want, f"inputs have shape {tuple(inputs.shape)}; expected {want} (B, length, input_size)"
    )
    _require(jnp.issubdtype(inputs.dtype, jnp.floating), f"inputs are {inputs.dtype}; they must be floating")
    for path, leaf in jax.tree_util.tree_leaves_with_path(targets):
        _require(
            leaf.shape[:1] == (batch,), f"targets{_path(path)} have shape {leaf.shape}; expected leading dim {batch}"
        )
    _finite("inputs", inputs)
    _finite("targets", targets)
    shapes = ", ".join(f"{tuple(leaf.shape)} {leaf.dtype}" for leaf in jax.tree.leaves(targets))
    return f"inputs {tuple(inputs.shape)} {inputs.dtype}; targets {shapes}"


def check_task_determinism(task: Task, batch: int) -> str:
    key = jax.random.PRNGKey(7)
    first = task.sample(key, batch)
    _compare("sample (same key)", task.sample(key, batch), first, exact=True)
    _compare("sample (jitted)", jax.jit(task.sample, static_argnums=1)(key, batch), first)
    other = task.sample(jax.random.PRNGKey(8), batch)
    same = [bool(np.array_equal(a, b)) for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(first), strict=True)]
    _require(not all(same), "a different key gave an identical batch")
    return "same key -> identical batch (eager and jitted); different key -> different batch"


def check_task_held_out(task: Task, batch: int) -> str:
    test = task.held_out("test", batch)
    _compare("held_out('test') twice", task.held_out("test", batch), test, exact=True)
    n = test[0].shape[0]
    _require(1 <= n <= batch, f"held_out('test', {batch}) gives {n} sequences; expected 1 to {batch}")
    valid = task.held_out("valid", batch)
    _require(not np.array_equal(np.asarray(valid[0]), np.asarray(test[0])), "the test and validation splits are equal")
    return f"fixed test and validation sets ({n} sequences asked {batch}), distinct"


def check_task_baseline(task: Task, batch: int) -> str:
    value = task.baseline
    _require(isinstance(value, int | float | np.floating) and np.isfinite(value) and value > 0,
             f"baseline is {value!r}; it must be a finite number > 0 (the memoryless loss)")  # fmt: skip
    return f"baseline {float(value):.4g}" + (f" ({task.baseline_formula})" if task.baseline_formula else "")


def check_task_loss(task: Task, batch: int) -> str:
    _, targets = task.sample(jax.random.PRNGKey(0), batch)
    outputs = _outputs(task, batch)
    per_example = task.per_example_loss(outputs, targets)
    _require(
        tuple(per_example.shape) == (batch,),
        f"per_example_loss has shape {tuple(per_example.shape)}; expected ({batch},)",
    )
    loss, grad = jax.value_and_grad(task.loss)(outputs, targets)
    _require(bool(np.isfinite(loss)), f"loss of zero outputs is {float(loss)}")
    _finite("d loss / d outputs", grad)
    return f"loss of zero outputs {float(loss):.4g}, gradient finite"


def check_task_metrics(task: Task, batch: int) -> str:
    _, targets = task.sample(jax.random.PRNGKey(0), batch)
    metrics = task.metrics(_outputs(task, batch), targets)
    _require(isinstance(metrics, dict), f"metrics returns a {type(metrics).__name__}; it must be a dict")
    declared = {"headline": task.headline, "solved_metric": task.solved_metric}
    declared.update({f"table_metrics[{i}]": k for i, k in enumerate(task.table_metrics)})
    for what, key in declared.items():
        _require(key in metrics, f"{what} is {key!r}, but metrics() gives {', '.join(metrics)}")
    for key, value in metrics.items():
        _require(np.ndim(value) == 0, f"metrics()[{key!r}] has shape {np.shape(value)}; it must be a scalar")
    _finite("metrics", metrics)
    return "declared metrics present: " + ", ".join(dict.fromkeys(declared.values()))


TASK_CHECKS: tuple[tuple[str, Callable[[Task, int], str]], ...] = (
    ("declarations", check_task_declarations),
    ("sample", check_task_sample),
    ("determinism", check_task_determinism),
    ("held_out", check_task_held_out),
    ("baseline", check_task_baseline),
    ("loss", check_task_loss),
    ("metrics", check_task_metrics),
)


def _print_results(spec: str, results: list[CheckResult]) -> bool:
    """Print each check and the count; True when every check passed."""
    for result in results:
        print(result)
    n_pass = sum(r.passed for r in results)
    print(f"{spec}: {n_pass}/{len(results)} checks passed")
    return n_pass == len(results)


def main(argv: list[str]) -> int:
    """CLI body: check each positional cell spec, or --task; return the exit code."""
    from absl import flags

    FLAGS = flags.FLAGS
    sizes = {name: FLAGS[name].value for name in SIZE_BOUNDS}
    check_sizes(**sizes)
    specs = argv[1:]
    if FLAGS.task is not None:
        if specs:
            raise ConfigError(f"--task={FLAGS.task}: checks a task; give cells in a separate command ({specs[0]})")
        results = check_task(FLAGS.task, sizes["seq_len"], sizes["batch"], FLAGS.task_options)
        return 0 if _print_results(FLAGS.task, results) else 1
    if FLAGS.task_options:
        raise ConfigError("--task_options: applies to --task only")
    if not specs:
        raise ConfigError(
            f"no cell to check; usage: python -m experiments.conformance package.module:MyCell ... [{USAGE}]"
        )
    for spec in specs:  # options a cell refuses are a bad flag (exit 2), not a failed check of the cell
        _check_options(spec, sizes["hidden_size"], FLAGS.cell_options)
    failed = False
    for spec in specs:
        failed |= not _print_results(spec, check_cell(spec, **sizes, options=FLAGS.cell_options))
    return 1 if failed else 0


def _check_options(spec: str, hidden_size: int, options: str) -> None:
    """ConfigError naming --cell_options when the cell builds without them but not with them."""
    if not options.strip():
        return
    try:
        make_cell(spec, hidden_size, options)
    except ValueError as e:
        try:
            make_cell(spec, hidden_size)
        except Exception:  # noqa: BLE001 - the cell itself is broken: check_cell reports it as a failed check
            return
        raise ConfigError(f"--cell_options={options}: {str(e).splitlines()[0]}") from None


USAGE = "--hidden_size --input_size --batch --seq_len --cell_options; or --task=... --task_options; see --helpfull"


def _run() -> None:
    from absl import flags

    from experiments.flags import run

    flags.DEFINE_integer("hidden_size", 8, "Width of the cell's hidden state.")
    flags.DEFINE_integer("input_size", 3, "Width of the inputs.")
    flags.DEFINE_integer("batch", 2, "Batch size of the test inputs.")
    flags.DEFINE_integer("seq_len", 5, "Sequence length for the gradient and scan checks (at least 2).")
    flags.DEFINE_string("cell_options", "", "Cell constructor options as key=value,...")
    flags.DEFINE_string(
        "task",
        None,
        "Check this task instead of cells: registered name, package.module:Class or path/to/file.py:Class.",
    )
    flags.DEFINE_string("task_options", "", "--task's options as key=value,...")
    run(
        main,
        positional="cell specs",
        groups={
            "the checks": ("cell_options", "hidden_size", "input_size", "batch", "seq_len"),
            "a task instead": ("task", "task_options"),
        },
    )


if __name__ == "__main__":
    _run()
