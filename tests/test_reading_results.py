"""Reading results back: it runs no code, a damaged point is shown as damaged while the others go on, a workdir's
layout is checked before anything compiles, the lock follows no link, TensorBoard shows each step once after
kills and reruns, a checkpoint that no longer fits the cell is kept, and a sweep's errors name its own flags."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from benchmarks import slurm
from benchmarks.point_status import PointStatus, point_status
from benchmarks.presets import PRESETS
from benchmarks.table_run import load_points
from benchmarks.table_sweep import OWN_FIELDS
from experiments import io, plots, schema, sweep
from experiments.checkpoint import UNREADABLE, ParamsMismatchError, saved_steps
from experiments.config import Config, ConfigError
from experiments.grid import PointKey, point_dir, task_of
from experiments.lock import held_by, workdir_lock
from experiments.sweep import check_points, load_point
from experiments.sweep_report import write_report
from experiments.tensorboard import TensorBoardLog
from experiments.trainer import train_and_evaluate
from tests.helpers import ROOT, tensorboard_scalars

GRID = (
    PRESETS["smoke"]["adding"].with_fields(steps=2).replace(grid={"cell": ("rnn", "gru", "lstm"), "seq_len": (6, 12)})
)
CONFIGS = GRID.points()
BASE = PointKey("rnn", 6)
TINY = Config(cell="rnn", seq_len=5, hidden_size=4, batch_size=4, eval_size=8, steps=2, eval_every=1)
ARGS = ["--table=adding", "--preset=smoke", "--cells=rnn,gru,lstm", "--seq_lens=6,12", "--steps=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One trained point of GRID (rnn, T=6: 2 steps, 2 seeds, diagnostics at 0 and 2, TensorBoard)."""
    workdir = tmp_path_factory.mktemp("trained") / "adding" / BASE.dirname
    train_and_evaluate(CONFIGS[BASE], workdir)
    return workdir


def copy_point(trained: Path, results_dir: Path, key: PointKey, checkpoints: bool = False) -> Path:
    """The trained point's files as the point `key` of GRID under `results_dir` (its config's cell and T)."""
    dest = point_dir(results_dir / "adding", key)
    ignore = shutil.ignore_patterns(".lock", "tb", *(() if checkpoints else ("checkpoints",)))
    shutil.copytree(trained, dest, ignore=ignore)
    config = CONFIGS[key].to_dict()
    io.write_json(dest / "config.json", config)
    results = io.read_json(dest / "results.json")
    results.update(cell=key.row, seq_len=key.seq_len, config={**results["config"], **config})
    io.write_json(dest / "results.json", results)
    return dest


def edit_json(path: Path, change) -> None:
    value = io.read_json(path)
    change(value)
    path.write_text(json.dumps(value))


def run(module: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *args]
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- 1: reading results runs no code


