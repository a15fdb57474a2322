"""Distributed training on CPU: 2-process DDP (gloo) through `torchrun` gives the same weights as one process with
the same global batch, with mixed batches and without `find_unused_parameters`; the documented `accelerate launch`
command really starts 2 processes; the shipped accelerate configs parse and FSDP's auto-wrap finds every block; a
launch that would not be what was asked for (processes the Trainer does not join, FSDP quietly run as DDP, a tower's
layerdrop under DDP) stops with an error.

Every run here is one global step = the whole 8-row training set (4 rows per rank, or 8 in one process), so both
runs see exactly the same samples at every step whatever the sampler's order. Among those 8 synthetic pretraining
rows are text-only, image and audio ones: one rank always gets a batch without audio. Evaluation across 2 processes
(a prepared split and a stream) gives the predictions file and the metrics of one process."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
from PIL import Image
from safetensors.torch import load_file

from multimodal_gpt.data.sources import load_task_data
from multimodal_gpt.training import DataArguments
from multimodal_gpt.training.cli import train_main
from multimodal_gpt.training.distributed import check_distributed_engine
from multimodal_gpt.training.presets import load_preset
from tests.tiny_models import tiny_model, tiny_processor_and_model

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = REPO / "scripts" / "accelerate"
NUM_TRAIN_SAMPLES = 8
STEPS = 3


@pytest.fixture(scope="module")
def preset_without_dropout(tmp_path_factory) -> Path:
    """The tiny preset with GPT-2's dropouts at 0 (the towers have none): ranks draw different random numbers, so
    only a dropout-free model can match a single process exactly."""
    preset = load_preset("tiny")
    preset["text_config"].update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    path = tmp_path_factory.mktemp("preset") / "tiny_no_dropout.json"
    path.write_text(json.dumps(preset))
    return path


def train_arguments(output_dir: Path, preset: Path, per_device_batch_size: int) -> list[str]:
    # SGD, not AdamW: Adam's update ignores the gradient's scale, so it would hide a DDP loss-averaging error.
    return [
        "--task", "pretrain", "--dataset_name", "synthetic", "--preset", str(preset), "--vocab_size", "300",
        "--max_train_samples", str(NUM_TRAIN_SAMPLES), "--per_device_train_batch_size", str(per_device_batch_size),
        "--max_steps", str(STEPS), "--optim", "sgd", "--learning_rate", "0.1", "--lr_scheduler_type", "constant",
        "--seed", "0", "--do_train", "--use_cpu", "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--logging_steps", "1", "--output_dir", str(output_dir),
    ]  # fmt: skip


def child_environment() -> dict[str, str]:
    python_path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=python_path)


def step_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_the_training_set_mixes_modalities_so_one_rank_lacks_audio():
    """The premise of the comparison below: text-only, image and audio rows, and a single audio row (so one of the
    two ranks trains on a batch without any audio, through the absent-modality anchor)."""
    train_split = load_task_data(
        DataArguments(task="pretrain", dataset_name="synthetic", max_train_samples=NUM_TRAIN_SAMPLES), evaluation=False
    ).train
    has_image = [row is not None for row in train_split["image"]]
    has_audio = [row is not None for row in train_split["audio"]]
    assert len(train_split) == NUM_TRAIN_SAMPLES
    assert sum(has_audio) == 1 and 0 < sum(has_image)
    assert any(not image and not audio for image, audio in zip(has_image, has_audio))


def test_torchrun_ddp_matches_one_process_with_the_same_global_batch(preset_without_dropout, tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(REPO / "scripts" / "train.py"), *train_arguments(ddp_dir, preset_without_dropout, 4)]
    finished = subprocess.run(command, env=child_environment(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    # Trainer's default would have been find_unused_parameters=True; torch warns when that flag finds nothing.
    assert "find_unused_parameters=True was specified" not in finished.stderr

    single = train_main(train_arguments(single_dir, preset_without_dropout, 8))
    assert single["world_size"] == 1
    ddp = json.loads((ddp_dir / "train_results.json").read_text())
    assert ddp["world_size"] == 2, "torchrun did not give a 2-process DDP run"

    # Same loss at every step, and the loss moved (so the weights below moved far more than the tolerance).
    ddp_losses, single_losses = step_losses(ddp_dir), step_losses(single_dir)
    assert len(ddp_losses) == len(single_losses) == STEPS
    torch.testing.assert_close(ddp_losses, single_losses, rtol=1e-5, atol=1e-5)
    assert single_losses[0] - single_losses[-1] > 0.1

    ddp_weights = load_file(ddp_dir / "model.safetensors")
    single_weights = load_file(single_dir / "model.safetensors")
    assert ddp_weights.keys() == single_weights.keys()
    mismatched = {
        name: (ddp_weights[name] - weight).abs().max().item()
        for name, weight in single_weights.items()
        if not torch.allclose(ddp_weights[name], weight, rtol=1e-5, atol=1e-5)
    }
    assert not mismatched, f"largest differences of the weights that differ: {mismatched}"


def test_train_destroys_the_process_group_before_the_process_exits(tmp_path):
    """Left to the interpreter's exit, the gloo group's threads now and then abort a finished run's process
    ("terminate called without an active exception", exit -6: the test above failed so, once in three full runs).
    `multimodal-gpt train` under torchrun destroys the group itself: checked after `train_main` returns, in the
    launched process."""
    script = tmp_path / "train_then_report.py"
    script.write_text(
        "import sys\n"
        "import torch.distributed as dist\n"
        "from multimodal_gpt.training.cli import train_main\n"
        "results = train_main(sys.argv[1:])\n"
        "print('world size', results['world_size'], 'group left', dist.is_initialized())\n"
    )
    arguments = train_arguments(tmp_path / "run", Path("tiny"), 4)
    arguments[arguments.index("--max_steps") + 1] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    finished = subprocess.run(
        [*command, str(script), *arguments], env=child_environment(), capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "world size 1 group left False" in finished.stdout, finished.stdout[-3000:] + finished.stderr[-3000:]


def test_documented_accelerate_command_starts_two_gloo_processes(tmp_path):
    """`accelerate launch --config_file scripts/accelerate/ddp_cpu.yaml` (a MULTI_GPU config: `--cpu` and MULTI_CPU
    start ONE process on accelerate 1.15) gives 2 processes that the Trainer joins into one gloo world."""
    probe = tmp_path / "probe.py"
    # each process reports in its own file: the two share one stdout pipe, and their lines can interleave there
    probe.write_text(
        "import pathlib\n"
        "import torch.distributed as dist\n"
        "from transformers import TrainingArguments\n"
        f"args = TrainingArguments(output_dir={str(tmp_path / 'out')!r}, use_cpu=True, report_to='none')\n"
        f"report = pathlib.Path({str(tmp_path)!r}) / f'world_{{dist.get_rank()}}.txt'\n"
        "report.write_text(f'{args.world_size} {dist.get_backend()}')\n"
    )
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [str(ACCELERATE_CONFIGS / "ddp_cpu.yaml"), "--main_process_port", "0", str(probe)]
    finished = subprocess.run(command, env=child_environment(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    reports = {path.name: path.read_text() for path in sorted(tmp_path.glob("world_*.txt"))}
    assert reports == {"world_0.txt": "2 gloo", "world_1.txt": "2 gloo"}


def test_accelerate_cpu_num_processes_starts_one_process_and_train_py_says_so(tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts ONE process on accelerate 1.15 (multi-CPU goes through
    mpirun there), which would train alone as if one process had been asked for: train.py stops and points to the
    config file and torchrun instead. The control: the same launch with one process trains."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes"]
    arguments = [str(REPO / "scripts" / "train.py"), *train_arguments(tmp_path / "run", Path("tiny"), 4)]
    arguments[arguments.index("--max_steps") + 1] = "1"
    two = subprocess.run([*command, "2", *arguments], env=child_environment(), capture_output=True, text=True)
    assert two.returncode != 0
    assert "started one process, not N" in two.stderr and "scripts/accelerate/ddp_cpu.yaml" in two.stderr
    assert not (tmp_path / "run" / "train_results.json").exists()

    one = subprocess.run([*command, "1", *arguments], env=child_environment(), capture_output=True, text=True)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "train_results.json").read_text())["world_size"] == 1


def test_a_launch_that_the_trainer_does_not_join_fails_fast(tmp_path, monkeypatch):
    """torchrun without --use_cpu on a machine without GPUs: each process would train alone on all the data."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    arguments = train_arguments(tmp_path, Path("tiny"), 4)
    arguments.remove("--use_cpu")
    with pytest.raises(ValueError, match="pass --use_cpu"):
        train_main(arguments)


