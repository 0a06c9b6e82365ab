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

The checks themselves: `experiments.cell_checks` (`check_cell(spec)`) and `experiments.task_checks`
(`check_task(spec)`), each one documented there.
"""

from absl import flags

from cells import make_cell
from experiments.cell_checks import check_cell
from experiments.checks import SIZE_BOUNDS, CheckResult, check_sizes
from experiments.config import ConfigError
from experiments.flags import run
from experiments.task_checks import check_task

__all__ = ["check_cell", "check_task"]  # also reachable as experiments.conformance.check_cell / check_task

FLAGS = flags.FLAGS
USAGE = "--hidden_size --input_size --batch --seq_len --cell_options; or --task=... --task_options; see --helpfull"


def _print_results(spec: str, results: list[CheckResult]) -> bool:
    """Print each check and the count; True when every check passed."""
    for result in results:
        print(result)
    n_pass = sum(r.passed for r in results)
    print(f"{spec}: {n_pass}/{len(results)} checks passed")
    return n_pass == len(results)


def main(argv: list[str]) -> int:
    """CLI body: check each positional cell spec, or --task; return the exit code."""
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


def define_flags() -> None:
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


FLAG_GROUPS = {
    "the checks": ("cell_options", "hidden_size", "input_size", "batch", "seq_len"),
    "a task instead": ("task", "task_options"),
}

if __name__ == "__main__":
    define_flags()
    run(main, positional="cell specs", groups=FLAG_GROUPS)