def test_status_and_render_import_nothing_a_results_file_names(trained, tmp_path, monkeypatch):
    """A results.json naming a module beside it as its task and cell: reading the point never imports it."""
    planted = tmp_path / "planted_by_a_collaborator.py"
    marker = tmp_path / "it ran"
    planted.write_text(f"open({str(marker)!r}, 'w').close()\nclass Task: pass\nclass Cell: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    workdir = copy_point(trained, tmp_path, BASE)
    edit_json(
        workdir / "results.json",
        lambda r: r.update(task="planted_by_a_collaborator:Task", cell="planted_by_a_collaborator:Cell"),
    )
    configs = {BASE: CONFIGS[BASE]}
    status = point_status("adding", CONFIGS[BASE], workdir)
    assert status.state == "finished" and status.line.startswith("finished: ")
    points = load_points("adding", configs, tmp_path)
    report = write_report(tmp_path / "adding", "adding", GRID.with_fields(cell="rnn", seq_len=6), points, "cmd", 0.0)
    assert "| rnn | " in report and "damaged" not in report
    assert not marker.exists() and "planted_by_a_collaborator" not in sys.modules


# ----------------------------------------------------------------------------- 2: the lock follows no link


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_a_planted_lock_is_refused_and_the_file_it_points_at_is_untouched(tmp_path, kind):
    victim, workdir = tmp_path / "victim.txt", tmp_path / "W"
    victim.write_text("precious\n")
    workdir.mkdir()
    lock = workdir / ".lock"
    {
        "symlink": lambda: lock.symlink_to("../victim.txt"),
        "hardlink": lambda: os.link(victim, lock),
        "fifo": lambda: os.mkfifo(lock),
    }[kind]()
    refused = rf"^--workdir={workdir}: (cannot open|refusing) its lock file .*; move it"
    with pytest.raises(ConfigError, match=refused), workdir_lock(workdir):
        pass
    assert victim.read_text() == "precious\n" and held_by(workdir) is None  # nor does --status wait on a FIFO
    with pytest.raises(ConfigError, match="lock file"):  # training: refused before anything is written
        train_and_evaluate(TINY, workdir)
    assert victim.read_text() == "precious\n" and not (workdir / "config.json").exists()


def test_the_metrics_log_is_not_appended_through_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        io.append_jsonl(tmp_path / "metrics.jsonl", [{"step": 0}])
    assert victim.read_text() == "precious\n"


# ----------------------------------------------------------------------------- 3: damaged points


def damaged_grid(trained: Path, results_dir: Path) -> None:
    """The six points of GRID: five damaged in a different way each, one intact (lstm, T=12)."""
    bad = copy_point(trained, results_dir, PointKey("rnn", 6))
    edit_json(bad / "results.json", lambda r: r.update(steps_done="20"))
    bad = copy_point(trained, results_dir, PointKey("rnn", 12))
    edit_json(bad / "results.json", lambda r: r.pop("config"))
    bad = copy_point(trained, results_dir, PointKey("gru", 6))
    lines = (bad / "metrics.jsonl").read_text().splitlines()
    (bad / "metrics.jsonl").write_text("\n".join([lines[0], '{"train_loss": 1.0}', *lines[1:]]) + "\n")
    bad = copy_point(trained, results_dir, PointKey("gru", 12))
    (bad / "metrics.jsonl").write_text("")  # a zero-length curve
    bad = copy_point(trained, results_dir, PointKey("lstm", 6))
    (bad / "results.json").unlink()
    (bad / "error.txt").write_bytes("RuntimeError: échec\n".encode("latin-1"))  # not UTF-8
    copy_point(trained, results_dir, PointKey("lstm", 12))


def test_status_and_render_show_each_damaged_point_and_go_on(trained, tmp_path):
    damaged_grid(trained, tmp_path)
    args = [*ARGS, f"--results_dir={tmp_path}"]
    with ThreadPoolExecutor(2) as pool:
        status, render = pool.map(lambda a: run("benchmarks.tables", *args, a), ["--status", "--render_only"])
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr[-3000:]
    lines = {line.split()[0]: line.split(None, 1)[1] for line in status.stdout.splitlines()[1:-1]}
    assert lines == {
        "rnn_T6": 'damaged: results.json: "steps_done" must be an integer >= 0, not "20"',
        "rnn_T12": 'damaged: results.json: no "config"',
        "gru_T6": 'damaged: metrics.jsonl: line 2: no "step"',
        "gru_T12": "damaged: metrics.jsonl: no records",
        "lstm_T6": lines["lstm_T6"],
        "lstm_T12": lines["lstm_T12"],
    }
    assert lines["lstm_T6"].startswith("failed: RuntimeError: \ufffdchec (see ")
    assert lines["lstm_T12"].startswith("finished: ")
    assert status.stdout.splitlines()[-1] == "4 damaged, 1 failed, 1 finished"
    assert render.returncode == 0 and "Traceback" not in render.stderr, render.stderr[-3000:]
    report = (tmp_path / "adding" / "adding.md").read_text()
    assert '| rnn | - (damaged: results.json: "steps_done" must be an integer >= 0, not "20") |' in report
    assert "- (damaged: metrics.jsonl: no records) |" in report and "- (failed: RuntimeError: \ufffdchec" in report
    assert (tmp_path / "adding" / "adding_curves_T12.png").stat().st_size > 0


def test_a_training_sweep_refuses_a_damaged_point_in_one_line_before_training(trained, tmp_path):
    damaged_grid(trained, tmp_path)
    with pytest.raises(ConfigError) as e:
        check_points(CONFIGS, tmp_path / "adding", "train", own_flags=OWN_FIELDS)
    message = str(e.value)
    assert message.startswith(f"--results_dir={tmp_path / 'adding' / 'rnn_T6'}: ") and "\n" not in message
    assert 'results.json is damaged ("steps_done" must be an integer >= 0, not "20"); move it away' in message


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("results.json", "[1]", "not a JSON object but list"),
        ("results.json", "{", "not JSON: Expecting property name enclosed in double quotes"),
        ("metrics.jsonl", '{"step": 0, "seed": "0"}\n', 'line 1: "seed" must be an integer, not "0"'),
        ("metrics.jsonl", '{"step": true, "seed": 0}\n', 'line 1: "step" must be an integer >= 0, not true'),
        ("metrics.jsonl", "7\n", "line 1: not a JSON object but 7"),
        ("metrics.jsonl", '{"step": 0, "seed": 0, "eval_loss": "low"}\n', 'line 1: "eval_loss" must be a number'),
        ("diagnostics.jsonl", '{"step": 0, "seed": 0, "carry": 3}\n', 'line 1: "carry" must be an object, not 3'),
        ("diagnostics.jsonl", '{"step": 0, "seed": 0}\n', 'line 1: no "carry"'),
    ],
)
def test_the_schema_names_what_is_wrong(trained, tmp_path, name, text, why):
    workdir = copy_point(trained, tmp_path, BASE)
    (workdir / name).write_text(text)
    with pytest.raises(schema.DamagedError) as e:
        load_point("train", workdir, task_of(CONFIGS[BASE]))
    assert e.value.path.name == name and e.value.why.startswith(why)


