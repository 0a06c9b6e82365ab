"""The versions of the files a run writes, and the one place a file of an older version is read in.

Each JSON document written carries "format_version" (`stamp`): config.json and results.json
(`experiments.trainer`), gradients.json (`experiments.gradient_report`). A reader hands what it read to
`config_fields`, `upgrade_results` or `record_learning_rate`: a file of this version comes back as it is;
one of an older version (committed results included) is converted in memory and never rewritten; one of
a newer version is refused in one line (`FormatError`, a ValueError: the readers' one-line paths report it).

Versions:
  1  no "format_version" (every file written before it). results.json may lack "learning_rates",
     "best_learning_rate" and each member's "learning_rate" (runs from before learning-rate sweeps: one
     rate, the config's); metrics.jsonl and diagnostics.jsonl records may lack "learning_rate", and a
     diagnostics.npz its "learning_rates" array; a checkpoint's optimizer state may lack "hyperparams"
     (from before `optax.inject_hyperparams`: `checkpoint_predates_hyperparams`).
  2  "format_version": 2 in config.json, results.json and gradients.json; every key above present.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments import io

FORMAT_VERSION = 2
KEY = "format_version"


class FormatError(ValueError):
    """A file written by a newer version of rnnlab than this one reads (or with a format_version that is no
    version at all)."""


def stamp(document: Mapping[str, Any]) -> dict[str, Any]:
    """`document` as written: "format_version" first, then its keys."""
    return {KEY: FORMAT_VERSION, **{k: v for k, v in document.items() if k != KEY}}


def version_of(document: Mapping[str, Any]) -> int:
    """The format version of a read document: its "format_version", 1 when it has none. FormatError when it is
    newer than FORMAT_VERSION or not a positive integer."""
    version = document.get(KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FormatError(f"format_version {version!r} is not a version (a positive integer)")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"written by a newer rnnlab (format_version {version}; this one reads up to {FORMAT_VERSION}); "
            "update rnnlab to read it"
        )
    return version


def config_fields(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The Config fields a config.json (or `Config.to_dict`) holds, in this version's form, without
    "format_version". FormatError for a newer file."""
    version_of(saved)
    return {k: v for k, v in saved.items() if k != KEY}


def upgrade_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """A results.json (already of the shape `experiments.schema` checks) in this version's form. Version 1:
    a run from before learning-rate sweeps trained at its config's one rate, so "learning_rates" is [rate],
    "best_learning_rate" that rate, and each member's "learning_rate" that rate. FormatError for a newer file."""
    if version_of(results) == FORMAT_VERSION:
        return dict(results)
    out = dict(results)
    rate = results.get("config", {}).get("learning_rate")
    if isinstance(rate, list | tuple):  # a sweep's results always had its rates; a list here is just the config's
        rate = rate[0] if len(rate) == 1 else None
    if rate is not None:
        out.setdefault("learning_rates", [rate])
        out.setdefault("best_learning_rate", rate)
        out["seeds"] = [{"learning_rate": rate, **member} for member in results["seeds"]]
    out[KEY] = FORMAT_VERSION
    return out


def record_learning_rate(record: Mapping[str, Any], default: float | None) -> float | None:
    """The learning rate of a metrics.jsonl or diagnostics.jsonl record's member: its "learning_rate"; `default`
    (the run's one rate) for a record from before learning-rate sweeps, which has none."""
    return record.get("learning_rate", default)


def npz_learning_rates(arrays: Mapping[str, Any]) -> Any:
    """The "learning_rates" row of a diagnostics.npz (its arrays by name); None in a file from before
    learning-rate sweeps, which trained one rate, the run's."""
    return arrays.get("learning_rates")


def checkpoint_predates_hyperparams(folder: Path) -> bool:
    """Whether the checkpoint in `folder` holds an optimizer state without "hyperparams" (from before the
    learning rates lived in the optimizer state; read from orbax's tree metadata, no restore). An unreadable
    one counts as current: restoring it reports what is wrong."""
    try:
        keys = io.read_json(folder / "default" / "_METADATA")["tree_metadata"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return any(k.startswith("('opt_state'") for k in keys) and not any("'hyperparams'" in k for k in keys)