@pytest.mark.parametrize("path", sorted(ACCELERATE_CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_accelerate_configs_parse_and_say_how_to_launch(path):
    config = load_config_from_file(str(path))
    text = path.read_text()
    assert text.startswith("#") and f"accelerate launch --config_file scripts/accelerate/{path.name}" in text
    expected = {
        "ddp_cpu": DistributedType.MULTI_GPU,  # not MULTI_CPU: see the file's header
        "fsdp": DistributedType.FSDP,
        "deepspeed_zero2": DistributedType.DEEPSPEED,
        "deepspeed_zero3": DistributedType.DEEPSPEED,
    }
    assert config.distributed_type == expected[path.stem] and config.num_processes == 2
    if config.distributed_type == DistributedType.DEEPSPEED:
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
    if config.distributed_type == DistributedType.FSDP:
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # a normal model.safetensors


@pytest.mark.parametrize(
    ("fusion", "audio"), [("mlp", "whisper"), ("resampler", "wav2vec2"), ("cross_attention", "hubert")]
)
def test_fsdp_config_wraps_every_block_of_the_model(fusion, audio):
    """fsdp.yaml names no classes: accelerate wraps the model's `_no_split_modules`, and stops on any name it cannot
    find in the model; so that list holds exactly the block classes present (GPT-2 or cross-attention blocks, the
    towers' layers, the resampler)."""
    fsdp_config = load_config_from_file(str(ACCELERATE_CONFIGS / "fsdp.yaml")).fsdp_config
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp_config
    model = tiny_model(fusion=fusion, audio=audio)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy=fsdp_config["fsdp_auto_wrap_policy"])
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = {type(module).__name__ for module in model.modules() if policy(module)}
    assert wrapped == set(model._no_split_modules)
    language_block = "MultimodalGPT2Block" if fusion == "cross_attention" else "GPT2Block"
    tower_layer = {"whisper": "WhisperEncoderLayer", "wav2vec2": "Wav2Vec2EncoderLayerStableLayerNorm"}
    assert {language_block, "CLIPEncoderLayer", tower_layer.get(audio, "HubertEncoderLayerStableLayerNorm")} <= wrapped
    assert ("PerceiverResampler" in wrapped) == (fusion == "resampler")


def fake_trainer(model, *, world_size: int, fsdp: bool = False) -> SimpleNamespace:
    args = SimpleNamespace(world_size=world_size, ddp_find_unused_parameters=False)
    accelerator = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU)
    return SimpleNamespace(
        model=model, args=args, accelerator=accelerator, is_fsdp_enabled=fsdp, is_deepspeed_enabled=False
    )


