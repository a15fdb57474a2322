"""Measuring the peer benchmark's systems: training steps, greedy generation and peak memory, in one process.

How (see [`measure_systems`]): one untimed warm-up round (every system trains one step and generates once: lazy
initialisation, AdamW's state, allocator growth), then `rounds` timed rounds, each going round-robin over every system
(one training step, then one generation), so that a change in the machine's load touches every system alike; the
figures are the median over rounds, with the min and max. Then one untimed pass measures each system's peak memory.

Peak memory of a training step = the bytes that stay resident between steps (parameters and AdamW state, counted
from the tensors) + the most the step adds on top of what was in use before it (activations, gradients,
temporaries), measured:

- on CUDA: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`, minus `memory_allocated()` before;
- on CPU (Linux): the process's resident set (RSS). The allocator's free memory is first handed back to the system
  (glibc `malloc_trim`), so that the step has to fault in what it needs, then the kernel's RSS high-water mark is reset
  (`/proc/self/clear_refs`) and read back after the step (`VmHWM`); the figure is that peak minus the RSS before.
  Where the high-water mark cannot be reset, a thread samples the RSS every millisecond (`psutil`) and the figure is
  the largest sample minus the RSS before: a spike shorter than the sampling interval can be missed. `tracemalloc`
  cannot be used: it sees Python's allocations, not torch's.
"""

import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import CompileConfig

from .peer_systems import TEXT_ONLY, PeerShapes, System

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
MEBIBYTE = 2**20
_RSS_SAMPLING_SECONDS = 0.001
MEMORY_METHOD = {
    "cuda": "parameters and AdamW state, plus the most a training step allocates above what was allocated before "
    "it (torch.cuda.max_memory_allocated).",
    "cpu": "parameters and AdamW state, plus the most the process's resident set grows during a training step "
    "(the RSS high-water mark, reset before the step after handing free heap memory back; or the RSS sampled "
    "every millisecond where the mark cannot be reset).",
}


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """The precision context every row runs its forward (and generation) in: fp32 as is, or bf16 autocast."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: choose one of {PRECISIONS}.")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def compile_system(system: System, backend: str = "inductor") -> bool:
    """`torch.compile` the system's forward (the training step), and, for a model whose decoding step compiles as
    one graph (`_can_compile_fullgraph`), generate with a static cache and a compiled decoding step (transformers
    compiles it inside `generate`; on CPU only when asked, as here). Returns whether generation is compiled too.
    `backend`: torch.compile's (tests use `"eager"`, which checks the graphs without generating code)."""
    system.model.forward = torch.compile(system.model.forward, backend=backend)
    if not getattr(system.model, "_can_compile_fullgraph", False) or system.is_encoder_decoder:
        return False
    compile_config = CompileConfig(mode="default", backend=backend)  # "reduce-overhead" means CUDA graphs
    compile_config._compile_all_devices = True  # transformers compiles generation on accelerators only by default
    system.model.generation_config.cache_implementation = "static"
    system.model.generation_config.compile_config = compile_config
    return True


def train_step(system: System, device: str, precision: str) -> torch.Tensor:
    """One forward + backward + AdamW step on the system's training batch; returns the (detached) loss."""
    with autocast(device, precision):
        loss = system.model(**system.train_batch).loss
    loss.backward()
    system.optimizer.step()
    system.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@torch.no_grad()
def generate(system: System, device: str, precision: str, new_tokens: int) -> int:
    """Greedy decoding of exactly `new_tokens` tokens per sample with the KV cache; returns the tokens produced."""
    system.model.eval()
    try:
        with autocast(device, precision):
            output = system.model.generate(
                **system.generation_inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,  # no early eos: every system decodes the same number of tokens
                do_sample=False,
                num_beams=1,
                use_cache=True,
                pad_token_id=system.model.config.get_text_config(decoder=True).pad_token_id,
            )
    finally:
        system.model.train()
    prompt_length = 1 if system.is_encoder_decoder else system.generation_inputs["input_ids"].shape[1]
    produced = output.shape[1] - prompt_length
    if produced != new_tokens:
        raise RuntimeError(f"{system.name} generated {produced} tokens per sample instead of {new_tokens}.")
    return produced * output.shape[0]


