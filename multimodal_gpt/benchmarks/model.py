"""Parameter counts and training-step time of a preset model, per fusion, on CPU or GPU; plus the media token counts
an image and a one-second clip become. On a GPU it also checks bf16 training and cached generation.

    multimodal-gpt benchmark model                                      # small preset, CPU, batch 8
    multimodal-gpt benchmark model --device cuda --batch_size 32 --dtype bfloat16

Each timing is the median of --repeats forward+backward+AdamW steps after --warmup steps, all fusions in one run
(timings on shared machines are noisy: compare within one run).
"""

import json
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser

from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from ..training.presets import preset_config

FUSIONS = ("linear", "mlp", "resampler", "cross_attention")
VOCAB_SIZE = 8000
TOKEN_IDS = dict(bos_token_id=0, eos_token_id=0, pad_token_id=1, image_token_id=2, audio_token_id=3)


@dataclass
class BenchmarkArguments:
    preset: str = field(default="small", metadata={"help": "Model preset (see multimodal_gpt/training/presets/)."})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    dtype: str = field(default="float32", metadata={"help": "Autocast dtype on GPU: float32 or bfloat16."})
    batch_size: int = field(default=8, metadata={"help": "Samples per step: half image + text, half audio + text."})
    text_tokens: int = field(default=32, metadata={"help": "Text tokens per sample besides the media."})
    clip_seconds: float = field(default=1.0, metadata={"help": "Length of each audio clip."})
    warmup: int = field(default=2, metadata={"help": "Untimed steps first."})
    repeats: int = field(default=5, metadata={"help": "Timed steps; the median is reported."})
    output_file: str | None = field(default=None, metadata={"help": "Also write the rows as JSON here."})


def make_batch(model, args: BenchmarkArguments) -> dict[str, torch.Tensor]:
    """Half the samples carry an image, half a clip; every sample has `text_tokens` labelled text tokens."""
    config = model.config
    num_images = args.batch_size // 2
    num_clips = args.batch_size - num_images
    image_tokens = [config.image_token_id] * config.num_image_tokens()
    window = config.audio_config.max_source_positions * 2  # Whisper-style tower: fixed window of 10 ms frames
    frames = int(args.clip_seconds * 100)
    audio_tokens = [config.audio_token_id] * config.num_audio_tokens(frames)
    text = torch.randint(10, VOCAB_SIZE, (args.batch_size, args.text_tokens)).tolist()
    rows = [image_tokens + text[i] for i in range(num_images)] + [
        audio_tokens + text[num_images + i] for i in range(num_clips)
    ]
    longest = max(map(len, rows))
    input_ids = torch.tensor([row + [TOKEN_IDS["pad_token_id"]] * (longest - len(row)) for row in rows])
    labels = input_ids.clone()
    labels[(input_ids == config.image_token_id) | (input_ids == config.audio_token_id)] = -100
    labels[input_ids == TOKEN_IDS["pad_token_id"]] = -100
    image_size = config.vision_config.image_size
    mask = torch.zeros(num_clips, window, dtype=torch.long)
    mask[:, :frames] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != TOKEN_IDS["pad_token_id"]).long(),
        "labels": labels,
        "pixel_values": torch.randn(num_images, 3, image_size, image_size),
        "input_features": torch.randn(num_clips, config.audio_config.num_mel_bins, window),
        "input_features_mask": mask,
    }


def time_steps(model, batch, args: BenchmarkArguments) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(args.device, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")
    times = []
    for step in range(args.warmup + args.repeats):
        if args.device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    if not torch.isfinite(loss):
        raise RuntimeError(f"The loss is {loss.item()}: training diverged or the {args.dtype} path is broken.")
    return statistics.median(times)


@torch.no_grad()
def check_generation(model, batch) -> bool:
    """Cached and uncached greedy decoding give the same tokens (on this device and dtype)."""
    model.eval()
    prompt = {key: value for key, value in batch.items() if key not in ("labels",)}
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=TOKEN_IDS["pad_token_id"])
    cached = model.generate(**prompt, **kwargs)
    uncached = model.generate(**prompt, **kwargs, use_cache=False)
    model.train()
    return torch.equal(cached, uncached)


def main(argv: list[str] | None = None) -> list[dict]:
    # 1. Parse input arguments
    parser = HfArgumentParser(BenchmarkArguments, prog="multimodal-gpt benchmark model", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(sys.argv[1:] if argv is None else argv)
    torch.manual_seed(0)

    # 2. One model per fusion, the same batch shape for all
    rows = []
    for fusion in FUSIONS:
        config = preset_config(args.preset, vocab_size=VOCAB_SIZE, token_ids=TOKEN_IDS, fusion=fusion)
        model = MultimodalGPTForConditionalGeneration(config).to(args.device).train()
        batch = {key: value.to(args.device) for key, value in make_batch(model, args).items()}
        parameters = sum(parameter.numel() for parameter in model.parameters())
        seconds = time_steps(model, batch, args)
        rows.append(
            {
                "fusion": fusion,
                "parameters_M": round(parameters / 1e6, 2),
                "image_tokens": config.num_image_tokens(),
                "tokens_per_second_of_audio": config.num_audio_tokens(100),
                "sequence_length": batch["input_ids"].shape[1],
                "step_ms": round(seconds * 1000, 1),
                "samples_per_s": round(args.batch_size / seconds, 1),
                "generation_cache_ok": check_generation(model, batch),
            }
        )

    # 3. Report
    header = list(rows[0])
    print(f"preset {args.preset}, {args.device} {args.dtype}, batch {args.batch_size}, {args.text_tokens} text tokens")
    print("| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in header) + " |")
    if args.output_file:
        with open(args.output_file, "w") as file:
            json.dump({"args": vars(args), "rows": rows}, file, indent=2)
    return rows


if __name__ == "__main__":
    main()
