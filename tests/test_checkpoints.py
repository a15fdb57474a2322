"""Checkpoints that survive a crash and resume every parameter: `MultimodalTrainer` with `training.checkpoints`."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Dinov2Config, TrainingArguments

from multimodal_gpt.training import MultimodalTrainer, checkpoints
from multimodal_gpt.training.checkpoints import (
    COMPLETE_MARKER,
    IN_PROGRESS_MARKER,
    IncompleteCheckpointError,
    OutputDirInUseError,
    RunLock,
    checkpoint_problem,
    load_weights_strictly,
    resumable_checkpoint,
)
from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, tiny_model

TOWERS = [("vit", "wav2vec2"), ("dinov2", "whisper"), ("clip", "hubert"), ("siglip", "wav2vec2")]


def model_with(vision: str, audio: str, seed: int = 0):
    if vision == "dinov2":
        dinov2 = Dinov2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=8, patch_size=2, mlp_ratio=1
        )
        return tiny_model(seed=seed, vision="vit", vision_config=dinov2, audio=audio).train()
    return tiny_model(seed=seed, vision=vision, audio=audio).train()


def samples(model) -> list[dict]:
    """4 rows, each with an image and a clip, as tensors."""
    clip_length = 80 if model.config.audio_config.model_type == "whisper" else 800  # mel frames or samples
    image_tokens = [IMAGE_TOKEN_ID] * model.config.num_image_tokens()
    audio_tokens = [AUDIO_TOKEN_ID] * model.config.num_audio_tokens(clip_length)
    rows = []
    for index in range(4):
        ids = [1, *image_tokens, 2, *audio_tokens, 3, 4 + index, 5]
        media = {"pixel_values": image_input(1, seed=index)[0]}
        clip = audio_input(model, clip_length, seed=index)
        media.update({key: value[0] for key, value in clip.items()})
        rows.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(ids), **media})
    return rows


def trainer_for(model, output_dir: Path, **overrides) -> MultimodalTrainer:
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=2,
        max_steps=4,
        save_steps=2,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
    )
    args = TrainingArguments(**(settings | overrides))
    return MultimodalTrainer(model=model, args=args, train_dataset=samples(model))


def trained_checkpoints(tmp_path: Path, vision: str = "vit", audio: str = "wav2vec2", **overrides):
    model = model_with(vision, audio)
    trainer_for(model, tmp_path / "run", **overrides).train()
    return model, tmp_path / "run"


@pytest.mark.parametrize(("vision", "audio"), TOWERS)
def test_resume_restores_every_parameter_for_every_tower(tmp_path, vision, audio):
    """The Trainer's own resume restored 0 of a ViT / DINOv2 tower's encoder tensors (keys renamed on load)."""
    trained, run_dir = trained_checkpoints(tmp_path, vision, audio, max_steps=2)
    fresh = model_with(vision, audio, seed=1)
    for tower in ("vision_tower.", "audio_tower."):  # the fresh model differs before the resume
        names = [name for name in trained.state_dict() if tower in name]
        assert any(not torch.equal(fresh.state_dict()[name], trained.state_dict()[name]) for name in names)
    trainer_for(fresh, run_dir, max_steps=2).train(resume_from_checkpoint=str(run_dir / "checkpoint-2"))
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_a_checkpoint_missing_a_parameter_is_an_error(tmp_path):
    model = model_with("vit", "wav2vec2")
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = next(key for key in weights if "vision_tower" in key)
    save_file(
        {key: value for key, value in weights.items() if key != dropped},
        tmp_path / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(ValueError, match=r"1 missing from the checkpoint \(model\.vision_tower"):
        load_weights_strictly(model_with("vit", "wav2vec2", seed=1), tmp_path)


def test_checkpoints_are_marked_complete_and_old_ones_rotate_after(tmp_path):
    _, run_dir = trained_checkpoints(tmp_path, max_steps=6, save_total_limit=2)
    assert sorted(path.name for path in run_dir.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    for folder in run_dir.glob("checkpoint-*"):
        assert checkpoint_problem(folder) is None and not (folder / IN_PROGRESS_MARKER).exists()
        recorded = json.loads((folder / COMPLETE_MARKER).read_text())["files"]
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= set(
            recorded
        )


def test_a_save_killed_midway_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    """Killed while writing optimizer.pt of checkpoint-4 (with save_total_limit=1): checkpoint-2 survives, the rerun
    resumes from it, says what it skipped, removes the half-written folder and ends like an uninterrupted run."""
    reference, _ = trained_checkpoints(tmp_path / "reference", max_steps=4)
    model = model_with("vit", "wav2vec2")
    trainer = trainer_for(model, tmp_path / "run", max_steps=4, save_total_limit=1)
    real_save = torch.save

    def dies_at_checkpoint_4(obj, path, *args, **kwargs):
        if str(path).endswith(os.path.join("checkpoint-4", "optimizer.pt")):
            Path(path).write_bytes(b"")  # what a kill leaves: an empty file
            raise KeyboardInterrupt("killed")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dies_at_checkpoint_4)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    monkeypatch.setattr(torch, "save", real_save)
    run_dir = tmp_path / "run"
    assert checkpoint_problem(run_dir / "checkpoint-4") == "its save was interrupted"
    assert checkpoint_problem(run_dir / "checkpoint-2") is None  # not rotated away before checkpoint-4 completed
    with pytest.raises(IncompleteCheckpointError, match="checkpoint-4: its save was interrupted"):
        trainer_for(model_with("vit", "wav2vec2"), run_dir).train(resume_from_checkpoint=str(run_dir / "checkpoint-4"))
    resumed = model_with("vit", "wav2vec2", seed=1)
    with caplog.at_level(logging.WARNING):
        trainer_for(resumed, run_dir, save_total_limit=1).train(resume_from_checkpoint=True)
    assert "checkpoint-4 (its save was interrupted; removed)" in caplog.text
    assert f"Resuming from {run_dir / 'checkpoint-2'}" in caplog.text
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert [path.name for path in run_dir.glob("checkpoint-*")] == ["checkpoint-4"]


def test_damaged_and_empty_checkpoints_are_skipped(tmp_path, caplog):
    _, run_dir = trained_checkpoints(tmp_path, max_steps=4)
    (run_dir / "checkpoint-4" / "optimizer.pt").write_bytes(b"")  # damaged after completion
    (run_dir / "checkpoint-6").mkdir()  # killed right after creating the folder
    with caplog.at_level(logging.WARNING):
        assert resumable_checkpoint(run_dir) == str(run_dir / "checkpoint-2")
    assert "checkpoint-4 (optimizer.pt has 0 bytes where" in caplog.text
    assert "checkpoint-6 (it is empty; removed)" in caplog.text
    assert not (run_dir / "checkpoint-6").exists() and (run_dir / "checkpoint-4").exists()


def test_missing_optimizer_state_is_an_error_or_an_explicit_choice(tmp_path, caplog):
    _, run_dir = trained_checkpoints(tmp_path, max_steps=2)
    foreign = run_dir / "checkpoint-2"
    for name in (COMPLETE_MARKER, "optimizer.pt"):  # another tool's checkpoint, without its optimizer state
        (foreign / name).unlink()
    with pytest.raises(IncompleteCheckpointError, match="has no optimizer.pt: resuming would silently restart"):
        trainer_for(model_with("vit", "wav2vec2"), run_dir).train(resume_from_checkpoint=str(foreign))
    with caplog.at_level(logging.WARNING):
        trainer_for(model_with("vit", "wav2vec2"), run_dir, save_only_model=True).train(
            resume_from_checkpoint=str(foreign)
        )
    assert "without optimizer.pt (--save_only_model" in caplog.text


LOCK_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from multimodal_gpt.training.checkpoints import RunLock
    RunLock(sys.argv[1]).__enter__()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_second_run_is_refused_and_a_dead_one_leaves_no_lock(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(OutputDirInUseError, match=rf"{tmp_path} is in use by another run \(pid {os.getpid()}"):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / "_run.lock").exists()
    killed = subprocess.run([sys.executable, "-c", LOCK_AND_DIE, str(tmp_path)], cwd=Path(__file__).parents[1])
    assert killed.returncode == -9 and (tmp_path / "_run.lock").exists()
    with RunLock(tmp_path):  # the kernel released the dead process's lock
        pass


def test_a_file_system_without_locks_is_named_not_mistaken_for_a_running_run(tmp_path, monkeypatch, caplog):
    def no_locks(descriptor):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(checkpoints, "_try_lock", no_locks)
    with caplog.at_level(logging.WARNING), RunLock(tmp_path):
        pass
    assert "Cannot lock" in caplog.text and "No locks available" in caplog.text