def _timed(device: str, work: Callable[[], Any]) -> tuple[float, Any]:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = work()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


# ----- memory ---------------------------------------------------------------------------------------------------


def resident_bytes(system: System) -> int:
    """Bytes of the parameters and the optimizer's state: what stays allocated between steps."""
    parameters = {id(parameter): parameter for parameter in system.model.parameters()}  # tied weights once
    tensors = list(parameters.values()) + [
        value for state in system.optimizer.state.values() for value in state.values() if torch.is_tensor(value)
    ]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def step_peak_bytes(system: System, device: str, precision: str) -> int:
    """The most one training step adds to the memory in use before it (see the module docstring for how)."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        train_step(system, device, precision)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    _release_free_heap()
    with _rss_peak() as peak:
        train_step(system, device, precision)
    return peak["bytes"]


def _release_free_heap() -> None:
    """Hand the C allocator's free memory back to the system (glibc only; elsewhere nothing to do)."""
    libc_name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(libc_name).malloc_trim(0)


@contextlib.contextmanager
def _rss_peak() -> Iterator[dict[str, int]]:
    """Yields a dict whose "bytes" is, on exit, the peak RSS of the block minus the RSS before it."""
    result = {"bytes": 0}
    status, clear_refs = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    try:
        before = _status_kib(status, "VmRSS")
        clear_refs.write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        with _sampled_rss_peak() as sampled:
            yield result
        result["bytes"] = sampled["bytes"]
        return
    yield result
    result["bytes"] = max(_status_kib(status, "VmHWM") - before, 0) * 1024


