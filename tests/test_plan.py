"""`benchmarks.tables --plan`: estimates come from the training times that results recorded, scaled by the work."""

import json
from pathlib import Path

import pytest

from benchmarks import plan
from benchmarks.presets import PRESETS
from experiments.config import Config
from experiments.grid import PointKey


def _results(config: Config, sessions: list[dict]) -> dict:
    return {"config": config.to_dict(), "steps_done": sessions[-1]["steps"][1], "sessions": sessions}


def _session(first: int, last: int, wall: float, backend: str = "cpu") -> dict:
    return {"steps": [first, last], "wall_time_s": wall, "backend": backend, "device_kind": None, "cpu_count": 2}


CONFIG = Config(cell="gru", seq_len=1000, hidden_size=128, batch_size=50, num_seeds=3, steps=1500)


def test_a_record_is_wall_time_per_step_of_each_process():
    records = plan.records_of(_results(CONFIG, [_session(0, 400, 800.0), _session(400, 1000, 300.0, "gpu")]))
    assert [(r.backend, r.seconds_per_step) for r in records] == [("cpu", 2.0), ("gpu", 0.5)]
    # fewer than MIN_STEPS steps times mostly the compilation: no record
    assert plan.records_of(_results(CONFIG, [_session(0, plan.MIN_STEPS - 1, 300.0)])) == []


@pytest.mark.parametrize("wall", [100.0, 250.0])
def test_estimate_follows_the_recorded_time_not_a_constant(wall):
    records = plan.records_of(_results(CONFIG, [_session(0, 500, wall)]))
    e = plan.estimate(CONFIG, 1000, records, "cpu")
    assert e.seconds == pytest.approx(1000 * wall / 500)
    assert e.source.startswith("recorded gru T=1000")
    assert plan.estimate(CONFIG, 1000, records, "gpu").seconds is None  # no GPU record: no guess


def test_estimate_scales_by_the_work_per_step():
    records = plan.records_of(_results(CONFIG, [_session(0, 500, 100.0, "cpu"), _session(500, 1000, 10.0, "gpu")]))
    longer = CONFIG.replace(seq_len=2000, num_layers=2)
    assert plan.estimate(longer, 500, records, "gpu").seconds == pytest.approx(10.0 * 4)  # T x layers
    assert plan.estimate(CONFIG.replace(seq_len=100), 500, records, "gpu").seconds == pytest.approx(10.0)  # floor
    wider = CONFIG.replace(hidden_size=256, learning_rate=(1e-3, 3e-3))  # x4 width^2, x2 members
    e = plan.estimate(wider, 500, records, "cpu")
    assert e.seconds == pytest.approx(100.0 * 8) and e.source.startswith("scaled from gru T=1000")
    other = plan.estimate(CONFIG.replace(cell="lem"), 500, records, "cpu")
    assert other.seconds == pytest.approx(100.0) and "scaled from gru" in other.source


def test_plan_lines_count_remaining_steps_and_totals(tmp_path: Path):
    sweep = PRESETS["smoke"]["adding"]
    points = sweep.points()
    key, config = next(iter(points.items()))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(
        json.dumps(_results(config.replace(steps=400), [_session(0, 400, 40.0)]))
    )
    records = plan.find_records([tmp_path])
    lines = plan.plan_lines({key: (config, 5), PointKey("done", 1): (config, config.steps)}, records)
    assert f"{config.steps - 5} steps (from 5)" in lines[0] and "[recorded" in lines[0]
    assert "finished" in lines[1]
    assert lines[-1].startswith("in all") and "gpu - (+1 points without a record)" in lines[-1]


def test_tables_print_the_held_out_sets_own_memoryless_score():
    """Adding's held-out set of 500 sequences at T=1000 scores 0.1585 for the memoryless predictor, not 1/6."""
    from experiments.sweep_report import _memoryless_line

    line = _memoryless_line(Config(task="adding", eval_size=500), [1000])[0]
    assert "T=1000 0.1585" in line and "(MSE)" in line
    assert _memoryless_line(Config(task="copy", eval_size=8), [5]) == []  # copy says nothing: no line