def test_ddp_refuses_a_trainable_tower_with_layerdrop():
    model = tiny_model(fusion="mlp", audio="wav2vec2")
    check_distributed_engine(fake_trainer(model, world_size=2))  # layerdrop 0: fine
    model.model.audio_tower.config.layerdrop = 0.1
    check_distributed_engine(fake_trainer(model, world_size=1))  # one process: no DDP
    check_distributed_engine(fake_trainer(model, world_size=2, fsdp=True))  # FSDP needs no gradient everywhere
    with pytest.raises(ValueError, match="audio_config.layerdrop to 0"):
        check_distributed_engine(fake_trainer(model, world_size=2))
    model.freeze_towers()
    check_distributed_engine(fake_trainer(model, world_size=2))  # a frozen tower has no gradients to wait for


def test_fsdp_asked_for_but_running_as_ddp_fails_fast(monkeypatch):
    """accelerate 1.15 runs FSDP only on GPUs and other accelerators: with --use_cpu it quietly runs DDP."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="asked for FSDP but the Trainer runs"):
        check_distributed_engine(fake_trainer(tiny_model(fusion="mlp"), world_size=2))


FSDP2_WORKER = """
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, open_gates, tiny_model

dist.init_process_group("gloo")
rank = dist.get_rank()


def build(fusion):
    # both kinds of audio tower: Whisper-style (log-mel window) and waveform; with the mlp fusion a Whisper clip
    # would give more tokens than the tiny GPT-2's positions
    model = tiny_model(fusion=fusion, audio="wav2vec2" if fusion == "mlp" else "whisper")
    open_gates(model)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model.train()


def batch(model, media):  # one sample with the given media ("image", "audio", both or none)
    image = [IMAGE_TOKEN_ID] * model.config.num_image_tokens() if "image" in media else []
    audio = [AUDIO_TOKEN_ID] * model.config.num_audio_tokens(1600) if "audio" in media else []
    input_ids = torch.tensor([[3, *image, 4, *audio, 5, 6, 7]])
    labels = input_ids.masked_fill((input_ids == IMAGE_TOKEN_ID) | (input_ids == AUDIO_TOKEN_ID), -100)
    inputs = dict(input_ids=input_ids, labels=labels)
    if image:
        inputs["pixel_values"] = image_input(1)
    if audio:
        inputs.update(audio_input(model, 1600))
    return inputs


# (rank 0's media, rank 1's media): a rank without any medium; each rank lacking the modality the other has
SPLITS = [((), ("image", "audio")), (("image",), ("audio",))]
for fusion in sys.argv[1:]:
    for split in SPLITS:
        # Reference: one unsharded model on both ranks' batches, gradients averaged as FSDP's reduce-scatter does.
        reference = build(fusion)
        (sum(reference(**batch(reference, media)).loss for media in split) / 2).backward()
        sharded = build(fusion)
        for module in sharded.modules():
            if type(module).__name__ in sharded._no_split_modules:
                fully_shard(module)
        fully_shard(sharded)
        assert sharded.model._parameters_are_sharded()
        sharded(**batch(sharded, split[rank])).loss.backward()
        expected = dict(reference.named_parameters())
        compared = 0
        for name, parameter in sharded.named_parameters():
            if parameter.grad is None:
                assert expected[name].grad is None, name
                continue
            full, reference_grad = parameter.grad.full_tensor(), expected[name].grad
            torch.testing.assert_close(full, reference_grad, rtol=1e-5, atol=1e-6, msg=f"{fusion} {split} {name}")
            compared += 1
        # one write per line (print writes the newline separately, and the two ranks share the pipe)
        sys.stdout.write(f"RANK {rank} {fusion} {'+'.join(split[rank]) or 'text'} {compared} gradients match\\n")
        sys.stdout.flush()
