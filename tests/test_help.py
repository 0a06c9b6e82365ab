"""`--help` of every entry point lists that tool's own flags, grouped; `--helpfull` stays absl's."""

from concurrent.futures import ThreadPoolExecutor

from conftest import run_module

# entry point -> (a group title, flags its --help must list)
EXPECTED = {
    "experiments.train": ("training:", ("--cell:", "--task:", "--seq_len:", "--steps:", "--num_seeds:", "--workdir:")),
    "experiments.compare": ("cell and task:", ("--cells:", "--learning_rate:", "--hidden_size:", "--workdir:")),
    "experiments.gradients": ("diagnostics:", ("--cells:", "--from_workdirs:", "--batch:", "--power_iters:")),
    "experiments.conformance": ("the checks:", ("--hidden_size:", "--input_size:", "--cell_options:")),
    "benchmarks.tables": ("launcher:", ("--table:", "--preset:", "--status:", "--seq_lens:", "--slurm_time:")),
    "benchmarks.speed": ("contenders:", ("--preset:", "--settings:", "--variants:", "--seed_counts:", "--torch:")),
    "benchmarks.memory": ("what to measure:", ("--preset:", "--cells:", "--remat:", "--out:")),
}


def test_help_lists_each_entry_points_own_flags_in_groups():
    with ThreadPoolExecutor(2) as pool:
        procs = dict(zip(EXPECTED, pool.map(lambda m: run_module(m, "--help"), EXPECTED), strict=True))
    for module, (group, names) in EXPECTED.items():
        out = procs[module].stdout
        assert procs[module].returncode == 0, f"{module}: {procs[module].stderr[-2000:]}"
        lines = {line.strip() for line in out.splitlines()}
        assert group in lines, f"{module} --help has no group {group!r}:\n{out}"
        missing = [n for n in names if n not in out.replace("--[no]", "--")]
        assert not missing, f"{module} --help does not list {missing}:\n{out}"
        assert "--helpfull" in out and "--logtostderr" not in out  # absl's own flags stay out


def test_helpfull_stays_absls():
    out = run_module("experiments.train", "--helpfull").stdout
    assert "--learning_rate" in out and "absl.logging:" in out  # every module's flags, absl's included
