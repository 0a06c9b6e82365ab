"""The sections of the `benchmarks.speed` report: each measures (`benchmark*`, `profile_section`) and renders
its Markdown table (`*_section`); `markdown` joins them with the machine, versions, date and command.

- speed: for each setting and cell, ours against flax's cells, PyTorch and our `--variants` (`benchmark`).
- seeds: for each cell and each N of `--seed_counts`, on `--seeds_setting` (default: the main job's,
  `experiments.compare.DEFAULTS`: adding, T=100, hidden 64, batch 50, Adam 1e-3, clip 1), `vmapped` trains
  seeds 0..N-1 in one program exactly as `experiments.train` does (`Experiment.compiled_step()`: vmap over
  a leading seed axis of N, in chunks); `sequential` trains the same N seeds as N single-seed runs of that
  path (the same jitted program, seed axis 1), one step of each seed in turn. Both are timed in alternating
  rounds; the table gives seed-steps/s = N / (median seconds per step of all N seeds) of each and
  `vmapped/sequential`: above 1 means vmapping is faster.
- linear: the linear-recurrence cells' step on `--linear_setting`, beside `--baseline`'s revision.
- profile: XLA's cost and memory analysis of one compiled vmapped step.
- grid: `benchmarks.grid_slice`.
"""

import datetime
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from benchmarks.contenders import (
    FLAX_CELLS,
    TORCH_CELLS,
    FlaxRNNModel,
    JaxContender,
    TorchContender,
    WarmContender,
    import_torch,
    torch_device,
    train_programs,
)
from benchmarks.speed_presets import Options, Setting, linear_config, seeds_config
from benchmarks.timing import Group, SeedsGroup, time_contenders, timing_note
from benchmarks.variants import variant_programs
from experiments.compare import DEFAULTS as MAIN_JOB
from experiments.experiment import Experiment
from experiments.report import fmt, markdown_table
from experiments.validation import validate


def _quiet(line: str) -> None:
    """The default `log`: say nothing."""


# ----------------------------------------------------------------------------- speed: ours vs flax vs torch


def make_contenders(options: Options, setting: Setting, cell: str, torch: Any) -> list[Any]:
    """ours, flax's cell(s), torch (if given) and our variants, for one (setting, cell); ours first."""
    config = setting.config(cell).replace(matmul_precision=options.matmul_precision)
    parts = validate(config)
    seeds = jnp.arange(options.num_seeds)[None]
    contenders: list[Any] = [JaxContender("ours", train_programs(Experiment(config, parts)), seeds)]
    for flax_cell in FLAX_CELLS.get(cell, ()) if options.flax else ():
        exp = Experiment(config)
        exp.model = FlaxRNNModel(flax_cell, setting.hidden_size, exp.task.num_outputs)
        contenders.append(JaxContender(f"flax:{flax_cell}", train_programs(exp), seeds))
    if torch is not None and cell in TORCH_CELLS:
        device = torch_device(torch)
        contenders.append(TorchContender(torch, cell, setting.hidden_size, config, options.torch_threads, device))
    for variant in options.variants:
        contenders.append(JaxContender(f"ours+{variant}", variant_programs(config, variant), seeds))
    return contenders


def benchmark(options: Options, log: Callable[[str], None] = _quiet) -> list[Group]:
    """Time every (setting, cell) group in turn: build, compile and warm up its contenders, then alternate."""
    torch = import_torch() if options.use_torch else None
    groups = []
    for setting in options.settings:
        for cell in options.cells:
            t0 = time.perf_counter()
            contenders = make_contenders(options, setting, cell, torch)
            n, ms, spread = time_contenders(contenders, options.rounds, options.warmup, options.min_round_s)
            del contenders
            groups.append(Group(setting, cell, n, ms, spread, options.num_seeds))
            timings = ", ".join(f"{name} {v:.4g} ms" for name, v in ms.items())
            log(f"{setting} {cell}: {timings} ({n} steps/round, {time.perf_counter() - t0:.0f}s with compiling)")
    return groups


