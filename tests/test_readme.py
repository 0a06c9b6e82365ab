"""The README and the docs/ pages: short README, example blocks that are the example files, relative links that
resolve, commands that name real entry points and flags, and the "Plug in a cell" commands run as written."""

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_module

from experiments import io
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
PAGES = {path.relative_to(ROOT): path.read_text() for path in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def block_after(marker: str, text: str = README) -> str:
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```\w*\n(.*?)```", text, re.S)
    assert match, f"no code block after <!-- {marker} -->"
    return match.group(1)


def test_readme_is_short():
    assert len(README.splitlines()) <= 300


def test_example_blocks_are_the_example_files():
    found = 0
    for page, text in PAGES.items():
        for name in re.findall(r"<!-- example:(\S+) -->", text):
            if name != "commands":
                assert block_after(f"example:{name}", text) == (ROOT / "examples" / name).read_text(), (page, name)
                found += 1
    assert found  # the README shows examples/my_cells.py


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to -."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_relative_links_resolve():
    bad = []
    for page, text in PAGES.items():
        prose = FENCE.sub("", text)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (ROOT / page).parent / path if path else ROOT / page
            if not file.exists():
                bad.append(f"{page}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", FENCE.sub("", file.read_text()), re.M)
                if anchor not in {slug(h) for h in headings}:
                    bad.append(f"{page}: {target} (no such heading)")
    assert not bad, "\n".join(bad)


def commands(text: str) -> list[str]:
    """The command lines of the page's bash blocks: continuations joined, comments dropped, `&&` split."""
    out = []
    for lang, body in FENCE.findall(text):
        if lang == "bash":
            for line in body.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].strip()
                if line and not line.startswith("#"):
                    out += [part.strip() for part in line.split("&&")]
    return out


def test_doc_commands_name_real_entry_points_and_flags():
    """Every `python -m X --flag...` in a bash block names a module that exists and flags it has (its
    --helpfull); every `bash script` exists. (The example commands run in the slow test below.)"""
    uses: dict[str, set[tuple[str, str]]] = {}
    for page, text in PAGES.items():
        for command in commands(text):
            args = shlex.split(command)
            if args[0] == "bash":
                assert (ROOT / args[1]).exists(), f"{page}: {command}"
            if "-m" not in args:
                continue
            module = args[args.index("-m") + 1]
            if module in ("venv", "pytest", "pip"):
                continue
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"{page}: {command}"
            for arg in args[args.index("-m") + 2 :]:
                if arg.startswith("--"):
                    uses.setdefault(module, set()).add((arg[2:].split("=")[0], f"{page}: {command}"))
    with ThreadPoolExecutor(2) as pool:
        helps = dict(zip(uses, pool.map(lambda m: run_module(m, "--helpfull").stdout, uses), strict=True))
    bad = []
    for module, flags in uses.items():
        known = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", helps[module], re.M))
        assert known, f"{module} --helpfull lists no flags"
        bad += [f"{where}: --{name}" for name, where in sorted(flags) if name not in known | {f"no{k}" for k in known}]
    assert not bad, "flags the entry point does not have:\n" + "\n".join(bad)


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
