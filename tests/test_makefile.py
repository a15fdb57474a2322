"""The Makefile's set-up, as dry runs (`make -n`) in a copy: a fresh machine creates the virtual environment and
installs torch's CPU build before the package; a second run installs nothing; a changed pyproject.toml installs
again."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE_ENVIRONMENT = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "ARGS", "PYTHON", "VENV", "TORCH")
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def plan(folder: Path, target: str) -> list[str]:
    """The commands `make <target>` would run in `folder`."""
    # the defaults of a top-level make: under `make test ARGS=...` the parent's MAKEFLAGS and its command-line
    # variables (exported to the environment) would reach this make
    env = {key: value for key, value in os.environ.items() if key not in MAKE_ENVIRONMENT}
    completed = subprocess.run(
        ["make", "--no-print-directory", "-n", target], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return [line.strip() for line in completed.stdout.splitlines() if line and not line.startswith("echo ")]


def run_plan_as_if(folder: Path, commands: list[str]) -> None:
    """Leave what the set-up commands would leave: the venv's python and the install stamp."""
    (folder / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    (folder / ".venv" / "bin" / "python").touch()
    for command in commands:
        if command.startswith("touch "):
            (folder / command.split(" ", 1)[1]).touch()


@pytest.fixture
def checkout(tmp_path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_fresh_machine_installs_torch_first_then_the_package_with_the_target_extras(checkout):
    test_plan = plan(checkout, "test")
    assert test_plan[0] == "python3 -m venv .venv"
    torch = test_plan.index(".venv/bin/python -m pip install --quiet torch==2.13.0")
    package = test_plan.index('.venv/bin/python -m pip install --quiet -e ".[dev]"')
    assert torch < package < test_plan.index(".venv/bin/python -m pytest -q")
    demo_plan = plan(checkout, "demo")
    assert '.venv/bin/python -m pip install --quiet -e "."' in demo_plan  # the demo needs no extra
    assert demo_plan[-1] == ".venv/bin/multimodal-gpt demo"  # the package's entry point


def test_second_run_installs_nothing_until_pyproject_changes(checkout):
    run_plan_as_if(checkout, plan(checkout, "test"))
    assert plan(checkout, "test") == [".venv/bin/python -m pytest -q"]
    # the dev install serves the demo and the benchmarks too
    assert plan(checkout, "demo") == [".venv/bin/multimodal-gpt demo"]
    assert plan(checkout, "quality") == [".venv/bin/ruff check .", ".venv/bin/ruff format --check ."]
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"tqdm>=4.66",', '"tqdm>=4.66", "rich>=13",'))
    assert '.venv/bin/python -m pip install --quiet -e ".[dev]"' in plan(checkout, "test")


def test_ci_runs_make_test():
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if not line.startswith("#")]
    assert "make test" in commands
