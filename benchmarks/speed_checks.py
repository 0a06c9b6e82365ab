"""The flags of `benchmarks.speed`, as plain values, checked into `Options` before anything compiles: every
error is one line naming the flag (or, for a preset's own setting, --preset) and the values it allows."""

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from benchmarks.grid_slice import GRID_SLICES
from benchmarks.speed_presets import PRESETS, SECTIONS, Options, Setting, linear_config, seeds_config
from benchmarks.variants import check_variant_backend, parse_variant
from cells import CELLS as CELL_REGISTRY
from experiments import policy
from experiments.config import Config
from experiments.policy import PRECISIONS
from experiments.rules import ConfigError, check_integer, check_seconds, int_list, split_list
from experiments.validation import validate


def checked_options(values: Mapping[str, Any], given: Collection[str], backend: str) -> Options:
    """The preset `values["preset"]` with every flag of `values` (name -> value; None: not set) applied and
    checked, and every group's config validated (`check_options`); `given`: the flags the command line set;
    `backend`: JAX's default backend (variants and precisions some backends lack are refused)."""
    options = PRESETS[values["preset"]]
    changes: dict[str, Any] = {"use_torch": values["torch"], "num_seeds": values["num_seeds"]}
    if values["flax"] is not None:
        changes["flax"] = values["flax"]
    changes["torch_threads"] = check_integer("torch_threads", values["torch_threads"], 1)
    if values["settings"] is not None:
        changes["settings"] = tuple(Setting.parse(s) for s in split_list(values["settings"], "settings"))
        refuse_repeats("settings", values["settings"], changes["settings"])
    for name, allowed in (("cells", tuple(CELL_REGISTRY.names())), ("sections", SECTIONS)):
        if (value := values[name]) is not None:
            changes[name] = tuple(split_list(value, name))
            if bad := [c for c in changes[name] if c not in allowed]:
                raise ConfigError(f"--{name}: {', '.join(bad)} not among {', '.join(allowed)}")
    if values["matmul_precision"] not in PRECISIONS:
        raise ConfigError(f"--matmul_precision={values['matmul_precision']!r}: must be one of {', '.join(PRECISIONS)}")
    changes["matmul_precision"] = values["matmul_precision"]
    if values["linear_setting"] is not None:
        changes["linear_setting"] = Setting.parse(values["linear_setting"], "linear_setting", min_length=2)
    if values["linear_cells"] is not None:
        changes["linear_cells"] = tuple(split_list(values["linear_cells"], "linear_cells"))
        if bad := [c for c in changes["linear_cells"] if c not in CELL_REGISTRY.names()]:
            raise ConfigError(f"--linear_cells: {', '.join(bad)} not among {', '.join(CELL_REGISTRY.names())}")
    changes["baseline"] = values["baseline"]
    if values["grid_slice"] is not None:
        if values["grid_slice"] not in GRID_SLICES:
            raise ConfigError(f"--grid_slice={values['grid_slice']!r}: must be one of {', '.join(GRID_SLICES)}")
        changes["grid_slice"] = values["grid_slice"]
    if values["grid_workers"] is not None:
        changes["grid_workers"] = check_integer("grid_workers", values["grid_workers"], 1, 64)
    changes["profile_dir"] = values["profile_dir"]
    if values["seeds_setting"] is not None:
        changes["seeds_setting"] = Setting.parse(values["seeds_setting"], "seeds_setting", min_length=2)
    if values["seed_counts"] is not None:
        changes["seed_counts"] = tuple(int_list(values["seed_counts"], "seed_counts", 1, 1024))  # ASCII: not ²
    if values["variants"]:
        changes["variants"] = tuple(split_list(values["variants"], "variants"))
        parsed = [tuple(sorted(parse_variant(v).items())) for v in changes["variants"]]
        refuse_repeats("variants", values["variants"], parsed, changes["variants"])
        for v in changes["variants"]:
            check_variant_backend(v, backend)
    for name in ("rounds", "warmup"):
        if values[name] is not None:
            changes[name] = check_integer(name, values[name], 1)
    if values["min_round_s"] is not None:
        changes["min_round_s"] = check_seconds("min_round_s", values["min_round_s"], 0, 3600)
    check_integer("num_seeds", values["num_seeds"], 1, 1024)
    options = dataclasses.replace(options, **changes)
    check_options(options, given, backend)
    return options


def refuse_repeats(flag: str, text: str, parsed: Any, shown: Any = None) -> None:
    """ConfigError when two entries of a list flag mean the same (`4x24x8` and `04x24x8`): the same row twice."""
    shown = list(shown or parsed)
    for i, value in enumerate(parsed):
        if value in parsed[:i]:
            first = shown[list(parsed).index(value)]
            raise ConfigError(f"--{flag}={text!r}: {shown[i]} repeats {first}; give each once")


def check_options(options: Options, given: Collection[str], backend: str) -> None:
    """Validate the config of every group before timing any; an error names the flag that set it (`given`: the
    flags the command line set; a setting it did not set came from --preset)."""

    def flag(name: str) -> str:
        return name if name in given else "preset"

    checks = []
    if "speed" in options.sections:
        for s in options.settings:
            checks += [(flag("settings"), s, s.config(c).replace(num_seeds=options.num_seeds)) for c in options.cells]
    if "seeds" in options.sections:
        s, n = options.seeds_setting, max(options.seed_counts)
        cells = options.seeds_cells or options.cells
        checks += [(flag("seeds_setting"), s, seeds_config(c, s).replace(num_seeds=n)) for c in cells]
    if "profile" in options.sections:
        s, cell = options.seeds_setting, (options.seeds_cells or options.cells)[0]
        checks.append((flag("seeds_setting"), s, seeds_config(cell, s).replace(num_seeds=max(options.seed_counts))))
    if "linear" in options.sections:
        checks += [
            (flag("linear_setting"), options.linear_setting, linear_config(options, c)) for c in options.linear_cells
        ]
    for name, setting, config in checks:
        config = config.replace(matmul_precision=options.matmul_precision)
        if error := _precision_error(config, backend):
            raise ConfigError(error)
        try:
            validate(config)
        except ConfigError as e:
            raise ConfigError(f"--{name}: {setting} ({config.cell}): {e}") from None


def _precision_error(config: Config, backend: str) -> str:
    """The one-line refusal of --matmul_precision on this backend, or ""."""
    try:
        policy.matmul_precision(backend, config.matmul_precision)
    except ValueError as e:
        return str(e)
    return ""