def test_a_torn_last_line_is_not_damage_and_every_committed_result_passes_the_schema(trained, tmp_path):
    workdir = copy_point(trained, tmp_path, BASE)
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "se')  # a kill while the line was written
    assert len(load_point("train", workdir, task_of(CONFIGS[BASE]))["metrics"]) == 4  # steps 0, 2 x 2 seeds
    committed = sorted((ROOT / "results").rglob("results.json"))
    assert committed
    for path in committed:  # the results the project publishes read back as a run writes them
        schema.read_results(path)
        schema.read_records(path.parent / "metrics.jsonl", schema.check_metrics_record)
        schema.read_records(path.parent / "diagnostics.jsonl", schema.check_diagnostics_record)


# ----------------------------------------------------------------------------- 4: a workdir's layout


@pytest.mark.parametrize(
    ("name", "make", "kind"),
    [
        ("results.json", "dir", "a folder where the run keeps a file"),
        ("metrics.jsonl", "dir", "a folder where the run keeps a file"),
        ("diagnostics.jsonl", "dir", "a folder where the run keeps a file"),
        ("tb/seed_0", "file", "a file where the run keeps a folder"),
        ("tb", "file", "a file where the run keeps a folder"),
        ("config.json", "fifo", "a FIFO where the run keeps a file"),
    ],
)
def test_a_workdir_with_the_wrong_kind_of_file_is_refused_before_anything_compiles(tmp_path, name, make, kind):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    {"dir": path.mkdir, "file": path.touch, "fifo": lambda: os.mkfifo(path)}[make]()
    before = sorted(p.name for p in tmp_path.rglob("*")) + [".lock"]  # the lock is taken first
    with pytest.raises(ConfigError, match=rf"^--workdir={tmp_path}: {path} is {kind}; move it away$"):
        train_and_evaluate(TINY.replace(diag_every=1, tensorboard=True), tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(before)  # nothing but the lock written


# ----------------------------------------------------------------------------- 5: a read-only results folder


def test_render_only_on_a_read_only_results_folder_is_one_line(trained, tmp_path):
    source, mount = tmp_path / "source", tmp_path / "ro"
    copy_point(trained, source, BASE)
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root")
    bound = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True)
    if bound.returncode:
        pytest.skip(f"cannot bind-mount: {bound.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], check=True, capture_output=True)
        args = ["--table=adding", "--preset=smoke", "--cells=rnn", "--seq_lens=6", "--steps=2"]
        proc = run("benchmarks.tables", *args, f"--results_dir={mount}", "--render_only")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert proc.returncode == 2 and not proc.stdout, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: --results_dir={mount}: --render_only writes adding.md, adding.csv and its plots into "
        f"{mount / 'adding'}, which is not writable (Read-only file system); copy the folder somewhere writable "
        "and render there"
    ]


# ----------------------------------------------------------------------------- 12: plots with zeros and nothing


