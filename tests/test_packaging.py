"""The wheel holds every package of the source tree (an editable install would hide a gap), and
pyproject.toml declares what the sources import."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from itertools import chain
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_in_pyproject():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(tool["packages"]), tool["package-dir"]
    found = set()
    for name, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *rel.parts)))
    assert found == listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"


# ---------------------------------------------------------------------- dependencies
# Imported only inside ``try: ... except ImportError`` with a fallback, so not a requirement.
OPTIONAL_IMPORTS = {"psutil": "envs/config.py reads /proc/meminfo without it"}


def _requirements() -> dict[str, list[Requirement]]:
    """The declared requirements by canonical name: core dependencies and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared: dict[str, list[Requirement]] = {}
    for line in [*project["dependencies"], *chain(*project["optional-dependencies"].values())]:
        req = Requirement(line)
        declared.setdefault(canonicalize_name(req.name), []).append(req)
    return declared


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by the package's sources (anywhere in a file), with the files."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found: dict[str, set[str]] = {}
    for folder in set(dirs.values()):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in dirs:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    declared = _requirements()
    distributions = packages_distributions()  # module -> installed distributions
    missing = {}
    for module, files in _third_party_imports().items():
        if module in OPTIONAL_IMPORTS:
            continue
        # A module of an extra that is not installed here (ray) is named like its distribution.
        names = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if not names & declared.keys():
            missing[module] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_tqdm_is_declared_for_the_sb3_progress_bar_only():
    # tqdm is only SB3's progress bar: it belongs to the sb3 extra, not to every install.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert "tqdm" not in core
    assert "tqdm" in {canonicalize_name(Requirement(r).name)
                      for r in project["optional-dependencies"]["sb3"]}


def test_torch_range_admits_the_cpu_wheel_and_cuda_builds_of_2_13():
    (torch,) = _requirements()["torch"]
    for version in ("2.13.0", "2.13.0+cpu", "2.13.0+cu128", "2.13.1+cu126"):
        assert torch.specifier.contains(version), version
    for version in ("2.12.1", "2.14.0", "2.14.0+cpu"):
        assert not torch.specifier.contains(version), version


def test_make_setup_installs_the_pinned_cpu_torch_first():
    # An unpinned resolve would pull a CUDA build: the Makefile installs the exact version
    # before the package, and that version lies in the package's range (so pip keeps it).
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = re.findall(r"\$\(PIP\) install (.+)", recipe)
    package = next(i for i, line in enumerate(installs) if line.startswith("-e '."))
    assert "torch==2.13.0" in installs[:package], installs
    (torch,) = _requirements()["torch"]
    assert torch.specifier.contains("2.13.0")


# ---------------------------------------------------------------------- import weight
# Each check runs in a fresh interpreter: this test process has imported torch long ago.
HEAVY = ("torch", "transformers", "peft", "trl")


def _heavy_modules_after(code: str) -> list[str]:
    """The modules of :data:`HEAVY` that running ``code`` in a fresh interpreter imported."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_env_imports_no_torch():
    # The env side stays light: importing it and making the registered env load no model stack.
    code = ("import gymnasium, sandbox_rl.envs\n"
            "gymnasium.make('SelfEvolvingOasis-v0').close()")
    assert _heavy_modules_after(code) == []


@pytest.mark.parametrize("argv", [["--help"], ["train", "agents", "--help"], ["evolve", "--help"],
                                  ["evaluate", "--steps", "x"], ["train", "sb3", "--n-envs", "0"],
                                  # --resume is checked, and refused, before a trainer loads
                                  ["train", "agents", "--resume", "/nonexistent"],
                                  ["train", "llm-ppo", "--resume", "/nonexistent"],
                                  ["evolve", "--resume", "/nonexistent"]])
def test_cli_help_and_argument_errors_import_no_torch(argv):
    code = ("import contextlib, io\nfrom sandbox_rl.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")
    assert _heavy_modules_after(code) == []
