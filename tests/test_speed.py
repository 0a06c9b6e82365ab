"""benchmarks.speed: the quick preset prints (and writes) its speed and seeds tables, with sane numbers."""

import importlib.util
import math
import os
import subprocess
import sys

import jax
import pytest

from benchmarks import variants
from benchmarks.contenders import train_programs
from benchmarks.speed_presets import CELLS, LINEAR_CELLS, PRESETS, Setting
from experiments.config import ConfigError
from experiments.experiment import Experiment
from tests.helpers import ROOT

ROWS = {("rnn", "SimpleCell"), ("lstm", "OptimizedLSTMCell"), ("lstm", "LSTMCell"), ("gru", "GRUCell")}


def table_rows(section: str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows of the one Markdown table in `section`."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


@pytest.mark.slow
def test_quick_preset_has_a_row_per_cell_and_seed_count_with_positive_finite_numbers(tmp_path):
    out = tmp_path / "results" / "speed.md"
    # Optimisation level 0 halves XLA's compile time, which is most of this test; the numbers
    # are checked for sanity only, never compared.
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed", "--preset=quick", f"--out={out}"],
        cwd=ROOT,
        env={**os.environ, "XLA_FLAGS": xla_flags},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert table in proc.stdout
    assert not [p for p in out.parent.iterdir() if p.name != "speed.md"]  # no temporary file left
    speed_section, seeds_section = table.split("\n## Seeds")
    seeds_section, linear_section = seeds_section.split("\n## Linear-recurrence cells")
    header, rows = table_rows(linear_section)
    assert header == ["cell", "ours ms/step"] and [row[0] for row in rows] == list(LINEAR_CELLS)
    assert all(math.isfinite(float(row[1])) and float(row[1]) > 0 for row in rows)
    assert "adding task, B=4 T=24 H=8 (T = seq_len)" in linear_section
    header, rows = table_rows(speed_section)
    has_torch = importlib.util.find_spec("torch") is not None
    assert header[:7] == ["setting", "cell", "flax cell", "ours ms/step", "flax ms/step", "flax/ours", "ours GFLOP/s"]
    assert (header[7:] == ["torch ms/step", "torch/ours"]) == has_torch
    assert has_torch or "torch column skipped: torch is not installed" in table
    assert {(row[1], row[2]) for row in rows} == ROWS and len(rows) == len(ROWS)
    for row in rows:
        assert row[0] == "B=4 T=24 H=8"
        numbers = [float(v) for v in row[3:]]
        assert len(numbers) == len(header) - 3
        assert all(math.isfinite(x) and x > 0 for x in numbers), row
    header, rows = table_rows(seeds_section)
    assert header[:6] == [
        "cell",
        "seeds",
        "vmapped seed-steps/s",
        "x one seed",
        "sequential seed-steps/s",
        "vmapped/sequential",
    ]
    assert (header[6:] == ["torch sequential seed-steps/s", "vmapped/torch"]) == has_torch
    assert [row[:2] for row in rows] == [[cell, n] for cell in CELLS for n in ("1", "2")]
    assert "adding task, B=4 T=24 H=8" in seeds_section
    for row in rows:
        vmapped, gain, sequential, ratio = map(float, row[2:6])
        assert all(math.isfinite(x) and x > 0 for x in (vmapped, gain, sequential, ratio)), row
        assert ratio == pytest.approx(vmapped / sequential, rel=0.02), row
        assert gain == 1 if row[1] == "1" else gain > 0


def test_settings_flops_and_variant_names():
    setting = Setting.parse("128x520x256")
    assert (setting.batch_size, setting.length, setting.hidden_size) == (128, 520, 256)
    assert setting.config("lstm").seq_len == 500  # copy reads seq_len + 20 steps
    B, T, H = 128, 520, 256
    assert setting.train_flops("lstm") == 3 * 2 * B * T * (4 * H * (10 + H) + H * 9)
    assert setting.train_flops("rnn") < setting.train_flops("gru") < setting.train_flops("lstm")
    assert math.isnan(setting.train_flops("lru"))  # no gate count for the cells without flax/torch counterparts
    for bad in ("128x520", "0x100x8", "4x21x8", "axbxc"):
        with pytest.raises(ConfigError):
            Setting.parse(bad)
    assert Setting.parse("4x2x8", "seeds_setting", min_length=2) == Setting(4, 2, 8)  # adding: T >= 2
    with pytest.raises(ConfigError, match="--seeds_setting"):
        Setting.parse("4x1x8", "seeds_setting", min_length=2)
    assert variants.parse_variant("step") == {"sequence_path": "step"}
    assert variants.parse_variant("unroll4") == {"unroll": 4}
    assert variants.parse_variant("sequence+unroll16") == {"sequence_path": "sequence", "unroll": 16}
    for bad in ("", "unroll", "unroll0", "hoist", "step+step", "step+sequence", "unroll2+unroll4", "fast"):
        with pytest.raises(ConfigError, match="--variants"):
            variants.parse_variant(bad)


@pytest.mark.parametrize("cell", CELLS)
def test_path_variants_compute_what_the_default_model_does(cell):
    config = Setting(2, 23, 5).config(cell)
    fused = variants.variant_experiment(config, "sequence+unroll2").model
    step = variants.variant_experiment(config, "step").model
    assert fused.uses_sequence and fused.scan_unroll == 2 and not step.uses_sequence
    inputs, _ = Experiment(config).task.sample(jax.random.PRNGKey(0), 2)
    params = step.init(jax.random.PRNGKey(0), inputs)
    out = fused.apply(params, inputs)
    assert out.shape == (2, 23, 9)
    assert jax.numpy.allclose(out, step.apply(params, inputs), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_gpu_preset_code_path_runs_at_tiny_sizes(tmp_path):
    """The gpu preset's contenders and tables (path variant, seeds with x one seed) on CPU at tiny sizes."""
    out = tmp_path / "gpu.md"
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    cmd = [sys.executable, "-m", "benchmarks.speed", "--preset=gpu_tiny", f"--out={out}", "--matmul_precision=default"]
    env = {**os.environ, "XLA_FLAGS": xla_flags}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "| B=4 T=24 H=8 | lstm | step |" in table and "matmul precision default" in table
    header, rows = table_rows(table.split("\n## Seeds")[1])
    assert [row[:2] for row in rows] == [["lstm", "1"], ["lstm", "3"]]
    assert header[-1] == "vmapped+step seed-steps/s" and all(float(row[-1]) > 0 for row in rows)
    assert set(PRESETS["gpu"].seed_counts) == {1, 8, 32, 256}


def test_gpu_only_variants_parse_and_are_refused_off_a_gpu():
    """cmdbuf (XLA GPU command buffers, set per compilation) and tf32x3 (the three-pass TF32 dot algorithm)
    are variants for side-by-side timing on a GPU; elsewhere the flag check refuses them in one line."""
    assert variants.parse_variant("cmdbuf") == {"xla": "cmdbuf"}
    assert variants.parse_variant("cmdbuf+tf32x3") == {"xla": "cmdbuf", "matmul_precision": "tf32x3"}
    assert variants.COMMAND_BUFFER_OPTIONS["xla_gpu_command_buffer_unroll_loops"] is True
    assert "WHILE,CONDITIONAL" in variants.COMMAND_BUFFER_OPTIONS["xla_gpu_enable_command_buffer"]
    variants.check_variant_backend("cmdbuf+tf32x3", "gpu")
    with pytest.raises(ConfigError, match=r"^--variants=cmdbuf: cmdbuf sets XLA GPU command-buffer options"):
        variants.check_variant_backend("cmdbuf", "cpu")
    with pytest.raises(ConfigError, match=r"^--variants=step\+tf32x3: --matmul_precision=tf32x3: .*needs a GPU"):
        variants.check_variant_backend("step+tf32x3", "cpu")


def test_command_buffer_options_are_accepted_by_xla_when_it_compiles():
    """The options' names and values parse in this XLA (a CPU compilation accepts and ignores them), and a
    step compiled with them runs."""
    config = Setting(2, 23, 4).config("rnn")
    init, step = train_programs(Experiment(config), variants.COMMAND_BUFFER_OPTIONS)
    state = step(init(jax.numpy.arange(1)))
    assert int(jax.block_until_ready(state).step[0]) == 1


def test_baseline_revision_must_exist():
    from benchmarks.baseline import revision

    with (
        pytest.raises(ConfigError, match=r"^--baseline=no-such-revision: not a revision"),
        revision("no-such-revision"),
    ):
        pass


@pytest.mark.slow
def test_grid_and_profile_sections_run_the_tiny_slice(tmp_path):
    """--sections=grid trains the tiny slice through the local launcher one point at a time and with 2 workers
    and reports seed-steps per minute per point and in all; --sections=profile prints XLA's cost analysis of
    one vmapped step and writes a jax.profiler trace."""
    out, trace = tmp_path / "grid.md", tmp_path / "trace"
    cmd = [sys.executable, "-m", "benchmarks.speed", "--sections=grid,profile", "--grid_slice=tiny", "--grid_workers=2"]
    cmd += ["--seeds_setting=4x8x4", "--seed_counts=1,3", "--cells=rnn", f"--profile_dir={trace}", f"--out={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grid, profile = out.read_text().split("\n## Profile")
    header, rows = table_rows(grid)
    assert header == ["point", "1 worker(s): seed-steps/min", "2 worker(s): seed-steps/min"]
    assert [row[0] for row in rows] == ["gru_T6", "rnn_T6", "**all (wall clock)**"]
    assert all(float(v) > 0 for row in rows for v in row[1:])
    assert "2 workers / one at a time, in all: " in grid
    _, rows = table_rows(profile)
    values = {row[0]: float(row[1]) for row in rows}
    assert values["flops"] > 0 and values["measured seconds per step (one step)"] > 0
    assert list(trace.rglob("*.xplane.pb"))
