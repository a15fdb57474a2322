"""Long-form ASR: WER of the chunked ASR pipeline on the read-speech clips longer than the audio tower's window.

The read-speech set (`../shared/data/read_speech`, one speaker, 2.6-12.4 s clips) is split as `multimodal-gpt train
--dataset_name read_speech` splits it: the first 121 sentences train, the last 20 validate. Without
--model_name_or_path the script first trains an ASR model from --preset on the training clips that fit its
Whisper-style window (`--max_duration_in_seconds`: a clip with one transcript cannot be cut into shorter training
chunks, so with the small preset's 4 s window that leaves 12 of the 121 training clips). Then it transcribes every
clip of --split that is longer than the window with `MultimodalGPTSpeechRecognitionPipeline` (overlapping chunks,
merged), batched, and scores WER / CER.

    multimodal-gpt benchmark long_form_asr --model_name_or_path runs/asr_read_speech       # a trained checkpoint
    multimodal-gpt benchmark long_form_asr --train_steps 600                                # train, then score
    multimodal-gpt benchmark long_form_asr --train_steps 5 --max_clips 2 --max_new_tokens 8   # a quick look

Writes `long_form_results.json` and `long_form_predictions.jsonl` (with each clip's chunks and their timestamps) to
--output_dir.
"""

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile
import transformers
from transformers import AutoProcessor, HfArgumentParser, TrainingArguments

from ..data.sources import load_task_data
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from ..pipeline_multimodal_gpt import MultimodalGPTSpeechRecognitionPipeline
from ..training.arguments import DataArguments, ModelArguments
from ..training.metrics import compute_metrics_for_task
from ..training.presets import load_preset
from ..training.run import run

logger = logging.getLogger(__name__)


@dataclass
class LongFormArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An ASR checkpoint to score. Default: train one from --preset first."}
    )
    output_dir: str = field(default="runs/long_form_asr", metadata={"help": "Where the model and results go."})
    data_dir: str | None = field(
        default=None, metadata={"help": "The data folder. Default: $MMGPT_DATA_DIR, else ../shared/data."}
    )
    split: str = field(default="validation", metadata={"help": "The read-speech split to score: validation, train."})
    preset: str = field(default="small", metadata={"help": "The preset of a model trained here."})
    train_steps: int = field(default=600, metadata={"help": "Optimizer steps of the model trained here."})
    batch_size: int = field(default=16, metadata={"help": "Training batch size of the model trained here."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of the model trained here."})
    chunk_length_s: float | None = field(
        default=None, metadata={"help": "Chunk length in seconds (default: the audio tower's window)."}
    )
    stride_length_s: float | None = field(
        default=None, metadata={"help": "Overlap on each side of a chunk, in seconds (default: a sixth of the chunk)."}
    )
    eval_batch_size: int = field(default=8, metadata={"help": "Chunks transcribed per batch."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest transcript of one chunk, in tokens."})
    max_clips: int | None = field(default=None, metadata={"help": "Score at most this many long clips."})
    seed: int = field(default=0, metadata={"help": "Seed of the training run."})


def train_asr_model(args: LongFormArguments) -> str:
    """Train an ASR model from --preset on the read-speech training clips that fit its window; returns its folder."""
    audio_config = load_preset(args.preset).get("audio_config") or {}
    if "max_source_positions" not in audio_config:
        raise ValueError(f"--preset {args.preset} has no Whisper-style audio tower: this benchmark needs a window.")
    window_seconds = audio_config["max_source_positions"] * 2 / 100  # 2 mel frames of 10 ms a position
    output_dir = Path(args.output_dir) / "model"
    model_args = ModelArguments(preset=args.preset)
    data_args = DataArguments(
        task="asr",
        dataset_name="read_speech",
        data_dir=args.data_dir,
        max_duration_in_seconds=window_seconds,
    )  # trains only (no --do_eval): the long clips are scored below, chunked
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=args.train_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=max(args.train_steps // 10, 1),
        weight_decay=0.01,
        logging_steps=max(args.train_steps // 10, 1),
        save_strategy="no",
        report_to=[],
        do_train=True,
        use_cpu=True,
        seed=args.seed,
    )
    run(model_args, data_args, training_args)
    return str(output_dir)


def long_clips(args: LongFormArguments, window_seconds: float | None) -> list[dict]:
    """The rows of --split whose clip is longer than the window (all rows for a tower without one)."""
    data_args = DataArguments(
        task="asr", dataset_name="read_speech", data_dir=args.data_dir, eval_split_name=[args.split]
    )
    rows = list(load_task_data(data_args, train=False).evaluation[args.split])
    for row in rows:
        row["seconds"] = soundfile.info(row["audio"]).duration
    selected = [row for row in rows if window_seconds is None or row["seconds"] > window_seconds]
    return selected[: args.max_clips] if args.max_clips is not None else selected


def main(argv: list[str] | None = None) -> dict:
    # 1. Parse input arguments
    parser = HfArgumentParser(LongFormArguments, prog="multimodal-gpt benchmark long_form_asr", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()

    # 2. The checkpoint: given, or trained here on the short training clips
    checkpoint = args.model_name_or_path or train_asr_model(args)
    model = MultimodalGPTForConditionalGeneration.from_pretrained(checkpoint)
    processor = AutoProcessor.from_pretrained(checkpoint)
    asr = MultimodalGPTSpeechRecognitionPipeline(model=model, processor=processor, device="cpu")

    # 3. The clips longer than the window
    rows = long_clips(args, asr.window_seconds)
    if not rows:
        raise ValueError(f"No {args.split} clip is longer than the {asr.window_seconds} s window.")
    logger.info("%d %s clips longer than the %s s window", len(rows), args.split, asr.window_seconds)

    # 4. Transcribe, chunked and batched
    start = time.perf_counter()
    chunking = {"chunk_length_s": args.chunk_length_s, "stride_length_s": args.stride_length_s}
    outputs = asr(
        [row["audio"] for row in rows],
        batch_size=args.eval_batch_size,
        return_timestamps=True,
        max_new_tokens=args.max_new_tokens,
        **{name: value for name, value in chunking.items() if value is not None},
    )
    seconds = time.perf_counter() - start

    # 5. Score and write the results
    predictions = [output["text"] for output in outputs]
    scores = compute_metrics_for_task("asr", predictions, [row["text"] for row in rows])
    results = {
        **scores,
        "clips": len(rows),
        "audio_seconds": sum(row["seconds"] for row in rows),
        "chunks": sum(len(output["chunks"]) for output in outputs),
        "window_seconds": asr.window_seconds,
        "transcription_seconds": seconds,
        "checkpoint": checkpoint,
        "arguments": asdict(args),
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "long_form_results.json").write_text(json.dumps(results, indent=2))
    with (output_dir / "long_form_predictions.jsonl").open("w", encoding="utf-8") as file:
        for row, output in zip(rows, outputs):
            record = {"audio": row["audio"], "seconds": row["seconds"], "reference": row["text"], **output}
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(
        f"Long-form ASR on {len(rows)} {args.split} clips longer than the {asr.window_seconds} s window "
        f"({results['audio_seconds']:.0f} s of audio, {results['chunks']} chunks): WER {scores['wer']:.3f}, "
        f"CER {scores['cer']:.3f}; transcription took {seconds:.1f} s."
    )
    return results


if __name__ == "__main__":
    main()
