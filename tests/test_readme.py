"""The README's "Add your own cell" example is the file in examples/, and its commands work as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import io

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> str:
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```\w*\n(.*?)```", README, re.S)
    assert match, f"README has no code block after <!-- {marker} -->"
    return match.group(1)


def test_readme_example_is_the_example_file():
    assert block_after("example:my_cells.py") == (ROOT / "examples" / "my_cells.py").read_text()


@pytest.mark.slow
def test_readme_example_commands_run(tmp_path):
    commands = [line for line in block_after("example:commands").splitlines() if line.strip()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in commands:
        args = command.split()
        assert args[0] == "python"
        proc = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    results = io.read_json(tmp_path / "runs" / "mingru" / "results.json")
    assert results["seeds"][0]["final"]["ratio"] < 0.5  # it learns
    assert (tmp_path / "runs" / "mingru_vs_gru" / "comparison_curves_T50.png").stat().st_size > 0
