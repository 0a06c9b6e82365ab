"""Programs of an earlier revision of this repository, in this process, to time beside today's.

`baseline_programs(rev, configs)` exports `cells`, `experiments`, `tasks` and `plugins` of git
revision `rev` into a temporary folder (`git archive`), imports them in place of today's modules,
builds, compiles and warms up each config's train programs there, and puts today's modules back.
The compiled programs keep working afterwards (each function holds its own module's globals), so a
benchmark alternates them with today's in one process: a before/after ratio measured side by side.
"""

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from experiments.config import ConfigError

PACKAGES = ("cells", "experiments", "tasks", "plugins")
ROOT = Path(__file__).resolve().parents[1]


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


@contextlib.contextmanager
def revision(rev: str) -> Iterator[Path]:
    """Inside: `import experiments` (cells, tasks, plugins) loads revision `rev`'s files; after: today's again.

    ConfigError (naming --baseline) when `rev` is not a revision of this repository.
    """
    with tempfile.TemporaryDirectory(prefix="rnnlab-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", rev, *PACKAGES], capture_output=True
        )
        if archive.returncode != 0:
            message = archive.stderr.decode(errors="replace").strip().splitlines()
            raise ConfigError(f"--baseline={rev}: not a revision of this repository ({message[-1] if message else ''})")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        today = {name: module for name, module in sys.modules.items() if _ours(name)}
        for name in today:
            del sys.modules[name]
        sys.path.insert(0, tmp)
        try:
            yield Path(tmp)
        finally:
            sys.path.remove(tmp)
            for name in [n for n in sys.modules if _ours(n)]:
                del sys.modules[name]
            sys.modules.update(today)


def baseline_programs(
    rev: str, configs: dict[str, dict[str, Any]], warm: Callable[[Callable, Callable], Any]
) -> dict[str, tuple[Callable, Callable, Any]]:
    """For each name -> Config fields (as `Config.to_dict`): revision `rev`'s jitted init and train step
    over a leading seed axis, under its precision, and `warm(init, step)`'s result (the warmed-up
    state), computed while that revision is loaded (so every lazy import inside its code is its own).
    """
    out = {}
    with revision(rev):
        from experiments.config import Config  # the revision's

        try:  # where the revision keeps it: experiments.experiment, or (older revisions) experiments.train
            from experiments.experiment import Experiment
        except ImportError:
            from experiments.train import Experiment

        names = set(Config.__dataclass_fields__)
        for name, fields in configs.items():
            exp = Experiment(Config(**{k: v for k, v in fields.items() if k in names}))

            def precise(fn: Callable, exp: Any = exp) -> Callable:
                def run(*args: Any) -> Any:
                    with exp.precision():
                        return fn(*args)

                return run

            init, step = precise(exp.compiled_init()), precise(exp.compiled_step())
            out[name] = (init, step, warm(init, step))
    return out
