"""Runs that know their state: a finished command is not trained again, an output folder takes one run at a time,
and generation, length and evaluation-data problems stop a run before its training, not after."""

import io
import json
import logging

import pytest
from datasets import Dataset
from PIL import Image
from transformers import TrainingArguments

from multimodal_gpt.data.collators import CaptioningCollator
from multimodal_gpt.training.arguments import DataArguments, check_generation_arguments
from multimodal_gpt.training.checkpoints import RUN_COMPLETE_FILE, OutputDirInUseError, RunLock
from multimodal_gpt.training.cli import train_main
from multimodal_gpt.training.run import check_evaluation_rows
from multimodal_gpt.training.trainer import MultimodalTrainer
from tests.test_scripts import train_args
from tests.tiny_models import tiny_config, tiny_processor_and_model


def captioning_args(output_dir, *extra: str) -> list[str]:
    arguments = train_args("captioning", output_dir, "--dataset_name", "synthetic", "--max_train_samples", "8", *extra)
    arguments[arguments.index("--save_strategy") + 1] = "steps"
    return [*arguments, "--save_steps", "2"]


def test_a_finished_command_trains_no_further_and_a_longer_one_continues(tmp_path, caplog):
    output_dir = tmp_path / "run"
    train_main(captioning_args(output_dir))
    weights = (output_dir / "model.safetensors").read_bytes()
    train_results = (output_dir / "train_results.json").read_text()
    loss_curve = (output_dir / "loss_curve.png").read_bytes()
    assert json.loads((output_dir / RUN_COMPLETE_FILE).read_text())["global_step"] == 2

    with caplog.at_level(logging.WARNING):
        results = train_main(captioning_args(output_dir))
    assert "holds the finished run of this command (step 2" in caplog.text
    assert "train_runtime" not in results and "eval_bleu4" in results
    assert (output_dir / "model.safetensors").read_bytes() == weights
    assert (output_dir / "train_results.json").read_text() == train_results
    assert (output_dir / "loss_curve.png").read_bytes() == loss_curve
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 2

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train_main([*captioning_args(output_dir), "--max_steps", "3"])  # the last --max_steps wins
    assert f"Resuming from {output_dir / 'checkpoint-2'}" in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 3
    assert json.loads((output_dir / RUN_COMPLETE_FILE).read_text())["global_step"] == 3


def test_the_output_folder_takes_one_run_at_a_time(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(OutputDirInUseError, match="is in use by another run"):
            train_main(captioning_args(tmp_path / "run"))


def test_bad_generation_flags_stop_the_run_before_training(tmp_path):
    with pytest.raises(ValueError, match="--num_beams must be at least 1"):
        train_main([*captioning_args(tmp_path / "run"), "--num_beams", "0"])
    assert not list((tmp_path / "run").glob("checkpoint-*")) and not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"num_beams": 0}, "--num_beams must be at least 1"),
        ({"max_new_tokens": 0}, "--max_new_tokens must be at least 1"),
        ({"max_length": 1}, "--max_length must be at least 2"),
        ({"max_length": 300}, "--max_length 300 exceeds the model's 256 positions"),
        ({"max_new_tokens": 256}, "--max_new_tokens 256 leaves no room for a prompt in the model's 256 positions"),
        ({"max_length": 17}, "--max_length 17 leaves no room for a target after an image's 16 tokens"),
        ({"max_new_tokens": 240}, "--max_new_tokens 240 after an image's 16 tokens .and bos. exceeds"),
    ],
)
def test_generation_and_length_flags(flags, message):
    config = tiny_config(vision="vit", audio="wav2vec2")  # 256 positions, 16 tokens per image
    with pytest.raises(ValueError, match=message):
        check_generation_arguments(DataArguments(task="captioning", **flags), config)
    check_generation_arguments(DataArguments(task="translation", max_length=17), config)  # no images
    check_generation_arguments(DataArguments(task="captioning", max_length=18, max_new_tokens=239), config)


def test_unusable_evaluation_rows_are_counted_before_training_and_kept_out_of_the_loss(tmp_path, caplog):
    processor, model = tiny_processor_and_model(vision="vit", audio=None)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    images = [png.getvalue(), b"not an image", png.getvalue(), png.getvalue()[:40]]
    validation = Dataset.from_dict({"image": images, "captions": [["a"], ["b"], [""], ["d"]]})  # bad: rows 1, 2, 3
    arguments = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], per_device_eval_batch_size=2, remove_unused_columns=False
    )
    trainer = MultimodalTrainer(
        model=model,
        args=arguments,
        data_collator=CaptioningCollator(processor),
        processing_class=processor,
        generation_collator=CaptioningCollator(processor, for_generation=True),
        generation_kwargs={"max_new_tokens": 2},
    )
    with caplog.at_level(logging.WARNING):
        check_evaluation_rows(trainer, {"validation": validation})
    assert "3 of 4 rows of the 'validation' split cannot be evaluated (row 1:" in caplog.text
    with pytest.raises(ValueError, match="No row of the 'test' split is usable .row 0: Could not decode image"):
        check_evaluation_rows(trainer, {"test": validation.select([1, 3])})
    # The second loss batch holds rows 2 and 3 only, both unusable: left out of the loss, it does not stop the
    # evaluation, and the predictions keep every row, the bad ones as skipped.
    metrics = trainer.evaluate(validation)
    assert "eval_loss" in metrics and (metrics["eval_samples"], metrics["eval_skipped_rows"]) == (1, 3)
    assert [record.skipped is None for record in trainer.last_predictions["eval"]] == [True, False, False, False]
