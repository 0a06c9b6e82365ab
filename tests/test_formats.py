"""On-disk format versions (`experiments.formats`) and errors that carry their flag as data (`flag_error`)."""

import pytest

from experiments import formats, io, schema
from experiments.config import Config, ConfigError, check_fields
from experiments.flags import _LearningRatesParser
from experiments.rules import check_integer, check_seconds, flag_error
from tests.helpers import ROOT

RESULTS = {
    "config": {"steps": 10, "learning_rate": 0.001},
    "steps_done": 10,
    "wall_time_s": 1.0,
    "seeds": [{"seed": 0, "final": {"loss": 0.1}, "solved": False, "solved_at_step": None, "diverged_at_step": None}],
}


def test_results_from_before_format_version_read_with_the_rate_filled_in(tmp_path):
    io.write_json(tmp_path / "results.json", RESULTS)
    read = schema.read_results(tmp_path / "results.json")
    assert read["format_version"] == formats.FORMAT_VERSION and read["learning_rates"] == [0.001]
    assert read["best_learning_rate"] == 0.001 and read["seeds"][0]["learning_rate"] == 0.001
    assert io.read_json(tmp_path / "results.json") == RESULTS  # read in memory, never rewritten


def test_a_newer_file_is_refused_in_one_line(tmp_path):
    io.write_json(tmp_path / "results.json", {**RESULTS, "format_version": formats.FORMAT_VERSION + 1})
    with pytest.raises(schema.DamagedError, match="written by a newer rnnlab") as e:
        schema.read_results(tmp_path / "results.json")
    assert "\n" not in str(e.value)
    with pytest.raises(formats.FormatError, match="newer rnnlab"):
        Config.from_dict({"format_version": 99, "cell": "gru"})


def test_config_json_carries_the_version_and_reads_back():
    saved = formats.stamp(Config(cell="gru").to_dict())
    assert next(iter(saved)) == "format_version" and Config.from_dict(saved) == Config(cell="gru")


def test_errors_carry_their_field_and_relabel_without_editing_text():
    e = flag_error("seq_len", "must be an integer in [2, 1000000]", "1")
    assert str(e) == "--seq_len=1: must be an integer in [2, 1000000]" and e.field == "seq_len"
    assert str(e.relabel("--seq_lens (T=1)")) == "--seq_lens (T=1): must be an integer in [2, 1000000]"
    with pytest.raises(ConfigError) as bad:  # the range comes from the field's metadata
        check_fields(Config(hidden_size=0))
    assert bad.value.field == "hidden_size" and str(bad.value) == "--hidden_size=0: must be an integer in [1, 65536]"


def test_one_range_check_per_kind_of_value_words_every_tool_alike():
    """Config fields, the conformance sizes and the benchmarks' own flags share `check_integer`/`check_seconds`."""
    assert check_integer("workers", 3, 1) == 3 and check_seconds("min_round_s", 0, 0, 3600) == 0
    cases = [
        (lambda: check_integer("steps", 0, 1, 10**9), "--steps=0: must be an integer in [1, 1000000000]"),
        (lambda: check_integer("workers", 0, 1), "--workers=0: must be an integer >= 1"),
        (lambda: check_integer("batch", True, 1), "--batch=True: must be an integer >= 1"),
        (
            lambda: check_seconds("slurm_timeout", 0, 0, 3600, low_open=True),
            "--slurm_timeout=0: must be a number of seconds in (0, 3600]",
        ),
        (
            lambda: check_seconds("min_round_s", float("nan"), 0, 3600),
            "--min_round_s=nan: must be a number of seconds in [0, 3600]",
        ),
    ]
    for check, message in cases:
        with pytest.raises(ConfigError) as e:
            check()
        assert str(e.value) == message and e.value.field == message[2:].split("=")[0]
    assert not (ROOT / "benchmarks" / "bounds.py").exists()


def test_learning_rate_parser_keeps_the_reason_whole():
    # the reason used to be cut out of the message at its first ": ", which a value can hold too
    with pytest.raises(ValueError) as e:
        _LearningRatesParser().parse("1e-3: x")
    assert str(e.value).startswith("must be a finite number > 0, or a comma-separated list")
