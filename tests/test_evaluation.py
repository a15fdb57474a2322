"""Generation-based evaluation the `Seq2SeqTrainer` way, for this decoder-only model: a `compute_metrics` written for
`Seq2SeqTrainer` receives the generated ids (prompt stripped) and the labels; `predict()` generates one row per row;
multi-reference captioning is scored against every reference; a stream evaluates as its prepared split; and through
`multimodal-gpt train`: the Seq2SeqTrainingArguments flags, periodic evaluation (generation or loss only), an
`--eval_strategy` that trains without `--do_train`, and `--do_predict` alone."""

import importlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import GenerationConfig, Seq2SeqTrainingArguments

from multimodal_gpt.data.collators import CaptioningCollator
from multimodal_gpt.training import MultimodalTrainer
from multimodal_gpt.training.cli import train_main
from multimodal_gpt.training.metrics import compute_metrics_for_task
from tests.tiny_models import tiny_processor_and_model

NEW_TOKENS = 3
CAPTIONS = [["a red square", "red", "the red one"], ["a green square"], ["a blue square", "blue"], ["a grey square"]]
SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time")


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def rows() -> Dataset:
    """Five captioning rows, the third a corrupt image (skipped by generation and the loss), several with more than
    one reference."""
    images = [png((200, 30, 30)), png((30, 200, 30)), b"not an image", png((30, 30, 200)), png((90, 90, 90))]
    captions = [CAPTIONS[0], CAPTIONS[1], ["a broken square"], CAPTIONS[2], CAPTIONS[3]]
    return Dataset.from_dict({"image": images, "captions": captions})


def captioning_trainer(tmp_path: Path, compute_metrics=None, **arguments) -> MultimodalTrainer:
    processor, model = tiny_processor_and_model(vision="vit", audio=None)
    processor.tokenizer.padding_side = "left"
    settings = dict(
        generation_max_length=NEW_TOKENS, per_device_eval_batch_size=2, predict_with_generate=True, use_cpu=True
    )
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), report_to=[], remove_unused_columns=False, **(settings | arguments)
    )
    return MultimodalTrainer(
        model=model,
        args=args,
        data_collator=CaptioningCollator(processor),
        processing_class=processor,
        generation_collator=CaptioningCollator(processor, for_generation=True),
        compute_metrics=compute_metrics,
    )


