"""Every entry point parses its flags through `experiments.flags.run`: bad input is one line
`error: --flag...: ...` on stderr and exit code 2, before anything is compiled, measured or trained."""

import json

import pytest
from absl import flags

from experiments import memory_estimate as memory_module
from experiments.cell_checks import check_cell
from experiments.config import Config, ConfigError, check_out_file, check_workdir
from experiments.flags import _flag_error, int_list_flag, list_flag
from experiments.resume import check_resumable
from experiments.validation import validate, validate_cells

ENTRY_POINTS = [
    "experiments.train",
    "experiments.compare",
    "experiments.gradients",
    "benchmarks.tables",
    "benchmarks.speed",
    "benchmarks.memory",
    "experiments.conformance",
]


@pytest.fixture
def blocked(tmp_path):
    """A path under a regular file: nothing can be written there."""
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "sub"


# ------------------------------------------------------------------ in process: the shared checks


def test_absl_errors_are_reworded_to_start_with_the_flag():
    assert _flag_error(flags.UnrecognizedFlagError("stpes", "", ["steps"])) == (
        "--stpes: unknown flag; did you mean --steps? (see --helpfull)"
    )
    assert _flag_error(flags.IllegalFlagValueError("flag --steps=x: invalid literal")) == "--steps=x: invalid literal"
    assert _flag_error(flags.Error("Missing value for flag --steps")) == "--steps: missing value"


@pytest.mark.parametrize("value", ["", " ", "a,,b", "a,", "rnn,rnn", "rnn, rnn"])
def test_list_flags_refuse_empty_and_repeated_entries(value):
    with pytest.raises(ConfigError, match=r"^--cells="):
        list_flag(value, "cells")


@pytest.mark.parametrize("value", ["²", "٣", "10,x", "0", "1e3", "-5", "5.0", "99999999999", "１０"])
def test_integer_lists_take_ascii_digits_in_range(value):
    with pytest.raises(ConfigError, match=r"^--seq_lens=.*must be a comma-separated list of integers in \[1, "):
        int_list_flag(value, "seq_lens")
    assert int_list_flag(" 10, 20", "seq_lens") == [10, 20]


def test_workdirs_and_out_files(tmp_path):
    (tmp_path / "file").write_text("")
    for bad in ["", "   ", "a\0b", tmp_path / "file", tmp_path / "file" / "sub"]:
        with pytest.raises(ConfigError, match=r"^--results_dir="):
            check_workdir(bad, "results_dir")
    for bad in ["", "a\0b", tmp_path, tmp_path / "file" / "x.md", tmp_path / ("x" * 300)]:
        with pytest.raises(ConfigError, match=r"^--out="):
            check_out_file(bad)
    assert check_out_file(tmp_path / "new" / "x.md").parent.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "new"]  # no probe file left


@pytest.mark.parametrize("content", [b"", b"[]", b"null", b"3", b'{"seq_len": ', b"\xff\xfe", None])
def test_a_damaged_config_json_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "config.json"
    if content is None:
        path.mkdir()  # a folder where the file should be
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        check_resumable(Config(), tmp_path)
    message = str(e.value)
    kind = "a folder where the run keeps a file" if content is None else "damaged"
    assert message.startswith(f"--workdir={tmp_path}: {path} is {kind}") and "\n" not in message


def test_cells_errors_name_cells():
    with pytest.raises(ConfigError, match=r"^--cells=lstm,nope \(nope\): unknown cell 'nope'"):
        validate_cells(Config(), ["lstm", "nope"])
    with pytest.raises(ConfigError, match=r"^--cells=rnn,cells.rnn:Nope \(cells.rnn:Nope\): "):
        validate_cells(Config(), ["rnn", "cells.rnn:Nope"])
    with pytest.raises(ConfigError, match=r"^--cell_options: "):
        validate_cells(Config(cell_options="nope=1"), ["rnn"])