def test_plots_draw_zeros_nan_and_empty_series(tmp_path):
    nan = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib's about the gaps; what matters is that a file is written
        plots.plot_learning_curves(
            {"a": ([0, 10], np.zeros((2, 2))), "b": ([], np.zeros(0))}, 0.0, "MSE", tmp_path / "curves.png"
        )
        plots.plot_learning_curves({"a": ([0, 10], np.array([[nan], [np.inf]]))}, 1.0, "ratio", tmp_path / "r.png")
        plots.plot_metric_vs_length([10, 20], {"a": [[nan], [nan]], "b": [[], [0.0]]}, 0.0, "MSE", tmp_path / "v.png")
        plots.plot_jacobian_sigma([{"label": "a", "distance": [], "sigma": [], "std": []}], tmp_path / "j.png", "t")
        plots.plot_jacobian_sigma([{"label": "a", "distance": [1, 2], "sigma": [0, 0]}], tmp_path / "j0.png", "t")
        plots.plot_heatmap([], [], np.zeros((0, 0)), tmp_path / "h.png", "t")
    assert all(p.stat().st_size > 0 for p in tmp_path.glob("*.png")) and len(list(tmp_path.glob("*.png"))) == 6


# ----------------------------------------------------------------------------- 16: TensorBoard after kills


def eval_steps(workdir: Path, seed: int = 0) -> list[int]:
    return [step for step, _ in tensorboard_scalars(workdir / "tb" / f"seed_{seed}")["eval/loss"]]


def test_tensorboard_shows_each_step_once_after_a_kill_and_a_rerun(tmp_path):
    config = TINY.replace(steps=30, eval_every=10, checkpoint_every=20, tensorboard=True)
    train_and_evaluate(config, tmp_path)
    assert eval_steps(tmp_path) == [0, 10, 20, 30]
    # as if killed after logging step 30 but before its checkpoint: the rerun resumes from 20 and logs 30 again
    shutil.rmtree(tmp_path / "checkpoints" / "30")
    (tmp_path / "results.json").unlink()
    assert train_and_evaluate(config, tmp_path)["resumed_from"] == 20
    assert eval_steps(tmp_path) == [0, 10, 20, 30]
    # as if killed before the first checkpoint: the rerun trains from step 0 and logs step 0 again
    shutil.rmtree(tmp_path / "checkpoints")
    (tmp_path / "results.json").unlink()
    train_and_evaluate(config, tmp_path)
    assert eval_steps(tmp_path) == [0, 10, 20, 30] and eval_steps(tmp_path, 0) == eval_steps(tmp_path, 0)


def test_a_rerun_hides_what_was_logged_after_its_start_and_keeps_the_earlier_files_as_they_are(tmp_path):
    """TensorBoard's restart marker hides the steps after the resume; nothing an earlier process wrote is lost."""
    log = TensorBoardLog(tmp_path)
    log.write([{"step": s, "seed": 0, "eval_loss": float(s)} for s in (0, 10, 20)])
    log.close()
    run = tmp_path / "tb" / "seed_0"
    (first,) = run.glob("events.out.tfevents.*")
    written = first.read_bytes()
    log = TensorBoardLog(tmp_path)
    log.start(10)
    log.write([{"step": 20, "seed": 0, "eval_loss": 200.0}])
    log.close()
    assert tensorboard_scalars(run)["eval/loss"] == [(0, 0.0), (10, 10.0), (20, 200.0)]
    assert first.read_bytes() == written and len(list(run.glob("events.out.tfevents.*"))) == 2


# ----------------------------------------------------------------------------- 20: a checkpoint that no longer fits


