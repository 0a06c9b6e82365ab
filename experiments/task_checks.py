"""The task conformance checks: does a task (`tasks.base.Task`) keep the contract training and the tables rely on?

`check_task(spec)` runs every check on a task (a registered name, `package.module:Class`,
`path/to/file.py:Class`, or a built Task) and returns one `CheckResult` each; it never raises for a faulty task.

Task checks: ``construct`` (`make_task(spec, seq_len, options)`); ``declarations`` (input_size,
num_outputs, readout "all" or "last", metric_name, headline "loss" or "ratio", a solved rule with
one threshold); ``sample`` (inputs (B, length, input_size) floating, targets with leading dim B,
both finite); ``determinism`` (`sample` is a pure function of its key: same key, identical batch;
other key, a different one; jitted equals eager); ``held_out`` (each split is a fixed set of at
most the size asked, the test and validation splits differ); ``baseline`` (finite and > 0);
``loss`` (`per_example_loss` has shape (B,), `loss` and `metrics` are finite on zero outputs, and
differentiable: a finite gradient w.r.t. the outputs); ``metrics`` (the headline, `table_metrics`
and the solved metric are keys of `metrics`, each a scalar).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.checks import CheckError, CheckResult, check_sizes, compare, finite, key_path, one_line, require
from tasks import Task, make_task


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
            return [CheckResult("construct", False, one_line(e))]
    results = [CheckResult("construct", True, repr(task))]
    for name, check in TASK_CHECKS:
        try:
            results.append(CheckResult(name, True, check(task, batch)))
        except Exception as e:
            message = str(e) if isinstance(e, CheckError) else one_line(e)
            results.append(CheckResult(name, False, message.splitlines()[0] if message else ""))
    return results


def _outputs(task: Task, batch: int) -> jax.Array:
    """Zero readouts of the shape the model gives the task: (B, length, num_outputs) or (B, num_outputs)."""
    shape = (batch, task.length, task.num_outputs) if task.readout == "all" else (batch, task.num_outputs)
    return jnp.zeros(shape, jnp.float32)


def check_task_declarations(task: Task, batch: int) -> str:
    for name in ("input_size", "num_outputs"):
        value = getattr(task, name, None)
        require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"{name} is {value!r}; it must be an integer >= 1",
        )
    require(
        getattr(task, "readout", None) in ("all", "last"),
        f"readout is {getattr(task, 'readout', None)!r}; it must be 'all' or 'last'",
    )
    require(isinstance(getattr(task, "metric_name", None), str), "metric_name is not declared (e.g. 'CE', 'MSE')")
    require(task.headline in ("loss", "ratio"), f"headline is {task.headline!r}; it must be 'loss' or 'ratio'")
    below, above = task.solved_below, task.solved_above
    require((below is None) != (above is None), "declare one of solved_below and solved_above (the solved rule)")
    require(
        isinstance(task.length, int) and task.length >= task.seq_len,
        f"length is {task.length!r}; it must be an integer >= seq_len {task.seq_len}",
    )
    return f"input {task.input_size}, {task.num_outputs} outputs read at {task.readout}; solved: {task.solved_rule}"


def check_task_sample(task: Task, batch: int) -> str:
    inputs, targets = task.sample(jax.random.PRNGKey(0), batch)
    want = (batch, task.length, task.input_size)
    require(
        tuple(inputs.shape) == want, f"inputs have shape {tuple(inputs.shape)}; expected {want} (B, length, input_size)"
    )
    require(jnp.issubdtype(inputs.dtype, jnp.floating), f"inputs are {inputs.dtype}; they must be floating")
    for path, leaf in jax.tree_util.tree_leaves_with_path(targets):
        require(
            leaf.shape[:1] == (batch,), f"targets{key_path(path)} have shape {leaf.shape}; expected leading dim {batch}"
        )
    finite("inputs", inputs)
    finite("targets", targets)
    shapes = ", ".join(f"{tuple(leaf.shape)} {leaf.dtype}" for leaf in jax.tree.leaves(targets))
    return f"inputs {tuple(inputs.shape)} {inputs.dtype}; targets {shapes}"


def check_task_determinism(task: Task, batch: int) -> str:
    key = jax.random.PRNGKey(7)
    first = task.sample(key, batch)
    compare("sample (same key)", task.sample(key, batch), first, exact=True)
    compare("sample (jitted)", jax.jit(task.sample, static_argnums=1)(key, batch), first)
    other = task.sample(jax.random.PRNGKey(8), batch)
    same = [bool(np.array_equal(a, b)) for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(first), strict=True)]
    require(not all(same), "a different key gave an identical batch")
    return "same key -> identical batch (eager and jitted); different key -> different batch"


def check_task_held_out(task: Task, batch: int) -> str:
    test = task.held_out("test", batch)
    compare("held_out('test') twice", task.held_out("test", batch), test, exact=True)
    n = test[0].shape[0]
    require(1 <= n <= batch, f"held_out('test', {batch}) gives {n} sequences; expected 1 to {batch}")
    valid = task.held_out("valid", batch)
    require(not np.array_equal(np.asarray(valid[0]), np.asarray(test[0])), "the test and validation splits are equal")
    return f"fixed test and validation sets ({n} sequences asked {batch}), distinct"


def check_task_baseline(task: Task, batch: int) -> str:
    value = task.baseline
    require(
        isinstance(value, int | float | np.floating) and np.isfinite(value) and value > 0,
        f"baseline is {value!r}; it must be a finite number > 0 (the memoryless loss)",
    )
    return f"baseline {float(value):.4g}" + (f" ({task.baseline_formula})" if task.baseline_formula else "")


def check_task_loss(task: Task, batch: int) -> str:
    _, targets = task.sample(jax.random.PRNGKey(0), batch)
    outputs = _outputs(task, batch)
    per_example = task.per_example_loss(outputs, targets)
    require(
        tuple(per_example.shape) == (batch,),
        f"per_example_loss has shape {tuple(per_example.shape)}; expected ({batch},)",
    )
    loss, grad = jax.value_and_grad(task.loss)(outputs, targets)
    require(bool(np.isfinite(loss)), f"loss of zero outputs is {float(loss)}")
    finite("d loss / d outputs", grad)
    return f"loss of zero outputs {float(loss):.4g}, gradient finite"


def check_task_metrics(task: Task, batch: int) -> str:
    _, targets = task.sample(jax.random.PRNGKey(0), batch)
    metrics = task.metrics(_outputs(task, batch), targets)
    require(isinstance(metrics, dict), f"metrics returns a {type(metrics).__name__}; it must be a dict")
    declared = {"headline": task.headline, "solved_metric": task.solved_metric}
    declared.update({f"table_metrics[{i}]": k for i, k in enumerate(task.table_metrics)})
    for what, key in declared.items():
        require(key in metrics, f"{what} is {key!r}, but metrics() gives {', '.join(metrics)}")
    for key, value in metrics.items():
        require(np.ndim(value) == 0, f"metrics()[{key!r}] has shape {np.shape(value)}; it must be a scalar")
    finite("metrics", metrics)
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
