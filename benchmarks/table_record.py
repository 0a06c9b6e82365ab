"""What a table launch records, and the committed results it must not overwrite.

A launch records its command and sweep flags in `<results_dir>/<table>/sweep.json` (`write_record`):
`--status` and `--render_only` read the flags back from there (`record_folder`, `recorded_flags`) and
`--reproduce` retrains from it. The command is the one that trains the table: every flag but how it ran
(`NOT_RECORDED`), with `PYTHONPATH` in front when a plug-in was imported through it. A table folder holding
files git tracks is refused unless `--overwrite_tracked` says to write there (`check_untracked`).
"""

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.table_sweep import cells_flag, default_results_dir
from experiments import io
from experiments.config import ConfigError
from experiments.schema import DamagedError
from experiments.sweep import read_dict
from plugins import is_file_spec

RECORD = "sweep.json"  # in <results_dir>/<table>/: the flags of the launch, for --status, --render_only, --reproduce
# the flags that define a sweep (recorded at launch, read back by --status, --render_only and --reproduce)
SWEEP_FLAGS = (
    *("table", "preset", "task", "task_options", "cells", "seq_lens", "num_seeds", "steps", "hidden_size"),
    *("batch_size", "learning_rate", "optimizer"),
)
# how a command ran, not what it trains
NOT_RECORDED = ("render_only", "status", "plan", "overwrite_tracked", "reproduce")


def tracked_files(folder: Path) -> list[str]:
    """Files under `folder` that git tracks: committed results (none outside a git work tree, or without git)."""
    if not folder.is_dir():
        return []
    try:
        proc = subprocess.run(["git", "ls-files", "-z", "--", "."], cwd=folder, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    return [f for f in proc.stdout.decode(errors="replace").split("\0") if f] if proc.returncode == 0 else []


def check_untracked(out: Path, overwrite_tracked: bool, flag: str = "results_dir", given: Any = None) -> None:
    """Refuse to write into a folder holding committed files unless `overwrite_tracked` (--overwrite_tracked);
    the error names --`flag`=`given`."""
    if overwrite_tracked or not (tracked := tracked_files(out)):
        return
    raise ConfigError(
        f"--{flag}={given}: {out} holds {len(tracked)} files tracked by git (committed results, e.g. "
        f"{out / tracked[0]}); pass --overwrite_tracked to write there, or leave --{flag} out to write into a "
        "work folder"
    )


def training_command(argv: Sequence[str], task: str | None, cells: str | None) -> str:
    """The command of `argv` (its arguments) as the one that trains its table: every flag but how it ran
    (--render_only, --status, ...), with PYTHONPATH in front when a plug-in (`task`, `cells`) was imported
    through it."""
    args = [a for a in argv if _flag_name(a) not in NOT_RECORDED]
    command = "python -m benchmarks.tables " + " ".join(shlex.quote(a) for a in args)
    specs = [task or ""] + (list(cells_flag(cells)) if cells else [])
    dotted = [s for s in specs if ":" in s and not is_file_spec(s) and not _in_repo(s)]
    if dotted and os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    return command.rstrip()


def _in_repo(spec: str) -> bool:
    """Whether a package.module:Class plug-in lives in this repository (importable from its root)."""
    root = Path(__file__).resolve().parents[1]
    return (root / spec.partition(":")[0].split(".")[0]).exists()


def _flag_name(arg: str) -> str:
    name = arg.lstrip("-").partition("=")[0]
    return name[2:] if name.startswith("no") and name[2:] in NOT_RECORDED else name


def write_record(out: Path, command: str, given: Mapping[str, Any]) -> None:
    """`<out>/sweep.json`: the command of this launch and its sweep flags (`given`: those the command gave, name ->
    value), for --status, --render_only and --reproduce."""
    flags = {name: value for name, value in given.items() if name in SWEEP_FLAGS}
    io.write_json(out / RECORD, {"command": command, "flags": flags})


def record_folder(results_dir: str | None, preset: str, table: str, table_given: bool) -> Path | None:
    """The table folder whose sweep.json --status or --render_only reads: `--results_dir` itself when it is one,
    else `<results_dir>/<table>` (the one table under it that has a record, when no table is named)."""
    base = Path(results_dir) if results_dir else default_results_dir(preset)
    if (base / RECORD).is_file():
        return base
    if table_given or (base / table / RECORD).is_file():
        return base / table if (base / table / RECORD).is_file() else None
    found = sorted(p.parent for p in base.glob(f"*/{RECORD}")) if base.is_dir() else []
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigError(f"--table: --results_dir={base} holds several tables ({names}); name one")
    return found[0] if found else None


def recorded_flags(folder: Path, damaged: Mapping[str, str]) -> dict[str, Any]:
    """The sweep flags the launch recorded in `folder`'s sweep.json ({} when it has none); DamagedError (with
    `damaged`'s words before and after) when its "flags" is not an object."""
    record = read_dict(folder / RECORD) or {}
    flags = record.get("flags") or {}
    if not isinstance(flags, dict):
        raise DamagedError(folder / RECORD, f'"flags" must be an object, not {type(flags).__name__}', **damaged)
    return {name: value for name, value in flags.items() if name in SWEEP_FLAGS}