def test_a_checkpoint_that_no_longer_fits_the_cell_is_reported_as_such_and_kept(tmp_path, monkeypatch):
    module = tmp_path / "edited_cell_module.py"
    source = textwrap.dedent("""
        import jax.numpy as jnp
        from flax import linen as nn

        class Cell(nn.RNNCellBase):
            hidden_size: int

            @nn.compact
            def __call__(self, carry, x):
                h = jnp.tanh(nn.Dense(self.hidden_size)(x) + nn.Dense(self.hidden_size, use_bias=False)(carry))
                return h, h

            @nn.nowrap
            def initialize_carry(self, rng, input_shape):
                return jnp.zeros(input_shape[:-1] + (self.hidden_size,))

            @property
            def num_feature_axes(self):
                return 1
    """)
    module.write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = TINY.replace(cell="edited_cell_module:Cell", steps=4, eval_every=2, checkpoint_every=2)
    workdir = tmp_path / "run"
    train_and_evaluate(config, workdir)
    module.write_text(source.replace("(self.hidden_size)(x)", "(2 * self.hidden_size)(x)[..., ::2]"))
    sys.modules.pop("edited_cell_module")
    with pytest.raises(ParamsMismatchError) as e:
        train_and_evaluate(config.replace(steps=6), workdir)
    assert str(e.value) == (
        f"--workdir={workdir.absolute()}: checkpoint 4 holds parameters that do not match the cell as its code is "
        "now (cell/Dense_0/bias was saved with shape (4,), the cell now makes (8,)); the checkpoint is not "
        "damaged and is kept as it is: put the cell's code back to resume it, or use a new --workdir to train "
        "the changed cell"
    )
    assert saved_steps(workdir) == [2, 4] and not (workdir / UNREADABLE).exists()
    sys.modules.pop("edited_cell_module", None)


# ----------------------------------------------------------------------------- 21: a signal while checking points


@pytest.mark.parametrize(
    ("module", "args", "sig", "doing"),
    [
        (
            "benchmarks.tables",
            ["--table=adding", "--preset=smoke", "--seq_lens=6"],
            "SIGINT",
            "checking the grid points",
        ),
        ("experiments.compare", ["--seq_len=6", "--steps=2"], "SIGTERM", "checking the cells"),
    ],
)
def test_a_signal_while_points_are_checked_is_one_line(tmp_path, module, args, sig, doing):
    """The signal arrives while the points are validated (the cell module sends it when it is imported)."""
    (tmp_path / "signalling_cell.py").write_text(
        f"import os, signal\nos.kill(os.getpid(), signal.{sig})\nimport time\ntime.sleep(5)\nCell = None\n"
    )
    folder = "--results_dir" if module == "benchmarks.tables" else "--workdir"
    proc = run(
        module,
        *args,
        "--cells=signalling_cell:Cell",
        f"{folder}={tmp_path / 'out'}",
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert proc.returncode == 128 + signal.Signals[sig].value, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: {sig} received while {doing}; nothing was trained; rerun the same command"
    ]


# ----------------------------------------------------------------------------- 22: extending a short table


def test_a_short_table_extends_and_errors_name_the_tables_own_flags(trained, tmp_path):
    workdir = copy_point(trained, tmp_path, BASE, checkpoints=True)
    out = tmp_path / "adding"
    longer = GRID.with_fields(cell="rnn", seq_len=6, steps=4).points()  # eval_every 2 -> 4, diag_every 2 -> 4
    check_points(longer, out, "train", own_flags=OWN_FIELDS)
    other = GRID.with_fields(cell="rnn", seq_len=6, eval_size=64).points()
    with pytest.raises(ConfigError) as e:
        check_points(other, out, "train", own_flags=OWN_FIELDS)
    assert str(e.value) == (
        f"--results_dir={workdir} holds a run with other settings: eval_size (set by the sweep, not a flag) "
        "(saved 32, now 64); use a new --results_dir"
    )
    fewer = GRID.with_fields(cell="rnn", seq_len=6, steps=1).points()
    with pytest.raises(ConfigError, match=rf"^--steps=1: the run in --results_dir={workdir} has already trained 2"):
        check_points(fewer, out, "train", own_flags=OWN_FIELDS)
    results = sweep.run_point("train", longer[BASE], workdir)["results"]  # the extension trains
    assert results["steps_done"] == 4 and results["resumed_from"] == 2 and results["finished"]
    steps = [r["step"] for r in io.read_jsonl(workdir / "metrics.jsonl") if r["seed"] == 0]
    assert steps == [0, 2, 4]  # logged every 2 steps up to 2, then every 4


# ----------------------------------------------------------------------------- 23: diagnostics switched on later


