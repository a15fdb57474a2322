"""The entry points end to end, a few steps each on tiny configurations: every task's training script on the
built-in synthetic data and on the real files where present, evaluate_model.py on its output, and the demo."""

import json

import pytest

from multimodal_gpt.training.cli import demo_main, evaluate_main, train_main

FEW_STEPS = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
    "--max_eval_samples", "4", "--max_new_tokens", "4", "--do_train", "--do_eval", "--report_to", "none",
    "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "1",
]  # fmt: skip
METRICS = {"captioning": "eval_bleu4", "translation": "eval_bleu", "asr": "eval_wer", "mmt": "eval_bleu"}


def train_args(task: str, output_dir, *extra: str, new_model: bool = True) -> list[str]:
    """A few training steps of `task`; a new model from the tiny preset unless `new_model=False` (then `extra` names
    the checkpoint to continue)."""
    model = ["--preset", "tiny", "--vocab_size", "300"] if new_model else []
    return ["--task", task, "--output_dir", str(output_dir), *model, *FEW_STEPS, *extra]


def check_output_folder(output_dir, task: str) -> None:
    files = {path.name for path in output_dir.iterdir()}
    assert {"model.safetensors", "config.json", "processor_config.json", "loss_curve.png", "all_results.json"} <= files
    results = json.loads((output_dir / "all_results.json").read_text())
    assert "train_loss" in results and "eval_loss" in results
    if task in METRICS:
        assert METRICS[task] in results
        assert "predictions_validation.jsonl" in files


@pytest.mark.parametrize("task", ["pretrain", "captioning", "translation", "asr"])
def test_train_on_synthetic_data_then_evaluate(task, tmp_path):
    results = train_main(train_args(task, tmp_path / task, "--dataset_name", "synthetic", "--max_train_samples", "16"))
    assert results["train_samples"] == 16
    check_output_folder(tmp_path / task, task)
    if task in METRICS:
        output_file = tmp_path / "scores.json"
        metrics = evaluate_main(
            ["--model_name_or_path", str(tmp_path / task), "--task", task, "--dataset_name", "synthetic",
             "--eval_split_name", "test", "--max_eval_samples", "3", "--max_new_tokens", "3",
             "--output_file", str(output_file)]
        )  # fmt: skip
        assert metrics["test_samples"] == 3 and metrics["test_skipped_rows"] == 0
        assert METRICS[task].replace("eval_", "test_") in metrics
        assert json.loads(output_file.read_text()) == metrics
        assert len((tmp_path / "scores_predictions_test.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("task", "extra"),
    [("asr", []), ("translation", []), ("captioning", []), ("mmt", []), ("mmt", ["--text_only"]), ("pretrain", [])],
)
def test_train_on_real_data(task, extra, data_dir, tmp_path):
    output_dir = tmp_path / task
    arguments = train_args(task, output_dir, "--data_dir", str(data_dir), "--max_train_samples", "8", *extra)
    results = train_main(arguments)
    assert results["train_samples"] == 8
    check_output_folder(output_dir, task)


def test_finetuning_continues_from_a_checkpoint(tmp_path):
    synthetic = ["--dataset_name", "synthetic", "--max_train_samples", "8"]
    train_main(train_args("pretrain", tmp_path / "pretrain", *synthetic))
    continued = ["--model_name_or_path", str(tmp_path / "pretrain"), "--freeze_towers"]
    results = train_main(
        train_args("asr", tmp_path / "asr", *synthetic, *continued, new_model=False)
    )  # fmt: skip
    assert "eval_wer" in results


def test_demo_end_to_end(tmp_path, capsys):
    rows = demo_main(
        ["--output_dir", str(tmp_path), "--pretrain_steps", "2", "--captioning_steps", "2", "--translation_steps", "2",
         "--asr_steps", "2", "--eval_samples", "4", "--batch_size", "4", "--vocab_size", "300"]
    )  # fmt: skip
    assert [row["task"] for row in rows] == ["captioning", "translation", "asr"]
    printed = capsys.readouterr().out
    assert "| task | metric | trained | ignores its input |" in printed
    assert (tmp_path / "results.md").is_file()
    for task in ("captioning", "translation", "asr"):
        assert (tmp_path / task / "model.safetensors").is_file()
