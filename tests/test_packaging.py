"""What a user installs and sees: the license, the typing marker, the metric modules and the `multimodal-gpt` command
in the wheel, that command installed in a fresh virtual environment running the demo's first stage, an import that
prints nothing, scripts that do not shadow libraries, and optional packages checked before a run does any work."""

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from transformers import TrainingArguments

from multimodal_gpt.training import DataArguments, ModelArguments, run
from multimodal_gpt.training.extras import check_optional_packages
from multimodal_gpt.training.metrics import METRIC_NAMES
from multimodal_gpt.training.model_card import CARD_MARKER

ROOT = Path(__file__).resolve().parents[1]
run_module = importlib.import_module("multimodal_gpt.training.run")  # the package exports the function `run` too


def test_license_file_is_the_declared_license():
    pyproject = (ROOT / "pyproject.toml").read_text().splitlines()
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def copy_source_tree(root: Path, destination: Path) -> None:
    """Copy a checkout without what `.gitignore` names (runs/, outputs/, the virtual environment...) or hidden files.

    A developer's checkout holds gigabytes of training runs under runs/: copying them for every test session filled
    the disk (pytest keeps the last three sessions' folders)."""
    ignored = [line.strip().rstrip("/") for line in (root / ".gitignore").read_text().splitlines()]
    patterns = [pattern for pattern in ignored if pattern and not pattern.startswith("#")]
    shutil.copytree(root, destination, ignore=shutil.ignore_patterns(".*", *patterns))


