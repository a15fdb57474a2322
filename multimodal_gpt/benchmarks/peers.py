"""MultimodalGPT against the Transformers models it replaces, side by side in one process: VisionEncoderDecoder
(CLIP + GPT-2 cross-attention), LLaVA-HF (CLIP + projector + GPT-2), SpeechEncoderDecoder (wav2vec2 + GPT-2
cross-attention), GPT-2 alone on the same text, and ours for every fusion, for captioning and ASR.

    multimodal-gpt benchmark peers                                      # every system, CPU, fp32, 3 rounds
    multimodal-gpt benchmark peers --precision bf16 --device cuda --rounds 5
    multimodal-gpt benchmark peers --systems vision_encoder_decoder,ours_captioning_resampler --rounds 1

Shapes (issue 14's): CLIP-ViT 6x384 at 224 px / patch 32, GPT-2 6x512 with GPT-2's 50,257-token vocabulary (+ our
3 special tokens), wav2vec2 6x384 on 1 s of 16 kHz audio; batch 8, 32 labelled text tokens; random weights from
configs, nothing downloaded. Per system: a training step (forward + backward + AdamW) as samples/s, greedy
generation of 20 new tokens with the KV cache as tokens/s, and the peak memory of a training step; ratios against
VisionEncoderDecoder (vision rows), SpeechEncoderDecoder (audio rows) and GPT-2 alone. One untimed warm-up round, then
--rounds rounds that each go once round every system; medians with min-max. Writes results.json, results.md and
results.png to --output_dir. Every model and its AdamW state stays in memory (about 11 GB of RAM at the default
shapes, fp32). Time nothing while other heavy jobs share the machine. The systems are built in `peer_systems`, timed
in `measure` and reported by `report`.
"""

import logging
import shlex
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser

from .measure import PRECISIONS, benchmark_settings, measure_systems
from .peer_systems import ISSUE_SHAPES, SYSTEM_NAMES, TINY_SHAPES, build_systems
from .report import write_results

logger = logging.getLogger("benchmark_peers")


@dataclass
class PeerBenchmarkArguments:
    output_dir: str = field(
        default="runs/benchmark_peers", metadata={"help": "Where results.json, results.md and results.png go."}
    )
    device: str = field(default="cpu", metadata={"help": "cpu or cuda: every system runs on it."})
    precision: str = field(
        default="fp32",
        metadata={"help": "fp32, or bf16 (autocast around every forward and generation, every row alike)."},
    )
    rounds: int = field(
        default=3, metadata={"help": "Timed rounds after the warm-up round; each round times every system once."}
    )
    systems: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated subset of the systems, for a quick look (default: all): "
            + ", ".join(SYSTEM_NAMES)
            + ". Ratios need the peer (vision_encoder_decoder, speech_encoder_decoder) and gpt2 in the subset."
        },
    )
    tiny: bool = field(
        default=False,
        metadata={
            "help": "Tiny shapes (1-layer models, 32 px images, a 400-token vocabulary): checks the machinery "
            "in seconds; the figures mean nothing."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the weights and of the images, clips and captions."})
    compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile every system's training step, and generate with a static cache and a compiled "
            "decoding step where the model supports it (ours, LLaVA, GPT-2; the encoder-decoder peers decode "
            "eagerly). The warm-up round compiles: compile time is excluded and reported apart."
        },
    )
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})


def main(argv: list[str] | None = None) -> dict:
    # 1. Parse input arguments
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser(PeerBenchmarkArguments, prog="multimodal-gpt benchmark peers", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(argv)
    if args.device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {args.device!r}.")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device: use --device cpu.")
    if args.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {args.precision!r}.")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {args.rounds}.")

    # 2. Logging: progress lines (which system, which round) on stderr
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)

    # 3. Build every system, ours through the package's processor and collators
    shapes = TINY_SHAPES if args.tiny else ISSUE_SHAPES
    names = (
        SYSTEM_NAMES if args.systems is None else [name.strip() for name in args.systems.split(",") if name.strip()]
    )
    logger.info(f"building {len(names)} system(s) on {args.device}")
    systems = build_systems(names, shapes=shapes, device=args.device, seed=args.seed)

    # 4. Warm up, time the interleaved rounds, measure memory
    rows = measure_systems(
        systems,
        rounds=args.rounds,
        device=args.device,
        precision=args.precision,
        new_tokens=shapes.new_tokens,
        progress=logger.info,
        compile=args.compile,
    )

    # 5. Write results.json, results.md and results.png
    command = shlex.join(["multimodal-gpt", "benchmark", "peers", *argv])
    settings = benchmark_settings(
        command=command,
        device=args.device,
        precision=args.precision,
        rounds=args.rounds,
        shapes=shapes,
        seed=args.seed,
        compile=args.compile,
    )
    results = {"settings": settings, "systems": rows}
    paths = write_results(results, args.output_dir)
    print(paths["markdown"].read_text())
    logger.info(f"wrote {', '.join(str(path) for path in paths.values())}")
    return results


if __name__ == "__main__":
    main()
