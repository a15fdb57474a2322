"""Distributed training checks: a launch (torchrun, `accelerate launch`) that would not run what was asked for
fails fast with a message that says how to fix it, instead of training quietly in some other way.

The engines themselves are the ones users already have (DDP, FSDP, DeepSpeed through `accelerate launch` with the
configurations in `scripts/accelerate/`); the model's side of it (every parameter in the graph of every batch, blank
media on sharded ranks) lives in `modeling_multimodal_gpt.py`.
"""

import os

import torch.distributed as dist
from transformers import Trainer, TrainingArguments

from .lora import is_peft_model

# Where launchers (torchrun, mpirun for Intel MPI / MPICH, Open MPI, MVAPICH) put the number of processes.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def check_distributed_launch(training_args: TrainingArguments) -> None:
    """Fail fast where the launcher started a different number of processes than asked for, or several that the
    `Trainer` does not join:
    - `accelerate launch --cpu --num_processes N` (N > 1, no `--mpirun_hostfile`) starts ONE process on accelerate
      1.15: it leaves multi-CPU runs to mpirun, and the single process would train alone, as if N were 1;
    - on a machine without GPUs, `torchrun` and `accelerate launch --multi_gpu` without `--use_cpu` give N independent
      runs, each training alone on all the data and writing the same output folder."""
    accelerate_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true"
    # accelerate's simple launcher sets MASTER_ADDR only when more than one process was asked for
    if accelerate_cpu and "MASTER_ADDR" in os.environ and not any(name in os.environ for name in WORLD_SIZE_VARIABLES):
        raise ValueError(
            "accelerate launch --cpu --num_processes N started one process, not N: accelerate 1.15 runs multi-CPU "
            "training only through mpirun (--mpirun_hostfile). For DDP on this machine run "
            "`accelerate launch --config_file scripts/accelerate/ddp_cpu.yaml scripts/train.py --use_cpu ...` "
            "(its num_processes sets N) or `torchrun --nproc_per_node N scripts/train.py --use_cpu ...`."
        )
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


def end_distributed_run() -> None:
    """Destroy the process group the `Trainer` started, before the process exits. Left to the interpreter's exit,
    gloo's worker threads are destroyed while still joinable now and then, and the process aborts ("terminate called
    without an active exception", exit -6) after a finished training (torch's documentation: call it near the end of
    main). For the command that owns the process (`multimodal-gpt train`), not for `run()`, whose caller may go on
    using the group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["WORLD_SIZE_VARIABLES", "check_distributed_engine", "check_distributed_launch", "end_distributed_run"]