def speed_section(options: Options, groups: list[Group], torch: Any) -> list[str]:
    """The speed table (ours vs flax vs torch) and, with `--variants`, the variants table."""
    has_torch = any("torch" in g.ms for g in groups)
    header = ["setting", "cell", "flax cell", "ours ms/step", "flax ms/step", "flax/ours", "ours GFLOP/s"]
    header += ["torch ms/step", "torch/ours"] if has_torch else []
    rows = []
    for g in groups:
        ours = g.ms["ours"]
        for flax_cell in FLAX_CELLS.get(g.cell, ("-",)) if options.flax else ("-",):
            other, torch_ms = g.ms.get(f"flax:{flax_cell}", math.nan), g.ms.get("torch", math.nan)
            row = [g.setting, g.cell, flax_cell, *map(fmt, (ours, other, other / ours, g.gflops))]
            rows.append(row + ([fmt(torch_ms), fmt(torch_ms / ours)] if has_torch else []))
    title = "## Training step speed: ours vs flax nn.RNN" + (" vs PyTorch" if has_torch else "")
    out = [title, "", markdown_table(header, rows), ""]
    if options.variants:
        header = ["setting", "cell", "variant", "variant ms/step", "ours ms/step", "ours/variant"]
        header += ["torch/variant"] if has_torch else []
        rows = []
        for g in groups:
            for v in options.variants:
                ms, ours = g.ms[f"ours+{v}"], g.ms["ours"]
                row = [g.setting, g.cell, v, fmt(ms), fmt(ours), fmt(ours / ms)]
                rows.append(row + ([fmt(g.ms.get("torch", math.nan) / ms)] if has_torch else []))
        out += ["### Variants of our model (same rounds as ours)", "", markdown_table(header, rows), ""]
        out += ["ours/variant > 1: the variant is faster than the project's model.", ""]
    out += [
        timing_note(options, groups),
        "Ratios are other / ours: above 1 means ours is faster. "
        "GFLOP/s: matmul FLOPs 3 x 2 B T (G H (I + H) + H O), I = 10, O = 9, G = 1 (rnn), 3 (gru), 4 (lstm).",
        "Copy task with seq_len = T - 20; adam, lr 1e-3, gradient clipping at norm 1.",
    ]
    if torch is None:
        out.append(
            "torch column skipped: torch is not installed." if options.use_torch else "torch column skipped: --notorch."
        )
    return out


# ----------------------------------------------------------------------------- seeds: vmapped vs sequential


def benchmark_seeds(options: Options, log: Callable[[str], None] = _quiet, torch: Any = None) -> list[SeedsGroup]:
    """For each cell and N in `options.seed_counts`: N seeds in one vmapped program vs one after another
    (ours, and PyTorch's N models one after another when `torch` is given), and the N seeds vmapped
    with each of `options.variants`' execution flags."""
    s = options.seeds_setting
    groups = []
    for cell in options.seeds_cells or options.cells:
        config = seeds_config(cell, s).replace(matmul_precision=options.matmul_precision)
        programs = train_programs(Experiment(config, validate(config)))  # shared: compiled once per seed count
        variants = {v: variant_programs(config, v) for v in options.variants}
        for num_seeds in options.seed_counts:
            t0, seeds = time.perf_counter(), jnp.arange(num_seeds)
            contenders = [
                JaxContender("vmapped", programs, seeds[None]),
                JaxContender("sequential", programs, seeds[:, None]),
                *(JaxContender(f"vmapped+{v}", variant, seeds[None]) for v, variant in variants.items()),
            ]
            if torch is not None:
                device = torch_device(torch)
                contenders.append(
                    TorchContender(
                        torch, cell, s.hidden_size, config, options.torch_threads, device, num_seeds, name="torch"
                    )
                )
            n, ms, spread = time_contenders(contenders, options.rounds, options.warmup, options.min_round_s)
            groups.append(SeedsGroup(cell, num_seeds, n, ms, spread))
            timings = ", ".join(f"{name} {v:.4g} ms" for name, v in ms.items())
            log(f"seeds {cell} N={num_seeds}: {timings} per step of all seeds ({time.perf_counter() - t0:.0f}s)")
    return groups


