"""What a user installs and sees: the license, the typing marker and the metric modules in the wheel, an import that
prints nothing, scripts that do not shadow libraries, and optional packages checked before a run does any work."""

import importlib
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from transformers import TrainingArguments

from multimodal_gpt.training import DataArguments, ModelArguments, run
from multimodal_gpt.training.extras import check_optional_packages
from multimodal_gpt.training.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
run_module = importlib.import_module("multimodal_gpt.training.run")  # the package exports the function `run` too


def test_license_file_is_the_declared_license():
    pyproject = (ROOT / "pyproject.toml").read_text().splitlines()
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_wheel_ships_the_typing_marker_the_license_and_the_metric_modules(tmp_path):
    source = tmp_path / "source"  # build from a copy: setuptools writes build/ and *.egg-info into the tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("multimodal_gpt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "multimodal_gpt/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    for name in METRIC_NAMES:
        assert f"multimodal_gpt/training/metrics/{name}/{name}.py" in names
    assert "multimodal_gpt/training/metrics/scores.py" in names
    assert {"multimodal_gpt/training/presets/small.json", "multimodal_gpt/model_cards/multimodal_gpt.md"} <= names


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
