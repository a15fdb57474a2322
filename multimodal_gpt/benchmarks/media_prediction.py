"""Which next-element target for media pretraining, and does the causal tower matter? The measurement behind
`media_loss_weight`'s design.

    python -m multimodal_gpt.benchmarks.media_prediction                       # vision and audio, every arm
    python -m multimodal_gpt.benchmarks.media_prediction --quick               # the machinery in minutes

Per modality, the same model (small preset; tokenizer trained on the downstream task's text) is pretrained on media
alone (Flickr8k training images, FSDD training clips: media-only rows) with next-element prediction, one arm per
objective, then finetuned on the downstream task (captioning, ASR) for the same steps, and scored on its validation
split (teacher-forced loss and the task metric):

- `none`: no media pretraining (the downstream run from scratch);
- `regression`: the package's objective, normalised patch pixels / log-mel frames regressed (squared error) with the
  towers causal;
- `leaky`: the same with the towers bidirectional (the trap: position i has seen element i+1). Its training loss
  collapses; scored as `regression` scores (towers causal), it has learned to copy, not to predict;
- `codes`: discrete targets, the index of the nearest of `--codebook_size` k-means centroids fitted offline on the
  same normalised targets ([`fit_codebook`]), predicted with cross-entropy (towers causal).

Writes `results.json` and `results.md` to --output_dir. Time nothing while other jobs share the machine.
"""

import copy
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from transformers import HfArgumentParser, Trainer, TrainingArguments

from ..configuration_multimodal_gpt import _pair
from ..data.collators import PretrainCollator
from ..data.corpora import default_data_dir, load_flickr8k, load_fsdd, split_fsdd_by_recording
from ..data.mix import media_rows
from ..data.sources import training_texts
from ..data.tasks import get_task
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from ..objectives_multimodal_gpt import frame_targets, patch_targets
from ..training import DataArguments, ModelArguments, run
from ..training.presets import build_model_and_processor

ARMS = ("none", "regression", "leaky", "codes")
DOWNSTREAM = {"vision": ("captioning", "cider", 32), "audio": ("asr", "wer", 8)}
QUICK = {"pretrain_steps": 6, "finetune_steps": 6, "batch_size": 8, "max_eval_samples": 16, "codebook_size": 16}


@dataclass
class MediaBenchmarkArguments:
    output_dir: str = field(default="runs/media_prediction", metadata={"help": "Where every run and the table go."})
    data_dir: str | None = field(default=None, metadata={"help": "Default: $MMGPT_DATA_DIR, else ../shared/data."})
    modalities: str = field(default="vision,audio", metadata={"help": "Comma-separated: vision, audio."})
    arms: str = field(default=",".join(ARMS), metadata={"help": f"Comma-separated among {', '.join(ARMS)}."})
    pretrain_steps: int = field(default=300, metadata={"help": "Optimizer steps of media pretraining."})
    finetune_steps: int = field(default=300, metadata={"help": "Optimizer steps of the downstream finetuning."})
    batch_size: int = field(default=32, metadata={"help": "Training batch size of every run."})
    learning_rate: float = field(
        default=1e-3, metadata={"help": "Peak learning rate (a tenth of the steps of warmup, linear decay)."}
    )
    codebook_size: int = field(default=256, metadata={"help": "k-means centroids of the `codes` arm."})
    preset: str = field(default="small", metadata={"help": "Model preset."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Validation rows scored (default: all)."})
    seed: int = field(default=0, metadata={"help": "Seed of every run."})
    quick: bool = field(
        default=False,
        metadata={"help": f"Minutes, not hours: {', '.join(f'--{k} {v}' for k, v in QUICK.items())} unless given."},
    )
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})


# ----- the arms that are not the package's objective -------------------------------------------------------------


class LeakyMediaPrediction(MultimodalGPTForConditionalGeneration):
    """The package's objective with bidirectional towers: the output at element i has seen element i + 1."""

    def _causal_towers(self, media_targets: dict) -> tuple[str, ...]:
        return ()


