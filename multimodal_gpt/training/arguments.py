"""The command-line arguments of training and evaluation (`HfArgumentParser` dataclasses: each field's `help` is its
documentation), next to the `TrainingArguments` of the `Trainer`."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint folder or Hub id to continue from (e.g. a pretraining run). Default: a new "
            "model from --preset."
        },
    )
    preset: str = field(
        default="small",
        metadata={
            "help": "Named configuration for a new model: 'tiny' (demo, seconds per step) or 'small' (real "
            "data on CPU), or a path to a preset JSON file (see multimodal_gpt/training/presets/)."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A GPT-2 tokenizer (folder or Hub id) for a new model. Default: train a byte-level BPE "
            "tokenizer on the training text (offline)."
        },
    )
    vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of a tokenizer trained here."})
    fusion: str | None = field(
        default=None,
        metadata={"help": "Override the preset's fusion: linear, mlp, resampler or cross_attention."},
    )
    freeze_towers: bool = field(default=False, metadata={"help": "Freeze the vision and audio towers."})
    freeze_language_model: bool = field(default=False, metadata={"help": "Freeze GPT-2 (and its tied head)."})
    train_only_fusion: bool = field(default=False, metadata={"help": "Train only the fusion (LLaVA stage 1)."})
    lora_r: int = field(
        default=0,
        metadata={
            "help": "LoRA rank (0: off, full finetuning). With r > 0 GPT-2 trains through LoRA adapters on its "
            "attention and MLP layers (needs peft: pip install -e '.[peft]'), the fusion in full, the rest frozen; "
            "the output folder holds the adapter. Continuing a LoRA run's folder trains its adapter further."
        },
    )
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scale numerator: updates are scaled alpha / r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_towers: bool = field(
        default=False, metadata={"help": "Also put LoRA on the vision and audio towers' linear layers."}
    )
    lora_train_new_tokens: bool = field(
        default=False,
        metadata={
            "help": "Also train the embedding rows of the tokens added to GPT-2 (<image>, <audio>, <|pad|>), tied "
            "input and output rows together: new and untrained when the base is a pretrained GPT-2."
        },
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "After training, also save the model with the adapter merged in, in <output_dir>/merged."},
    )


@dataclass
class DataArguments:
    task: str = field(metadata={"help": "pretrain, captioning, translation, asr or mmt."})
    dataset: str = field(
        default="real",
        metadata={
            "help": "'real': the layouts of ../shared/data (see --data_dir); 'synthetic': the built-in "
            "generated data set (no files needed)."
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "The data folder. Default: $MMGPT_DATA_DIR, else ../shared/data."}
    )
    asr_corpus: str = field(default="fsdd", metadata={"help": "For --task asr: 'fsdd' or 'read_speech'."})
    source_lang: str = field(default="en", metadata={"help": "Translation source language (Multi30k code)."})
    target_lang: str = field(default="de", metadata={"help": "Translation target language (Multi30k code)."})
    text_only: bool = field(
        default=False, metadata={"help": "For --task mmt: drop the images (the text-only baseline on the same rows)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many evaluation rows."})
    max_length: int = field(default=256, metadata={"help": "Longest training sequence, media tokens included."})
    max_new_tokens: int = field(default=48, metadata={"help": "Longest generated output in evaluation."})
    num_beams: int = field(default=1, metadata={"help": "Beam width of generation in evaluation (1: greedy)."})
    eval_splits: str = field(
        default="validation",
        metadata={"help": "Comma-separated splits scored after training (e.g. 'validation,test')."},
    )


IMAGE_TASKS = ("pretrain", "captioning", "mmt")


def check_generation_arguments(data_args: DataArguments, model_config: Any) -> None:
    """Fail before training on generation and length flags that would otherwise fail during or after it.

    Checks `--num_beams` and `--max_new_tokens` (at least 1), `--max_length` against the model's positions
    (GPT-2's `n_positions`), `--max_new_tokens` against the positions left for a prompt, and, for tasks with images,
    that one image's tokens fit `--max_length` (training) and leave room for `--max_new_tokens` (generation).

    Args:
        data_args ([`DataArguments`]): the parsed data and generation flags.
        model_config ([`MultimodalGPTConfig`]): the configuration of the model about to be trained.

    Raises:
        `ValueError`: naming the flag, its value, the limit and how to fix it.
    """
    if data_args.num_beams < 1:
        raise ValueError(f"--num_beams must be at least 1 (1: greedy decoding), got {data_args.num_beams}.")
    if data_args.max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens must be at least 1, got {data_args.max_new_tokens}: nothing to generate.")
    if data_args.max_length < 2:
        raise ValueError(f"--max_length must be at least 2 (bos and one target token), got {data_args.max_length}.")
    positions = model_config.text_config.n_positions
    if data_args.max_length > positions:
        raise ValueError(
            f"--max_length {data_args.max_length} exceeds the model's {positions} positions (n_positions): training "
            f"would fail at the first sequence longer than that. Use --max_length {positions} or less."
        )
    if data_args.max_new_tokens >= positions:
        raise ValueError(
            f"--max_new_tokens {data_args.max_new_tokens} leaves no room for a prompt in the model's {positions} "
            f"positions: use at most {positions - 2}."
        )
    has_images = data_args.task in IMAGE_TASKS and not (data_args.task == "mmt" and data_args.text_only)
    if has_images and model_config.vision_config is not None:
        image_tokens = model_config.num_image_tokens()
        if 1 + image_tokens + 1 > data_args.max_length:
            raise ValueError(
                f"--max_length {data_args.max_length} leaves no room for a target after an image's {image_tokens} "
                f"tokens (and bos): every sample with an image would be dropped. Raise --max_length above "
                f"{image_tokens + 1}, or send fewer image tokens (--fusion resampler)."
            )
        if 1 + image_tokens + data_args.max_new_tokens > positions:
            raise ValueError(
                f"--max_new_tokens {data_args.max_new_tokens} after an image's {image_tokens} tokens (and bos) "
                f"exceeds the model's {positions} positions: use --max_new_tokens {positions - image_tokens - 1} or "
                "less."
            )


__all__ = ["DataArguments", "ModelArguments", "check_generation_arguments"]