def test_conformance_refuses_sizes_it_cannot_test_with():
    for sizes in [dict(hidden_size=0), dict(hidden_size=10**6), dict(input_size=0), dict(batch=-1), dict(seq_len=1)]:
        with pytest.raises(ConfigError, match=f"^--{next(iter(sizes))}="):
            check_cell("rnn", **sizes)
    with pytest.raises(ConfigError, match=r"^--batch=1024 x --seq_len=1000 x \(--hidden_size=4096 \+ --input_size=3\)"):
        check_cell("lstm", hidden_size=4096, batch=1024, seq_len=1000)  # each in bounds, together 50 GB


@pytest.fixture
def ram_16gib(monkeypatch):
    monkeypatch.setattr(memory_module, "physical_memory_bytes", lambda: 16 * 2**30)


@pytest.mark.parametrize(
    "config, batch, message",
    [
        (Config(cell="lstm", hidden_size=65536, seq_len=2, batch_size=1), None, r"^--hidden_size=65536: parameters"),
        (Config(task="copy", seq_len=10**6, hidden_size=8, batch_size=1, remat=1000), None, r"^--eval_size=1000: "),
        (Config(cell="rnn", seq_len=100_000, eval_size=10, remat=316), 65536, r"^--batch=65536: gradient diagnostics"),
        (Config(cell="rnn", seq_len=10**6, eval_size=1, batch_size=1, remat=1000, diag_every=10), None, "--diag_every"),
        (Config(seq_len=200_000, hidden_size=2048, batch_size=512), None, r"GiB of activations.*add --remat=447"),
    ],
)
def test_memory_counts_parameters_optimizer_eval_set_and_diagnostics(ram_16gib, config, batch, message):
    with pytest.raises(ConfigError, match=message) as e:
        validate(config, diagnostics_batch=batch)
    assert "of this machine's 16.0 GiB" in str(e.value) and "\n" not in str(e.value)


def test_memory_estimate_by_part(ram_16gib):
    validate(Config(cell="lstm", seq_len=5000, hidden_size=128, batch_size=50, remat=70))  # README's acceptance case
    adam = Config(cell="lstm", hidden_size=16384, seq_len=2, batch_size=1, eval_size=1)

    def estimate(c):
        return memory_module.memory_estimate(c, *_model_and_task(c))

    n_params = 4 * 16384 * (16384 + 2 + 1) + 16384 + 1  # fused kernels, bias, readout
    assert estimate(adam)["parameters"] == pytest.approx(4 * 4 * n_params, rel=0.01)  # params, grads, mu, nu
    assert estimate(adam.replace(optimizer="sgd", momentum=0.0))["parameters"] == estimate(adam)["parameters"] // 2
    copy = Config(task="copy", seq_len=1000, hidden_size=8, eval_size=1000)
    assert estimate(copy)["eval"] >= 1000 * 1020 * 10 * 4  # one-hot inputs of the held-out set


def _model_and_task(config: Config):
    from cells import make_cell
    from experiments.model import SequenceModel
    from tasks import make_task

    task = make_task(config.task, config.seq_len)
    return SequenceModel(make_cell(config.cell, config.hidden_size), task.num_outputs, task.readout), task


# ------------------------------------------------------------------ subprocesses: the entry points


@pytest.mark.slow
def test_one_path_for_every_entry_point(one_line_errors, tmp_path):
    cases = [(m, ["--no_such_flag=1"], "--no_such_flag: unknown flag") for m in ENTRY_POINTS]
    cases += [(m, ["stray"], "unexpected positional arguments ['stray']") for m in ("experiments.train",)]
    cases += [
        ("experiments.train", ["--steps"], "--steps: missing value"),
        ("experiments.train", ["--flagfile=/no/such/file"], "--flagfile: Unable to open flagfile"),
        ("experiments.conformance", ["lstm", "--hidden_size=x"], "--hidden_size=x: "),
    ]
    one_line_errors(cases)