class CodeMediaPrediction(MultimodalGPTForConditionalGeneration):
    """Discrete next-element targets: the index of the nearest centroid of a k-means codebook (set `codebooks`,
    `{modality: (codebook_size, target_size)}`, on the class before building), predicted with cross-entropy."""

    codebooks: dict[str, torch.Tensor] = {}

    def _media_target_size(self, modality: str) -> int:
        return len(self.codebooks[modality])

    def _media_error(self, modality: str, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        codes = nearest_code(targets, self.codebooks[modality].to(targets.device))
        return F.cross_entropy(predictions.float(), codes, reduction="none")


def nearest_code(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of the nearest centroid of each vector (rows)."""
    return torch.cdist(vectors.float(), codebook.float()).argmin(-1)


def fit_codebook(vectors: torch.Tensor, size: int, iterations: int = 20, seed: int = 0) -> tuple[torch.Tensor, float]:
    """k-means (Lloyd's, initialised on random vectors) of `vectors` (N, dim): the codebook (size, dim) and the
    share of the vectors' variance the codes explain (1 - quantisation error / total variance)."""
    generator = torch.Generator().manual_seed(seed)
    codebook = vectors[torch.randperm(len(vectors), generator=generator)[:size]].clone()
    for _ in range(iterations):
        codes = nearest_code(vectors, codebook)
        for index in range(len(codebook)):
            members = vectors[codes == index]
            if len(members):
                codebook[index] = members.mean(0)
    error = (vectors - codebook[nearest_code(vectors, codebook)]).pow(2).sum(-1).mean()
    total = (vectors - vectors.mean(0)).pow(2).sum(-1).mean()
    return codebook, float(1 - error / total)


# ----- data ------------------------------------------------------------------------------------------------------


def media_only_rows(modality: str, root: Path, split: str) -> Any:
    """Images (Flickr8k) or clips (FSDD) of a split, alone: the pretraining rows."""
    if modality == "vision":
        return media_rows("image", ((row["image"], None) for row in load_flickr8k(root, split)))
    carved = split_fsdd_by_recording(load_fsdd(root, "train"))["train" if split == "train" else "validation"]
    return media_rows("audio", ((row["audio"], None) for row in carved))


def element_target_vectors(modality: str, model, collator: PretrainCollator, rows: Any, limit: int) -> torch.Tensor:
    """Up to `limit` normalised next-element targets of `rows` (what the `codes` arm quantises)."""
    vectors = []
    for start in range(0, len(rows), 64):
        batch = collator([rows[index] for index in range(start, min(start + 64, len(rows)))])
        if modality == "vision":
            targets = patch_targets(batch["pixel_values"], _pair(model.config.vision_config.patch_size))
            vectors.append(targets.flatten(0, 1))
        else:
            frames_per_token, lookahead = model._audio_token_span()
            targets = frame_targets(batch["input_features"], frames_per_token=frames_per_token, lookahead=lookahead)
            tokens = -(-batch["input_features_mask"].sum(-1) // frames_per_token)  # (clips,) tokens with audio
            vectors += [clip[:count] for clip, count in zip(targets, tokens.tolist())]
        if sum(len(v) for v in vectors) >= limit:
            break
    return torch.cat(vectors)[:limit]


# ----- runs ------------------------------------------------------------------------------------------------------


def pretraining_arguments(args: MediaBenchmarkArguments, output_dir: Path, steps: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=max(1, steps // 10),
        weight_decay=0.01,
        logging_steps=max(1, steps // 20),
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=args.seed,
        remove_unused_columns=False,
        disable_tqdm=True,
    )


def pretrain_arm(arm: str, modality: str, args: MediaBenchmarkArguments, base: Path, root: Path) -> dict[str, Any]:
    """Pretrain one arm on media alone; its loss curve and its validation media loss scored as the package's
    objective scores it (towers causal, squared error; not for `codes`, whose head predicts codes)."""
    output_dir = base.parent / arm
    model_class = {"regression": MultimodalGPTForConditionalGeneration, "leaky": LeakyMediaPrediction}.get(
        arm, CodeMediaPrediction
    )
    model, processor = build_model_and_processor(
        args.preset, tokenizer_name_or_path=str(base), config_overrides={"media_loss_weight": {modality: 1.0}}
    )
    collator = PretrainCollator(processor=processor, media_targets=(modality,))
    result: dict[str, Any] = {}
    if arm == "codes":
        vectors = element_target_vectors(modality, model, collator, media_only_rows(modality, root, "train"), 20000)
        codebook, explained = fit_codebook(vectors, args.codebook_size, seed=args.seed)
        CodeMediaPrediction.codebooks = {modality: codebook}
        result["codebook_variance_explained"] = explained
    torch.manual_seed(args.seed)
    model = model_class(model.config)
    trainer = Trainer(
        model=model,
        args=pretraining_arguments(args, output_dir, args.pretrain_steps),
        train_dataset=media_only_rows(modality, root, "train"),
        data_collator=collator,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result.update(media_loss_first=losses[0], media_loss_last=losses[-1], media_loss_curve=losses)
    if arm != "codes":
        honest = MultimodalGPTForConditionalGeneration(model.config)
        honest.load_state_dict(model.state_dict())
        evaluator = Trainer(model=honest, args=trainer.args, data_collator=collator)
        rows = media_only_rows(modality, root, "val")
        if args.max_eval_samples:
            rows = rows.select(range(min(args.max_eval_samples, len(rows))))
        result["validation_media_loss_causal"] = evaluator.evaluate(rows)["eval_loss"]
    finetuning_start(model).save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return result


def finetuning_start(model: MultimodalGPTForConditionalGeneration) -> MultimodalGPTForConditionalGeneration:
    """An arm's pretrained weights in the package's own class, without the media prediction heads that finetuning
    drops (`--media_loss_weight 0`): `save_pretrained` ships the code of the model's class, and the arms' subclasses
    live in this benchmark module, whose relative imports transformers' code shipping cannot follow (the `codes`
    head also has another shape than the package's)."""
    config = copy.deepcopy(model.config)
    config.media_loss_weight = 0.0
    start = MultimodalGPTForConditionalGeneration(config)
    heads = "media_prediction_heads."
    start.load_state_dict({name: value for name, value in model.state_dict().items() if not name.startswith(heads)})
    return start


def finetune_arm(arm: str, modality: str, args: MediaBenchmarkArguments, base: Path, root: Path) -> dict[str, Any]:
    task, _, max_new_tokens = DOWNSTREAM[modality]
    start = (
        ["--preset", args.preset, "--tokenizer_name_or_path", str(base)]
        if arm == "none"
        else ["--model_name_or_path", str(base.parent / arm), "--media_loss_weight", "0"]
    )
    flags = [
        "--task", task, "--output_dir", str(base.parent / f"{arm}_{task}"), "--data_dir", str(root),
        "--max_steps", str(args.finetune_steps), "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", "64", "--learning_rate", str(args.learning_rate),
        "--warmup_steps", str(max(1, args.finetune_steps // 10)), "--weight_decay", "0.01",
        "--max_new_tokens", str(max_new_tokens), "--seed", str(args.seed), "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true", "--do_train", "--do_eval",
    ]  # fmt: skip
    if args.max_eval_samples:
        flags += ["--max_eval_samples", str(args.max_eval_samples)]
    if not torch.cuda.is_available():
        flags.append("--use_cpu")
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    return run(*parser.parse_args_into_dataclasses([*flags, *start]))


def base_tokenizer(modality: str, args: MediaBenchmarkArguments, root: Path, folder: Path) -> Path:
    """One tokenizer for every arm of a modality, trained on its downstream task's training text."""
    if not (folder / "tokenizer.json").is_file():
        task = get_task(DOWNSTREAM[modality][0])
        data = load_flickr8k(root, "train") if modality == "vision" else load_fsdd(root, "train")
        _, processor = build_model_and_processor(args.preset, texts=training_texts(data, task))
        processor.save_pretrained(folder)
    return folder


# ----- entry point -----------------------------------------------------------------------------------------------


def markdown_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| modality | arm | media loss, first -> last logged | validation media loss (causal) | "
        "downstream eval loss | downstream metric |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for modality, arms in results.items():
        _, metric, _ = DOWNSTREAM[modality]
        for arm, row in arms.items():
            curve = (
                f"{row['media_loss_first']:.3f} -> {row['media_loss_last']:.3f}" if "media_loss_first" in row else ""
            )
            causal = f"{row['validation_media_loss_causal']:.3f}" if "validation_media_loss_causal" in row else ""
            lines.append(
                f"| {modality} | {arm} | {curve} | {causal} | {row['eval_loss']:.3f} | "
                f"{metric} {row[f'eval_{metric}']:.4g} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # 1. Arguments
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser(
        MediaBenchmarkArguments, prog="multimodal-gpt benchmark media_prediction", description=__doc__
    )
    (args,) = parser.parse_args_into_dataclasses(argv)
    if args.quick:
        given = {arg.lstrip("-").split("=")[0] for arg in argv if arg.startswith("--")}
        for name, value in QUICK.items():
            if name not in given:
                setattr(args, name, value)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data_dir) if args.data_dir else default_data_dir()
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise ValueError(f"--arms {unknown}: choose among {ARMS}.")

    # 2. Per modality and arm: pretrain on media alone (not `none`), finetune downstream, score
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for modality in (part.strip() for part in args.modalities.split(",") if part.strip()):
        folder = Path(args.output_dir) / modality
        base = base_tokenizer(modality, args, root, folder / "tokenizer")
        results[modality] = {}
        for arm in arms:
            print(f"{modality}: {arm}...")
            row = {} if arm == "none" else pretrain_arm(arm, modality, args, base, root)
            row.update(finetune_arm(arm, modality, args, base, root))
            results[modality][arm] = row

    # 3. Table and JSON
    table = markdown_table(results)
    print("\n" + table)
    Path(args.output_dir, "results.md").write_text(table)
    Path(args.output_dir, "results.json").write_text(json.dumps({"results": results, "args": asdict(args)}, indent=2))
    return results


if __name__ == "__main__":
    main()
