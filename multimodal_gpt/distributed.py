"""Distributed training checks: a launch (torchrun, `accelerate launch`) that would not run what was asked for
fails fast with a message that says how to fix it, instead of training quietly in some other way.

The engines themselves are the ones users already have (DDP, FSDP, DeepSpeed through `accelerate launch` with the
configurations in `scripts/accelerate/`); the model's side of it (every parameter in the graph of every batch, blank
media on sharded ranks) lives in `modeling_multimodal_gpt.py`.
"""

import os

from transformers import Trainer, TrainingArguments

from .lora import is_peft_model


def check_distributed_launch(training_args: TrainingArguments) -> None:
    """Fail fast where the launcher started several processes but the `Trainer` does not join them: on a machine
    without GPUs, `torchrun` and `accelerate launch --multi_gpu` without `--use_cpu` give N independent runs, each
    training alone on all the data and writing the same output folder."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != training_args.world_size:
        raise ValueError(
            f"The launcher started {launched} processes (WORLD_SIZE={launched}) but the Trainer sees a world of "
            f"{training_args.world_size}: each process would train alone. On a machine without GPUs pass --use_cpu "
            "(DDP on gloo); with GPUs, check that every process sees one."
        )


def check_distributed_engine(trainer: Trainer) -> None:
    """Fail fast where a distributed run would not be what was asked for, or would stop at its first step:
    - FSDP or DeepSpeed asked for by `accelerate launch` but not running: with `--use_cpu` accelerate 1.15 quietly
      falls back to plain DDP for FSDP (it shards only on GPUs and other accelerators);
    - DDP without `find_unused_parameters` and a trainable tower with its own layerdrop (wav2vec2, HuBERT:
      `layerdrop`; Whisper: `encoder_layerdrop`): skipped layers get no gradient and DDP stops."""
    for engine, enabled in (("FSDP", trainer.is_fsdp_enabled), ("DEEPSPEED", trainer.is_deepspeed_enabled)):
        if os.environ.get(f"ACCELERATE_USE_{engine}", "false").lower() == "true" and not enabled:
            raise ValueError(
                f"accelerate launch asked for {engine} but the Trainer runs {trainer.accelerator.distributed_type} "
                "instead: accelerate 1.15 runs FSDP only on GPUs and other accelerators, and turns CPU processes "
                "(--use_cpu, or a machine without GPUs) into plain DDP. Run it on GPUs without --use_cpu, or use "
                "scripts/accelerate/ddp_cpu.yaml for data parallelism on CPU."
            )
    args = trainer.args
    if args.world_size < 2 or args.ddp_find_unused_parameters or trainer.is_fsdp_enabled:
        return
    if trainer.is_deepspeed_enabled:
        return
    model = trainer.model.get_base_model() if is_peft_model(trainer.model) else trainer.model
    for modality in ("vision", "audio"):
        tower = getattr(model.model, f"{modality}_tower", None)
        if tower is None or not any(parameter.requires_grad for parameter in tower.parameters()):
            continue
        for name in ("layerdrop", "encoder_layerdrop"):
            value = getattr(tower.config, name, 0.0) or 0.0
            if value > 0:
                raise ValueError(
                    f"The {modality} tower ({tower.config.model_type}) has {name}={value}: under DDP without "
                    "find_unused_parameters its skipped layers get no gradient and training stops at the first "
                    f"step. Set {modality}_config.{name} to 0 (in the preset, or in the config of the checkpoint "
                    "you continue from), freeze the towers (--freeze_towers), or pass "
                    "--ddp_find_unused_parameters true."
                )


__all__ = ["check_distributed_engine", "check_distributed_launch"]