def test_diagnostics_that_start_after_step_0_are_not_labelled_init(trained, tmp_path):
    workdir = copy_point(trained, tmp_path, BASE)
    records = io.read_jsonl(workdir / "diagnostics.jsonl")
    later = [{**r, "step": step} for step in (1, 2) for r in records if r["step"] == 0]  # first recorded at 1
    io.write_jsonl(workdir / "diagnostics.jsonl", later)
    point = load_point("train", workdir, task_of(CONFIGS[BASE]))
    assert point["diag_init"] == [] and {r["step"] for r in point["diag_end"]} == {2}
    one = GRID.with_fields(cell="rnn", seq_len=6)
    report = write_report(tmp_path / "adding", "adding", one, {BASE: point}, "cmd", 0.0)
    assert "| rnn | init | - |" in report and "| rnn | end | " in report and "(at step" not in report
    io.write_jsonl(workdir / "diagnostics.jsonl", [r for r in later if r["step"] == 1])  # the end is not the last step
    report = write_report(tmp_path / "adding", "adding", one, {BASE: load_point("train", workdir)}, "cmd", 0.0)
    assert "| rnn | init | - |" in report and " (at step 1) |" in report


# ----------------------------------------------------------------------------- beyond the list: hostile folders


def _config_steps_a_string(d: Path) -> None:
    edit_json(d / "config.json", lambda c: c.update(steps="2"))


def _results_link_to_a_device(d: Path) -> None:
    (d / "results.json").unlink()
    (d / "results.json").symlink_to("/dev/zero")


def _metrics_a_fifo(d: Path) -> None:
    (d / "metrics.jsonl").unlink()
    os.mkfifo(d / "metrics.jsonl")


def _results_nested_too_deeply(d: Path) -> None:
    (d / "results.json").write_text("[" * 100_000 + "]" * 100_000)


def _a_file_instead_of_the_point(d: Path) -> None:
    shutil.rmtree(d)
    d.write_text("not a folder")


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        (_config_steps_a_string, 'damaged: config.json: "steps" must be an integer, not "2"'),
        (
            lambda d: edit_json(d / "results.json", lambda r: r.update(seeds=[])),
            'damaged: results.json: "seeds" must be a non-empty list, not []',
        ),
        (_results_link_to_a_device, "damaged: results.json: a symbolic link where the run keeps a file"),
        (_metrics_a_fifo, "damaged: metrics.jsonl: a FIFO where the run keeps a file"),
        (_results_nested_too_deeply, "damaged: results.json: not JSON that can be read: nested too deeply"),
        (_a_file_instead_of_the_point, "damaged: a file where the point's folder goes"),
    ],
)
def test_status_neither_hangs_nor_crashes_on_a_hostile_point_and_training_refuses_it(trained, tmp_path, damage, line):
    workdir = copy_point(trained, tmp_path, BASE)
    damage(workdir)
    (tmp_path / "adding" / slurm.SLURM_JOBS).mkdir()  # not a file either: read as no jobs
    assert point_status("adding", CONFIGS[BASE], workdir) == PointStatus("damaged", line)
    with pytest.raises(ConfigError, match=f"^--results_dir={tmp_path / 'adding'}"):
        check_points({BASE: CONFIGS[BASE]}, tmp_path / "adding", "train", own_flags=OWN_FIELDS)


def test_tensorboard_start_skips_what_is_not_an_event_file_of_the_run(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    run = tmp_path / "tb" / "seed_0"
    (run / "events.out.tfevents.1.folder").mkdir(parents=True)
    (run / "events.out.tfevents.2.link").symlink_to(victim)
    (run / "events.out.tfevents.3.garbage").write_bytes(os.urandom(64))
    TensorBoardLog(tmp_path).start(0)
    assert victim.read_bytes() == b"precious" and (run / "events.out.tfevents.1.folder").is_dir()
    assert (run / "events.out.tfevents.2.link").is_symlink()


@pytest.mark.parametrize("kind", ["dangling link", "folder"])
def test_a_lock_that_is_a_dangling_link_or_a_folder_is_refused(tmp_path, kind):
    lock = tmp_path / ".lock"
    lock.symlink_to(tmp_path / "nowhere") if kind == "dangling link" else lock.mkdir()
    with pytest.raises(ConfigError, match="lock file"), workdir_lock(tmp_path):
        pass
    assert not (tmp_path / "nowhere").exists() and held_by(tmp_path) is None


def test_every_committed_config_passes_the_schema():
    committed = sorted((ROOT / "results").rglob("config.json"))
    assert committed
    for path in committed:
        schema.check_config(io.read_json(path))
