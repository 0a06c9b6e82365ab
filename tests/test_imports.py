"""Importing a module changes nothing in the process: what a module needs of the process it sets where it needs it."""

import logging
import os
import subprocess
import sys
import textwrap

from experiments import io
from experiments.checkpoint import Checkpoints, _quiet_closed_loop, _QuietOrbax
from tests.helpers import ROOT


def test_importing_the_modules_leaves_the_process_alone():
    script = textwrap.dedent("""
        import logging, os, sys
        calls = []
        umask = os.umask
        os.umask = lambda mask: calls.append(mask) or umask(mask)
        hook, filters = sys.unraisablehook, list(logging.getLogger("absl").filters)
        import experiments.io, experiments.checkpoint, experiments.train, benchmarks.tables  # noqa
        assert not calls, f"os.umask called at import: {calls}"
        assert sys.unraisablehook is hook, "sys.unraisablehook replaced at import"
        assert logging.getLogger("absl").filters == filters, "a logging filter added at import"
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_atomic_write_gives_the_permissions_of_the_umask_in_force(tmp_path):
    previous = os.umask(0o027)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


def test_checkpoints_quiet_orbax_once(tmp_path):
    for name in ("a", "b"):
        Checkpoints(tmp_path / name).close()
    assert sum(isinstance(f, _QuietOrbax) for f in logging.getLogger("absl").filters) == 1
    assert sys.unraisablehook is _quiet_closed_loop