dist.destroy_process_group()
"""


def test_fsdp2_trains_when_one_rank_lacks_every_modality(tmp_path):
    """FSDP2 (`fully_shard`, on gloo: it runs on CPU) gathers a module's parameters only while it runs, and every rank
    must run the same modules in the same order: rank 0 gets a text-only batch and rank 1 an image + audio one, then
    rank 0 only an image and rank 1 only a clip. The model encodes a blank medium for each absent modality where the
    real one would run (instead of summing sharded parameters), and the averaged gradients equal an unsharded
    model's on both batches."""
    worker = tmp_path / "fsdp2_worker.py"
    worker.write_text(FSDP2_WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker)]
    fusions = ["mlp", "resampler", "cross_attention"]
    finished = subprocess.run(
        [*command, *fusions], env=child_environment(), cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    lines = re.findall(r"RANK (\d) (\S+) (\S+) \d+ gradients match", finished.stdout)
    matched = sorted(list(line) for line in lines)
    media = {"0": ["text", "image"], "1": ["image+audio", "audio"]}
    assert matched == sorted([rank, fusion, kind] for rank in media for fusion in fusions for kind in media[rank])


# ----- evaluation across processes: every row once, in order ---------------------------------------------------------


def write_captioning_rows(folder: Path) -> Path:
    """Five captioning rows in a JSON lines file beside their images: the third image is corrupt (a skipped row),
    some rows have several references. With 2 rows per process and batch, the last global batch is padded."""
    folder.mkdir()
    colours = [(200, 30, 30), (30, 200, 30), None, (30, 30, 200), (90, 90, 90)]
    lines = []
    for index, colour in enumerate(colours):
        path = folder / f"image_{index}.png"
        if colour is None:
            path.write_bytes(b"not an image")
        else:
            Image.new("RGB", (12, 10), colour).save(path)
        captions = [f"a square number {index}", f"square {index}"][: 1 + index % 2]
        lines.append(json.dumps({"image": path.name, "captions": captions}))
    (folder / "validation.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "validation.jsonl"


def evaluation_arguments(checkpoint: Path, rows: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(checkpoint), "--task", "captioning", "--validation_file", str(rows), "--do_eval",
        "--per_device_eval_batch_size", "2", "--max_new_tokens", "3", "--use_cpu", "--report_to", "none",
        "--disable_tqdm", "true", "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("streaming", [False, True], ids=["prepared", "streamed"])
def test_torchrun_evaluation_gathers_every_row_once_in_order(streaming, tmp_path):
    """2 processes share the rows (accelerate's shards; a stream is read by both, each keeping its share) and the
    loss, the generated predictions, the references and the skipped rows come back gathered in row order, the
    rows padding the last batch dropped: the same predictions file and generation metrics as one process."""
    processor, model = tiny_processor_and_model(vision="vit", audio=None)
    model.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    rows = write_captioning_rows(tmp_path / "rows")
    extra = ["--streaming"] if streaming else []
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [
        str(REPO / "scripts" / "train.py"),
        *evaluation_arguments(tmp_path / "checkpoint", rows, tmp_path / "ddp", *extra),
    ]
    finished = subprocess.run(command, env=child_environment(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    # both processes ran (and the run's launch check stops one that the Trainer does not join into one world)
    assert (finished.stdout + finished.stderr).count("multimodal_gpt.training.run: Data from") == 2

    single = train_main(evaluation_arguments(tmp_path / "checkpoint", rows, tmp_path / "single", *extra))
    ddp = json.loads((tmp_path / "ddp" / "eval_results.json").read_text())
    assert (
        (ddp["eval_samples"], ddp["eval_skipped_rows"])
        == (single["eval_samples"], single["eval_skipped_rows"])
        == (4, 1)
    )
    assert ddp["eval_bleu4"] == pytest.approx(single["eval_bleu4"])
    # (the loss is the Trainer's mean of per-batch losses: with other batches across processes it differs a little)
    assert math.isfinite(ddp["eval_loss"])
    lines = (tmp_path / "ddp" / "predictions_validation.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "single" / "predictions_validation.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert "skipped" in json.loads(lines[2])