def _status_kib(status: Path, key: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise OSError(f"{status} has no {key} line.")


@contextlib.contextmanager
def _sampled_rss_peak() -> Iterator[dict[str, int]]:
    import psutil  # a dependency of accelerate

    process = psutil.Process()
    before = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(_RSS_SAMPLING_SECONDS):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = {"bytes": 0}
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result["bytes"] = max(peak, process.memory_info().rss) - before


# ----- the rounds -----------------------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _rates(amount: float, seconds: dict[str, Any]) -> dict[str, float]:
    """Per-second rates of `amount` from step times: the slowest step gives the min rate."""
    return {"median": amount / seconds["median"], "min": amount / seconds["max"], "max": amount / seconds["min"]}


def _check_loss(system: System, loss: torch.Tensor) -> None:
    if not torch.isfinite(loss):
        raise RuntimeError(f"{system.name}: the training loss is {loss.item()}; the step is broken at this precision.")


def measure_systems(
    systems: list[System],
    *,
    rounds: int,
    device: str,
    precision: str,
    new_tokens: int,
    progress: Callable[[str], None] = logger.info,
    compile: bool = False,
) -> list[dict[str, Any]]:
    """Warm up, time `rounds` interleaved rounds, then measure memory (see the module docstring). With `compile`,
    every system is compiled first ([`compile_system`]): the warm-up round compiles, so compile time is excluded
    from the timed rounds and reported apart (`warm_up_s`).

    Returns:
        `list[dict]`: one row per system: its name, label, group, parameters, decoder positions, step and generation
        times (`{"median", "min", "max", "runs"}` in seconds), `train_samples_per_s`, `generation_tokens_per_s`,
        the memory in MiB, and the speed ratios against its peer and against GPT-2 alone (see [`add_ratios`]).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}.")
    autocast(device, precision)  # checks the precision before any work
    compiled_generation, warm_up = {}, {}
    for system in systems:
        progress(f"warm-up: {system.name}")
        compiled_generation[system.name] = compile_system(system) if compile else False
        started = time.perf_counter()
        _check_loss(system, train_step(system, device, precision))
        generate(system, device, precision, new_tokens)
        warm_up[system.name] = time.perf_counter() - started
    train_times: dict[str, list[float]] = {system.name: [] for system in systems}
    generation_times: dict[str, list[float]] = {system.name: [] for system in systems}
    tokens: dict[str, int] = {}
    for round_index in range(1, rounds + 1):
        for system in systems:
            seconds, loss = _timed(device, functools.partial(train_step, system, device, precision))
            train_times[system.name].append(seconds)
            _check_loss(system, loss)
            seconds, tokens[system.name] = _timed(
                device, functools.partial(generate, system, device, precision, new_tokens)
            )
            generation_times[system.name].append(seconds)
            progress(
                f"round {round_index}/{rounds}: {system.name}: train step {train_times[system.name][-1]:.3f} s, "
                f"generation {seconds:.3f} s"
            )
    rows = []
    for system in systems:
        progress(f"memory: {system.name}")
        step_peak = step_peak_bytes(system, device, precision)
        rows.append(_row(system, train_times[system.name], generation_times[system.name], tokens[system.name]))
        resident = resident_bytes(system)
        rows[-1].update(
            compiled=compile,
            compiled_generation=compiled_generation[system.name],
            warm_up_s=warm_up[system.name],
            resident_mib=resident / MEBIBYTE,
            step_peak_mib=step_peak / MEBIBYTE,
            peak_memory_mib=(resident + step_peak) / MEBIBYTE,
        )
    return add_ratios(rows)


def _row(system: System, train_times: list[float], generation_times: list[float], tokens: int) -> dict[str, Any]:
    parameters = {id(parameter): parameter for parameter in system.model.parameters()}.values()
    train_step_s, generation_s = _spread(train_times), _spread(generation_times)
    return {
        "name": system.name,
        "label": system.label,
        "group": system.group,
        "peer": system.peer,
        "parameters": sum(parameter.numel() for parameter in parameters),
        "trainable_parameters": sum(parameter.numel() for parameter in parameters if parameter.requires_grad),
        "decoder_positions": system.decoder_positions,
        "train_step_s": train_step_s,
        "train_samples_per_s": _rates(len(system.train_batch["labels"]), train_step_s),
        "generation_s": generation_s,
        "generation_tokens_per_s": _rates(tokens, generation_s),
    }


def benchmark_settings(
    *, command: str, device: str, precision: str, rounds: int, shapes: PeerShapes, seed: int, compile: bool = False
) -> dict[str, Any]:
    """What a result depends on besides the code: the command, device, precision, shapes and library versions."""
    return {
        "command": command,
        "device": device,
        "device_name": torch.cuda.get_device_name()
        if device == "cuda"
        else platform.processor() or platform.machine(),
        "precision": precision,
        "compile": compile,
        "rounds": rounds,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "shapes": dataclasses.asdict(shapes),
        "memory_method": MEMORY_METHOD[device],
    }


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `vs_peer` and `vs_gpt2` to each row: its median training samples/s and generation tokens/s divided by
    those of its peer (VisionEncoderDecoder for vision rows, SpeechEncoderDecoder for audio rows) and of GPT-2
    alone; `None` where that system was not measured (or for GPT-2 alone against a peer)."""
    by_name = {row["name"]: row for row in rows}

    def ratios(row: dict[str, Any], baseline: str | None) -> dict[str, float] | None:
        if baseline not in by_name:
            return None
        return {
            "baseline": baseline,
            "train": row["train_samples_per_s"]["median"] / by_name[baseline]["train_samples_per_s"]["median"],
            "generation": row["generation_tokens_per_s"]["median"]
            / by_name[baseline]["generation_tokens_per_s"]["median"],
        }

    for row in rows:
        row["vs_peer"] = ratios(row, row["peer"])
        row["vs_gpt2"] = ratios(row, TEXT_ONLY)
    return rows


__all__ = [
    "PRECISIONS",
    "add_ratios",
    "autocast",
    "benchmark_settings",
    "compile_system",
    "generate",
    "measure_systems",
    "step_peak_bytes",
    "train_step",
]