def generated_alone(trainer: MultimodalTrainer, row: dict) -> list[int]:
    """What `generate()` makes of one row on its own, the prompt stripped."""
    batch = dict(trainer.generation_collator([row]))
    for key in ("references", "row_indices", "skipped_rows"):
        batch.pop(key)
    tokenizer = trainer.processing_class.tokenizer
    with torch.no_grad():
        generated = trainer.model.generate(
            **batch,
            max_new_tokens=NEW_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return generated[0, batch["input_ids"].shape[1] :].tolist()


def without_speed(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if not key.endswith(SPEED_METRICS)}


def test_compute_metrics_written_for_seq2seq_trainer_receives_generated_ids_and_labels(rows, tmp_path):
    seen = {}

    def compute_metrics(eval_prediction):  # as the Transformers examples write it for Seq2SeqTrainer
        predictions, labels = eval_prediction
        predictions = np.where(predictions != -100, predictions, tokenizer.pad_token_id)
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        seen["predictions"] = [text.strip() for text in tokenizer.batch_decode(predictions, skip_special_tokens=True)]
        seen["labels"] = [text.strip() for text in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        seen["references"] = eval_prediction.references
        return {"exact_match": float(np.mean([p == label for p, label in zip(seen["predictions"], seen["labels"])]))}

    trainer = captioning_trainer(tmp_path, compute_metrics)
    tokenizer = trainer.processing_class.tokenizer
    metrics = trainer.evaluate(rows)

    usable = [0, 1, 3, 4]
    expected = [tokenizer.decode(generated_alone(trainer, rows[i]), skip_special_tokens=True).strip() for i in usable]
    assert seen["predictions"] == expected  # the new tokens only: no prompt, no media placeholder tokens
    assert seen["labels"] == [rows[i]["captions"][0] for i in usable]  # the first reference
    assert seen["references"] == [rows[i]["captions"] for i in usable]  # and every reference, for multi-reference
    assert metrics["eval_exact_match"] == 0.0 and "eval_loss" in metrics
    assert (metrics["eval_samples"], metrics["eval_skipped_rows"]) == (4, 1)
    records = trainer.last_predictions["eval"]
    assert [record.index for record in records] == [0, 1, 2, 3, 4]
    assert [records[i].prediction for i in usable] == expected
    assert "Could not decode image" in records[2].skipped and records[2].prediction is None


def test_predict_generates_one_row_per_row_and_scores_every_reference(rows, tmp_path):
    trainer = captioning_trainer(tmp_path)
    output = trainer.predict(rows)
    tokenizer = trainer.processing_class.tokenizer

    assert output.predictions.shape[0] == len(rows)
    assert (output.predictions[2] == -100).all() and (output.label_ids[2] == -100).all()  # the corrupt row
    for index in (0, 1, 3, 4):
        tokens = [token for token in output.predictions[index].tolist() if token != -100]
        assert tokens[: len(generated_alone(trainer, rows[index]))] == generated_alone(trainer, rows[index])
    texts = [record.prediction for record in trainer.last_predictions["test"]]
    predictions = [texts[i] for i in (0, 1, 3, 4)]
    references = [rows[i]["captions"] for i in (0, 1, 3, 4)]
    expected = compute_metrics_for_task("captioning", predictions, references)
    assert output.metrics["test_bleu4"] == pytest.approx(expected["bleu4"])
    assert output.metrics["test_cider"] == pytest.approx(expected["cider"])
    assert (output.metrics["test_samples"], output.metrics["test_skipped_rows"]) == (4, 1)
    assert texts[0] == tokenizer.decode(generated_alone(trainer, rows[0]), skip_special_tokens=True).strip()


def test_a_stream_evaluates_as_its_prepared_split(rows, tmp_path):
    trainer = captioning_trainer(tmp_path)
    prepared = without_speed(trainer.evaluate(rows))
    prepared_records = trainer.last_predictions["eval"]
    streamed = without_speed(trainer.evaluate(rows.to_iterable_dataset()))
    assert streamed == pytest.approx(prepared)
    assert trainer.last_predictions["eval"] == prepared_records


def test_predict_with_generate_false_is_the_trainers_loss_only_evaluation(rows, tmp_path):
    trainer = captioning_trainer(tmp_path, predict_with_generate=False)
    metrics = trainer.evaluate(rows)
    assert "eval_loss" in metrics and "eval_bleu4" not in metrics and trainer.last_predictions == {}
    generating = captioning_trainer(tmp_path)
    assert generating.evaluate(rows)["eval_loss"] == pytest.approx(metrics["eval_loss"])  # the same rows' loss


def test_a_cpu_run_pins_no_memory(rows, tmp_path):
    """Pinned memory only speeds up copies to an accelerator. Left on (the Trainer's default), torch warns at every
    epoch of a CPU run that it pins nothing: 18 times in the log of the 600-step mmt recipe. `--use_cpu` turns it
    off (TrainingArguments); the recipes' runs on a machine without an accelerator did not say `--use_cpu`."""
    trainer = captioning_trainer(tmp_path, use_cpu=False)
    trainer.train_dataset = rows
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        next(iter(trainer.get_train_dataloader()))
        trainer.evaluate(rows)
    assert not [warning for warning in caught if "pin_memory" in str(warning.message)]
    assert trainer.args.dataloader_pin_memory is (trainer.args.device.type != "cpu")  # kept on an accelerator


# ----- through multimodal-gpt train ----------------------------------------------------------------------------------

STEPS = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
         "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true",
         "--logging_steps", "1"]  # fmt: skip
CAPTIONING = ["--task", "captioning", "--dataset_name", "synthetic", "--max_train_samples", "8",
              "--max_eval_samples", "3"]  # fmt: skip
NEW_MODEL = ["--preset", "tiny", "--vocab_size", "300"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def evaluations(output_dir: Path) -> list[dict]:
    return [entry for entry in read_json(output_dir / "trainer_state.json")["log_history"] if "eval_loss" in entry]


@pytest.fixture(scope="module")
def periodic_run(tmp_path_factory) -> Path:
    """`--eval_strategy steps` without `--do_train`, and the Seq2SeqTrainingArguments generation flags."""
    output_dir = tmp_path_factory.mktemp("periodic") / "run"
    train_main([*CAPTIONING, *NEW_MODEL, *STEPS, "--output_dir", str(output_dir), "--eval_strategy", "steps",
                "--eval_steps", "1", "--predict_with_generate", "--generation_max_length", "3",
                "--generation_num_beams", "2"])  # fmt: skip
    return output_dir


def test_eval_strategy_without_do_train_trains_and_evaluates_with_generation_at_each_step(periodic_run):
    assert read_json(periodic_run / "train_results.json")["train_samples"] == 8
    assert [(entry["step"], "eval_bleu4" in entry) for entry in evaluations(periodic_run)] == [(1, True), (2, True)]
    assert "eval_bleu4" in read_json(periodic_run / "eval_results.json")  # and the final evaluation
    assert "### Evaluation during training" in (periodic_run / "README.md").read_text()


def test_seq2seq_generation_flags_are_the_one_generation_setting(periodic_run):
    generation_config = read_json(periodic_run / "generation_config.json")
    assert (generation_config["max_new_tokens"], generation_config["num_beams"]) == (3, 2)
    training_args = read_json(periodic_run / "training_args.json")
    assert (training_args["generation_max_length"], training_args["generation_num_beams"]) == (3, 2)
    assert training_args["predict_with_generate"] is True
    lines = [json.loads(line) for line in (periodic_run / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(isinstance(line["prediction"], str) for line in lines)


def test_loss_only_periodic_evaluation_and_a_generation_config_file(tmp_path):
    GenerationConfig(max_new_tokens=5, num_beams=3).save_pretrained(tmp_path / "generation")
    output_dir = tmp_path / "run"
    results = train_main([*CAPTIONING, *NEW_MODEL, *STEPS, "--output_dir", str(output_dir), "--eval_strategy",
                          "steps", "--eval_steps", "1", "--predict_with_generate", "false", "--generation_config",
                          str(tmp_path / "generation")])  # fmt: skip
    assert [("eval_bleu4" in entry) for entry in evaluations(output_dir)] == [False, False]
    assert "eval_loss" in results and "eval_bleu4" not in results
    assert not (output_dir / "predictions_validation.jsonl").exists()
    generation_config = read_json(output_dir / "generation_config.json")
    assert (generation_config["max_new_tokens"], generation_config["num_beams"]) == (5, 3)


def test_a_flag_and_its_synonym_with_different_values_stop_the_run_first(tmp_path, monkeypatch):
    run_module = importlib.import_module("multimodal_gpt.training.run")  # the package exports the function `run`
    monkeypatch.setattr(run_module, "load_task_data", lambda *a, **k: pytest.fail("the run loaded its data first"))
    with pytest.raises(ValueError, match="--max_new_tokens 4 and --generation_max_length 5 are the same setting"):
        train_main([*CAPTIONING, *NEW_MODEL, *STEPS, "--output_dir", str(tmp_path), "--max_new_tokens", "4",
                    "--generation_max_length", "5"])  # fmt: skip
    with pytest.raises(ValueError, match="--num_beams 1 and --generation_num_beams 2 are the same setting"):
        train_main([*CAPTIONING, *NEW_MODEL, *STEPS, "--output_dir", str(tmp_path), "--num_beams", "1",
                    "--generation_num_beams", "2"])  # fmt: skip


def test_do_predict_alone_predicts_the_test_split(periodic_run, tmp_path):
    output_dir = tmp_path / "predicted"
    results = train_main(["--model_name_or_path", str(periodic_run), "--task", "captioning", "--dataset_name",
                          "synthetic", "--do_predict", "--max_predict_samples", "3", "--output_dir", str(output_dir),
                          "--per_device_eval_batch_size", "2", "--report_to", "none", "--use_cpu"])  # fmt: skip
    assert (results["test_samples"], results["test_skipped_rows"]) == (3, 0) and "test_bleu4" in results
    assert read_json(output_dir / "predict_results.json")["test_bleu4"] == results["test_bleu4"]
    assert len((output_dir / "predictions_test.jsonl").read_text().splitlines()) == 3
    assert not (output_dir / "train_results.json").exists() and not (output_dir / "eval_results.json").exists()