def seeds_section(options: Options, groups: list[SeedsGroup]) -> list[str]:
    """The seeds table: seed-steps/s vmapped, sequential (and PyTorch's), and the ratios."""
    has_torch = any("torch" in g.ms for g in groups)
    header = ["cell", "seeds", "vmapped seed-steps/s", "x one seed", "sequential seed-steps/s", "vmapped/sequential"]
    header += ["torch sequential seed-steps/s", "vmapped/torch"] if has_torch else []
    header += [f"vmapped+{v} seed-steps/s" for v in options.variants]
    rows = []
    one_seed = {g.cell: 1e3 / g.ms["vmapped"] for g in groups if g.num_seeds == 1}
    for g in groups:
        rate = {name: g.num_seeds * 1e3 / ms for name, ms in g.ms.items()}
        gain = fmt(rate["vmapped"] / one_seed[g.cell]) if g.cell in one_seed else "-"
        row = [g.cell, g.num_seeds, fmt(rate["vmapped"]), gain, fmt(rate["sequential"])]
        row += [fmt(rate["vmapped"] / rate["sequential"])]
        row += [fmt(rate["torch"]), fmt(rate["vmapped"] / rate["torch"])] if has_torch else []
        rows.append(row + [fmt(rate[f"vmapped+{v}"]) for v in options.variants])
    return [
        "## Seeds: N seeds vmapped in one program vs the same seeds one after another",
        "",
        markdown_table(header, rows),
        "",
        f"{MAIN_JOB.task} task, {options.seeds_setting}, {MAIN_JOB.optimizer} lr {MAIN_JOB.learning_rate}, clipping "
        f"at norm {MAIN_JOB.clip_norm} (experiments.compare's defaults; B, T, H from --seeds_setting).",
        "vmapped: seeds 0..N-1 in one `Experiment.compiled_step()` over a seed axis of N, as experiments.train "
        "runs them; sequential: the same N seeds as N single-seed runs of that path, one step of each in turn.",
        "seed-steps/s = N / median seconds per step of all N seeds; vmapped/sequential above 1 means vmap is faster; "
        "x one seed: vmapped seed-steps/s over the N=1 row's; torch sequential: N PyTorch models (cuDNN on a GPU) "
        "trained one after another, one step of each in turn."
        + (" vmapped+V: the same vmapped seeds with variant V's execution flags." if options.variants else ""),
        timing_note(options, groups),
    ]


# ----------------------------------------------------------------------------- linear recurrences, before/after


def benchmark_linear(options: Options, log: Callable[[str], None] = _quiet) -> list[Group]:
    """The linear-recurrence cells' train step on `linear_setting` (adding): today's default execution, its
    `--variants`, and, with `--baseline=REV`, revision REV's default execution, alternated in the same rounds."""
    from benchmarks.baseline import baseline_programs

    seeds = jnp.arange(options.num_seeds)[None]
    before = {}
    if options.baseline:
        configs = {
            c: linear_config(options, c).replace(num_seeds=options.num_seeds).to_dict() for c in options.linear_cells
        }

        def warm(init: Callable, step: Callable) -> list[Any]:
            return [jax.block_until_ready(step(init(row))) for row in seeds]

        before = baseline_programs(options.baseline, configs, warm)
    groups = []
    for cell in options.linear_cells:
        t0, config = time.perf_counter(), linear_config(options, cell).replace(num_seeds=options.num_seeds)
        contenders: list[Any] = [JaxContender("ours", train_programs(Experiment(config, validate(config))), seeds)]
        if cell in before:
            contenders.append(WarmContender("baseline", before[cell][1], before[cell][2]))
        contenders += [JaxContender(f"ours+{v}", variant_programs(config, v), seeds) for v in options.variants]
        n, ms, spread = time_contenders(contenders, options.rounds, options.warmup, options.min_round_s)
        groups.append(Group(options.linear_setting, cell, n, ms, spread, options.num_seeds))
        timings = ", ".join(f"{name} {v:.4g} ms" for name, v in ms.items())
        log(f"linear {cell}: {timings} ({time.perf_counter() - t0:.0f}s)")
    return groups


def linear_section(options: Options, groups: list[Group]) -> list[str]:
    """The linear-recurrence table: ms/step of today's code, the baseline revision's and the variants."""
    has_baseline = any("baseline" in g.ms for g in groups)
    header = ["cell", "ours ms/step"] + (["baseline ms/step", "baseline/ours"] if has_baseline else [])
    header += [f"ours+{v} ms/step" for v in options.variants]
    rows = []
    for g in groups:
        row = [g.cell, fmt(g.ms["ours"])]
        if has_baseline:
            row += [fmt(g.ms.get("baseline", math.nan)), fmt(g.ms.get("baseline", math.nan) / g.ms["ours"])]
        rows.append(row + [fmt(g.ms[f"ours+{v}"]) for v in options.variants])
    s = options.linear_setting
    return [
        "## Linear-recurrence cells: training step, today's default execution"
        + (f" vs revision {options.baseline}" if has_baseline else ""),
        "",
        markdown_table(header, rows),
        "",
        f"{MAIN_JOB.task} task, {s} (T = seq_len), {MAIN_JOB.optimizer} lr {MAIN_JOB.learning_rate}, clipping at norm "
        f"{MAIN_JOB.clip_norm}, {options.num_seeds} seed(s), one layer; each column the execution its code picks on "
        "this backend (`--sequence_path=auto`), ours+V: today's code with variant V's flags.",
        "baseline/ours above 1: today's code is faster than the baseline revision's, compiled and timed in the "
        "same process, in alternating rounds (benchmarks/baseline.py).",
        timing_note(options, groups),
    ]