@pytest.mark.slow
def test_memory_benchmark_flags(one_line_errors, blocked, tmp_path):
    m = "benchmarks.memory"
    one_line_errors(
        [
            (m, ["--preset=nope"], "--preset=nope: value should be one of <full|quick>"),
            (m, ["--preset=quick", "--cells=nope"], "--cells=nope: unknown cell 'nope'"),
            (m, ["--preset=quick", "--cells=rnn,rnn"], "--cells='rnn,rnn': rnn given more than once"),
            (m, ["--preset=quick", "--remat=-5"], "--remat=-5: must be an integer in [0, 199]"),
            (m, ["--preset=quick", f"--out={blocked}/memory.md"], f"--out={blocked}/memory.md: not writable"),
            (m, ["--preset=quick", "stray"], "unexpected positional arguments ['stray']"),
            (m, ["--preset=quick", f"--out={tmp_path}"], f"--out={tmp_path}: is a folder"),
        ]
    )


@pytest.mark.slow
def test_conformance_sizes_are_validated_before_any_check(one_line_errors):
    m = "experiments.conformance"
    one_line_errors(
        [
            (m, ["lstm", "--hidden_size=0"], "--hidden_size=0: must be an integer in [1, 4096]"),
            (m, ["lstm", "--hidden_size=1000000"], "--hidden_size=1000000: must be an integer in [1, 4096]"),
            (m, ["lstm", "--input_size=0"], "--input_size=0: must be an integer in [1, 4096]"),
            (m, ["lstm", "--batch=0"], "--batch=0: must be an integer in [1, 1024]"),
            (m, ["lstm", "--seq_len=1"], "--seq_len=1: must be an integer in [2, 1000]"),
            (m, [], "no cell to check; usage: python -m experiments.conformance"),
            # options the cell refuses are a bad flag, not a failed check (a case found by adversarial testing)
            (m, ["lru", "--cell_options=r_min"], "--cell_options=r_min: malformed option 'r_min'"),
            (m, ["lru", "--cell_options=foo=1"], "--cell_options=foo=1: cell 'lru' has no option foo"),
            (m, ["lru", "--cell_options=r_min=2"], "--cell_options=r_min=2: cell 'lru' rejected options"),
        ]
    )


