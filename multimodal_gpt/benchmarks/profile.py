"""Where a training step (or a generation) of the peer benchmark's systems spends its time: `torch.profiler`, the
operators with the most self time.

    python -m multimodal_gpt.benchmarks.profile --systems vision_encoder_decoder,ours_captioning_linear
    python -m multimodal_gpt.benchmarks.profile --systems ours_asr_mlp --what generation --top 15

Each system (the peer benchmark's, see `peers`) warms up with one untimed step (and generation), then one step (or
one greedy generation of `new_tokens` tokens) runs under the profiler; the table lists its top operators by self CPU
time (self CUDA time on `--device cuda`), in ms, with their call counts and share of the total, and the profiled
wall time. Operators are aten's (`aten::mm`, `aten::addmm`, `aten::bmm` are the matrix products; the attention
kernels are `aten::_scaled_dot_product_*`). Writes profile.md to `--output_dir`. Time nothing while other heavy jobs
share the machine.
"""

import argparse
import functools
import shlex
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from .measure import PRECISIONS, generate, train_step
from .peer_systems import ISSUE_SHAPES, SYSTEM_NAMES, TINY_SHAPES, build_systems


def profiled_table(system, *, what: str, device: str, precision: str, new_tokens: int, top: int) -> str:
    """One warm-up, then the profiled step or generation of `system`: a markdown table of its top operators."""
    if what == "train":
        work = functools.partial(train_step, system, device, precision)
    else:
        work = functools.partial(generate, system, device, precision, new_tokens)
    work()  # warm-up: lazy initialisation, AdamW's state
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    started = time.perf_counter()
    with profile(activities=activities) as profiler:
        work()
        if device == "cuda":
            torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - started) * 1000
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    events = sorted(profiler.key_averages(), key=lambda event: getattr(event, key), reverse=True)
    total = sum(getattr(event, key) for event in events) or 1
    lines = [
        f"### {system.label}: {'training step' if what == 'train' else 'generation'}, {wall_ms:,.0f} ms profiled",
        "",
        "| operator | self time (ms) | calls | share |",
        "| --- | --- | --- | --- |",
    ]
    for event in events[:top]:
        self_time = getattr(event, key)
        lines.append(f"| `{event.key}` | {self_time / 1000:,.1f} | {event.count} | {self_time / total:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    # 1. Arguments
    parser = argparse.ArgumentParser(
        prog="multimodal-gpt benchmark profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--systems", required=True, help=f"Comma-separated, among: {', '.join(SYSTEM_NAMES)}.")
    parser.add_argument("--what", choices=["train", "generation"], default="train")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--top", type=int, default=10, help="Operators listed per system.")
    parser.add_argument("--tiny", action="store_true", help="Tiny shapes (the machinery only).")
    parser.add_argument("--output_dir", default="runs/benchmark_profile")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.systems.split(",") if name.strip()]

    # 2. Profile each system
    shapes = TINY_SHAPES if args.tiny else ISSUE_SHAPES
    command = shlex.join(
        ["python", "-m", "multimodal_gpt.benchmarks.profile", *(argv if argv is not None else sys.argv[1:])]
    )
    sections = [f"# Profiles\n\n`{command}`\n"]
    for system in build_systems(names, shapes=shapes, device=args.device):
        sections.append(
            profiled_table(
                system,
                what=args.what,
                device=args.device,
                precision=args.precision,
                new_tokens=shapes.new_tokens,
                top=args.top,
            )
        )

    # 3. profile.md
    report = "\n".join(sections)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "profile.md").write_text(report)
    print(report)
    return report


if __name__ == "__main__":
    main()