def test_the_build_copy_leaves_out_what_gitignore_names(tmp_path):
    root = tmp_path / "checkout"
    for name in ("multimodal_gpt/__init__.py", "runs/big/model.safetensors", "outputs/x.json", ".venv/bin/python"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    shutil.copy(ROOT / ".gitignore", root / ".gitignore")
    copy_source_tree(root, tmp_path / "copy")
    copied = {path.relative_to(tmp_path / "copy").as_posix() for path in (tmp_path / "copy").rglob("*")}
    assert copied == {"multimodal_gpt", "multimodal_gpt/__init__.py"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built as `pip wheel --no-deps --no-build-isolation .` does (offline)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"  # build from a copy: setuptools writes build/ and *.egg-info into the tree
    copy_source_tree(ROOT, source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder), "."],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = folder.glob("multimodal_gpt-*.whl")
    return built


def test_wheel_ships_the_typing_marker_the_license_the_metric_modules_and_the_command(wheel):
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert "multimodal_gpt/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    for name in METRIC_NAMES:
        assert f"multimodal_gpt/training/metrics/{name}/{name}.py" in names
    assert "multimodal_gpt/training/metrics/scores.py" in names
    assert {"multimodal_gpt/training/presets/small.json", "multimodal_gpt/model_cards/multimodal_gpt.md"} <= names
    assert {"multimodal_gpt/training/cli.py", "multimodal_gpt/benchmarks/peers.py"} <= names
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "multimodal-gpt = multimodal_gpt.training.cli:main" in archive.read(entry_points).decode()


@pytest.fixture(scope="module")
def fresh_environment(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed as a user would (`pip install <wheel>`, not editable).

    Its dependencies (torch, transformers...) are this environment's: installing them again would download
    gigabytes. They come through a `.pth` file naming this environment's site-packages, written after the install
    (so pip sees nothing installed, and `--no-deps` keeps it offline) and read after the new environment's own
    site-packages, so `import multimodal_gpt` finds the wheel's copy. Python runs the `.pth` files of its own site
    directories only, so an editable install of the package in this environment stays inactive there."""
    environment = tmp_path_factory.mktemp("environment") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True, capture_output=True, timeout=300)
    python = environment / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site_packages) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return environment


def run_installed(environment: Path, *command: str, cwd: Path) -> subprocess.CompletedProcess:
    """A command of the fresh environment, run from `cwd` (outside the checkout) without PYTHONPATH, so that only
    the installed package can be imported."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    executable = environment / "bin" / command[0]
    completed = subprocess.run(
        [str(executable), *command[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def test_installed_command_runs_the_demos_first_stage_outside_the_checkout(fresh_environment, tmp_path):
    located = run_installed(
        fresh_environment, "python", "-c", "import multimodal_gpt; print(multimodal_gpt.__file__)", cwd=tmp_path
    )
    assert Path(located.stdout.strip()).is_relative_to(fresh_environment)  # the wheel's copy, not the checkout
    assert "commands:" in run_installed(fresh_environment, "multimodal-gpt", "--help", cwd=tmp_path).stdout
    benchmarks = run_installed(fresh_environment, "multimodal-gpt", "benchmark", "--help", cwd=tmp_path).stdout
    assert all(f"\n  {name} " in benchmarks for name in ("data", "generation", "long_form_asr", "model", "peers"))

    run_installed(
        fresh_environment, "multimodal-gpt", "demo", "--stages", "pretrain", "--pretrain_steps", "2",
        "--batch_size", "4", "--vocab_size", "300", "--eval_samples", "4", "--output_dir", "demo", cwd=tmp_path,
    )  # fmt: skip
    pretrained = tmp_path / "demo" / "pretrain"
    assert {"model.safetensors", "config.json", "eval_results.json"} <= {path.name for path in pretrained.iterdir()}
    assert CARD_MARKER in (pretrained / "README.md").read_text()  # the card template, read from the package data


def test_import_prints_nothing():
    """No warning of any kind (Python warnings are errors here) and nothing on stdout or stderr: transformers' image
    processors without torchvision log a fallback warning unless the PIL backend class is used."""
    code = "import multimodal_gpt, multimodal_gpt.data, multimodal_gpt.training, multimodal_gpt.training.metrics"
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout == "" and completed.stderr == ""


def test_scripts_do_not_shadow_an_installed_package():
    # `python scripts/x.py` puts scripts/ first on sys.path: a scripts/evaluate.py would be imported as `evaluate`
    scripts = [path for path in (ROOT / "scripts").glob("*.py") if path.name != "__init__.py"]
    shadowing = [path.name for path in scripts if importlib.util.find_spec(path.stem)]
    assert shadowing == []
    completed = subprocess.run(
        [sys.executable, "scripts/demo.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


def run_arguments(tmp_path, **training) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    model_args = ModelArguments(preset="tiny", lora_r=training.pop("lora_r", 0))
    data_args = DataArguments(task="asr", dataset_name="synthetic", max_train_samples=8)
    return model_args, data_args, TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **training)


@pytest.fixture
def no_work(monkeypatch):
    """Loading the data is the first piece of work a run does: make it fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("the run loaded its data before checking its optional packages")

    monkeypatch.setattr(run_module, "load_task_data", refuse)


def test_report_to_tensorboard_without_tensorboard_fails_before_any_work(tmp_path, monkeypatch, no_work):
    for module in ("tensorboard", "tensorboardX"):  # a None entry makes the import (and find_spec) fail
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r'--report_to tensorboard: pip install "\.\[tensorboard\]"'):
        run(*run_arguments(tmp_path, report_to=["tensorboard"]))


def test_every_missing_package_is_named_at_once(tmp_path, monkeypatch, no_work):
    for module in ("tensorboard", "tensorboardX", "wandb", "peft"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError) as error:
        run(*run_arguments(tmp_path, report_to=["tensorboard", "wandb"], lora_r=4))
    message = str(error.value)
    assert '--report_to tensorboard: pip install ".[tensorboard]"' in message
    assert "--report_to wandb: pip install wandb" in message
    assert '--lora_r (LoRA, with peft): pip install ".[peft]"' in message


def test_lora_adapter_folder_without_peft_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    (tmp_path / "adapter_config.json").write_text("{}")
    _, _, training_args = run_arguments(tmp_path / "out")
    with pytest.raises(ImportError, match=r"--model_name_or_path .* \(a LoRA adapter\) \(LoRA, with peft\)"):
        check_optional_packages(ModelArguments(model_name_or_path=str(tmp_path)), training_args)


def test_nothing_optional_needed_passes(tmp_path, monkeypatch):
    for module in ("tensorboard", "tensorboardX", "peft"):
        monkeypatch.setitem(sys.modules, module, None)
    model_args, _, training_args = run_arguments(tmp_path, report_to="none")
    check_optional_packages(model_args, training_args)