@pytest.mark.slow
def test_tables_flags(one_line_errors, blocked, tmp_path):
    m, out = "benchmarks.tables", f"--results_dir={tmp_path}"
    one_line_errors(
        [
            (m, ["--steps=0", out], "--steps=0: must be an integer in [1, "),
            (m, ["--steps=-5", out], "--steps=-5: must be an integer in [1, "),
            (m, ["--seq_lens=²", out], "--seq_lens='²': must be a comma-separated list of integers"),
            (m, ["--seq_lens=50,1", out], "--seq_lens (T=1): must be an integer in [2, "),
            (m, ["--table=gradients", "--steps=500", out], "--steps: does not apply to --table=gradients"),
            (m, ["--table=adding", "--task=copy", out], "--task=copy: its table is named after it; give --task or"),
            (m, ["--table=gradients", "--preset=long", out], "--table=gradients: --preset=long has no gradients table"),
            (m, ["--table=addition", out], "--table='addition': must be one of adding, associative_recall, copy, "),
            (m, ["--results_dir="], "--results_dir='': must name a folder"),
            (m, [f"--results_dir={blocked}"], f"--results_dir={blocked}/adding: not writable"),
        ]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # nothing but the blocker


@pytest.mark.slow
def test_tables_find_changed_settings_at_every_point_before_training_any(one_line_errors, tmp_path):
    """The last point of the smoke grid holds a run with another learning rate; the first is not trained."""
    last = tmp_path / "adding" / "gru_T12"
    last.mkdir(parents=True)
    saved = Config(cell="gru", task="adding", seq_len=12, learning_rate=0.5)
    (last / "config.json").write_text(json.dumps(saved.to_dict()))
    damaged = tmp_path / "damaged" / "adding" / "rnn_T12"
    damaged.mkdir(parents=True)
    (damaged / "config.json").write_text("[]")
    args = ["--table=adding", "--preset=smoke"]
    one_line_errors(
        [
            ("benchmarks.tables", [*args, f"--results_dir={tmp_path}"], f"--results_dir={last} holds a run with other"),
            ("benchmarks.tables", [*args, f"--results_dir={tmp_path / 'damaged'}"], f"--results_dir={damaged}: "),
        ]
    )
    assert [p.name for p in (tmp_path / "adding").iterdir()] == ["gru_T12"]  # rnn_T6 ... were not trained
    assert [p.name for p in last.iterdir()] == ["config.json"]


@pytest.mark.slow
def test_speed_flags_are_checked_before_timing(one_line_errors, blocked):
    m = "benchmarks.speed"
    one_line_errors(
        [
            (m, ["--preset=quick", "--min_round_s=inf"], "--min_round_s=inf: must be a number of seconds in [0, 3600]"),
            (m, ["--preset=quick", "--min_round_s=nan"], "--min_round_s=nan: must be a number of seconds"),
            (m, ["--preset=quick", f"--out={blocked}/speed.md"], f"--out={blocked}/speed.md: not writable"),
            (
                m,
                ["--preset=quick", "--settings=100000x40x8"],
                "--settings: B=100000 T=40 H=8 (rnn): --batch_size=100000",
            ),
            (m, ["--preset=quick", "--settings=4x40x100000"], "--settings: B=4 T=40 H=100000 (rnn): --hidden_size"),
            (m, ["--preset=quick", "--seeds_setting=4x30x0"], "--seeds_setting: '4x30x0' needs"),
            (
                m,
                ["--preset=quick", "--seed_counts=1,²"],
                "--seed_counts='1,²': must be a comma-separated list of integers",
            ),
        ]
    )


@pytest.mark.slow
def test_names_empty_workdirs_damaged_configs_and_memory(one_line_errors, tmp_path):
    for name, text in [("empty", ""), ("list", "[]"), ("invalid", "{not json")]:  # each case in-process too
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    (tmp_path / "compare" / "rnn_T100").mkdir(parents=True)
    (tmp_path / "compare" / "rnn_T100" / "config.json").write_text("[]")
    huge_lstm = ["--cell=lstm", "--hidden_size=65536", "--seq_len=2", "--batch_size=1", "--num_seeds=8"]
    one_line_errors(
        [
            ("experiments.compare", ["--cells=lstm,nope", f"--workdir={tmp_path / 'w'}"], "--cells=lstm,nope (nope): "),
            ("experiments.compare", ["--workdir="], "--workdir='': must name a folder"),
            ("experiments.train", ["--workdir="], "--workdir='': must name a folder"),
            ("experiments.gradients", ["--workdir="], "--workdir='': must name a folder"),
            ("experiments.train", [f"--workdir={tmp_path / 'empty'}"], f"--workdir={tmp_path / 'empty'}: "),
            ("experiments.train", [f"--workdir={tmp_path / 'invalid'}"], f"--workdir={tmp_path / 'invalid'}: "),
            (
                "experiments.compare",
                [f"--workdir={tmp_path / 'compare'}"],
                f"--workdir={tmp_path / 'compare'}/rnn_T100: ",
            ),
            ("experiments.gradients", [f"--from_workdirs={tmp_path / 'list'}"], "--from_workdirs: "),
            ("experiments.train", [*huge_lstm, f"--workdir={tmp_path / 'w'}"], "--hidden_size=65536: parameters"),
            ("experiments.gradients", ["--seq_len=100000", "--batch=65536", "--cells=rnn"], "--batch=65536: gradient"),
        ]
    )
    assert not (tmp_path / "w").exists()  # nothing is created for a run that is refused