# ----------------------------------------------------------------------------- profile of one vmapped step


PROFILE_COSTS = ("flops", "bytes accessed", "transcendentals", "optimal_seconds", "utilization")


def profile_section(options: Options, log: Callable[[str], None] = _quiet) -> list[str]:
    """XLA's cost and memory analysis of one compiled vmapped step (the first seeds cell, the largest seed
    count, `seeds_setting`); with `profile_dir`, a `jax.profiler` trace of 3 steps there (TensorBoard or
    Perfetto read it)."""
    s, cell, n = options.seeds_setting, (options.seeds_cells or options.cells)[0], max(options.seed_counts)
    config = seeds_config(cell, s).replace(matmul_precision=options.matmul_precision, num_seeds=n)
    exp = Experiment(config, validate(config))
    init, _ = train_programs(exp)
    state = init(jnp.arange(n))
    with exp.precision():
        compiled = exp.compiled_step().lower(state).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    memory = compiled.memory_analysis()
    state = jax.block_until_ready(compiled(state))
    t0 = time.perf_counter()
    state = jax.block_until_ready(compiled(state))
    step_s = time.perf_counter() - t0
    rows = [[k, fmt(float(v))] for k, v in sorted((cost or {}).items()) if k in PROFILE_COSTS]
    for name in (
        "temp_size_in_bytes",
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "generated_code_size_in_bytes",
    ):
        if memory is not None and hasattr(memory, name):
            rows.append([name, fmt(float(getattr(memory, name)))])
    rows.append(["measured seconds per step (one step)", fmt(step_s)])
    flops = float((cost or {}).get("flops", math.nan))
    rows.append(["flops / measured seconds", fmt(flops / step_s)])
    out = [
        f"## Profile: one vmapped step of {n} {cell} seeds, {MAIN_JOB.task} {s}",
        "",
        markdown_table(["quantity", "value"], rows),
        "",
        "XLA's `cost_analysis()` and `memory_analysis()` of the compiled `Experiment.compiled_step()` (as "
        "experiments.train runs it); flops counts every HLO op XLA costs, not only matmuls.",
    ]
    if options.profile_dir:
        with jax.profiler.trace(options.profile_dir):
            for _ in range(3):
                state = compiled(state)
            jax.block_until_ready(state)
        out.append(
            f"A jax.profiler trace of 3 steps is in `{options.profile_dir}` (TensorBoard's profile plugin or "
            "Perfetto read its .trace.json.gz / .xplane.pb)."
        )
    log(f"profile {cell} N={n}: {step_s * 1e3:.4g} ms per step, {flops:.3g} flops")
    return out


# ----------------------------------------------------------------------------- report


def markdown(
    options: Options,
    groups: list[Group],
    seeds: list[SeedsGroup],
    torch: Any,
    command: str = "",
    extra: tuple[list[str], ...] = (),
) -> str:
    """The Markdown report: the speed table (when `groups`), the seeds table (when `seeds`), then `extra`'s
    sections (linear, grid, profile)."""
    out = speed_section(options, groups, torch) + [""] if groups else []
    out += seeds_section(options, seeds) + [""] if seeds else []
    for section in extra:
        out += section + [""]
    device = jax.devices()[0]
    versions = f"{device.platform} ({device.device_kind}); jax {jax.__version__}, flax {flax.__version__}"
    versions += f", optax {optax.__version__}"
    if torch is not None and torch_device(torch) == "cuda":
        versions += f", torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    elif torch is not None:
        policy = os.environ.get("OMP_WAIT_POLICY", "default")
        versions += f", torch {torch.__version__} ({options.torch_threads} threads, OMP_WAIT_POLICY {policy})"
    versions += f"; matmul precision {options.matmul_precision}"
    if torch is not None and torch_device(torch) == "cuda":
        versions += f" (PyTorch: TF32 {'on' if options.matmul_precision == 'default' else 'off'} in cuBLAS and cuDNN)"
    out.append(
        f"{versions}; Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{datetime.date.today().isoformat()}."
    )
    if command:
        out.append(f"Command: `{command}`")
    return "\n".join(out) + "\n"
