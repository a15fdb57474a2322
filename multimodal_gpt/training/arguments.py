"""The command-line arguments of training and evaluation (`HfArgumentParser` dataclasses: each field's `help` is its
documentation), next to the `TrainingArguments` of the `Trainer`."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from transformers import Seq2SeqTrainingArguments

DEFAULT_PRESET = "small"
DEFAULT_VOCAB_SIZE = 8000
DEFAULT_MAX_NEW_TOKENS = 48


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint folder or Hub id to continue from (e.g. a pretraining run). Default: a new "
            "model from --preset."
        },
    )
    preset: str | None = field(
        default=None,
        metadata={
            "help": "Named configuration for a new model: 'tiny' (demo, seconds per step) or 'small' (real "
            "data on CPU), or a path to a preset JSON file (see multimodal_gpt/training/presets/). Default: small. "
            "Not with --model_name_or_path, whose configuration is the checkpoint's."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A GPT-2 tokenizer (folder or Hub id) for a new model. Default: train a byte-level BPE "
            "tokenizer on the training text (offline). Not with --model_name_or_path, whose tokenizer is the "
            "checkpoint's."
        },
    )
    vocab_size: int | None = field(
        default=None,
        metadata={
            "help": f"Vocabulary size of a tokenizer trained here (default {DEFAULT_VOCAB_SIZE}; a small corpus may "
            "give fewer tokens). Not with --model_name_or_path or --tokenizer_name_or_path."
        },
    )
    fusion: str | None = field(
        default=None,
        metadata={
            "help": "Override the preset's fusion: linear, mlp, resampler or cross_attention. Not with "
            "--model_name_or_path."
        },
    )
    freeze_towers: bool = field(default=False, metadata={"help": "Freeze the vision and audio towers."})
    freeze_language_model: bool = field(default=False, metadata={"help": "Freeze GPT-2 (and its tied head)."})
    freeze_feature_encoder: bool = field(
        default=False,
        metadata={
            "help": "Freeze the audio tower's convolutional front end (wav2vec2-family feature encoder, Whisper's "
            "two convolutions), as Transformers' speech examples do when finetuning a pretrained encoder; the "
            "tower's transformer layers still train. For a tower trained from scratch, leave it off."
        },
    )
    train_only_fusion: bool = field(
        default=False,
        metadata={"help": "Train only the fusion (LLaVA stage 1): for tasks with media (not translation)."},
    )
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
    recipe: str | None = field(
        default=None,
        metadata={
            "help": "A training recipe: a name (pretrain, asr, translation, captioning, mmt; see "
            "multimodal_gpt/training/recipes/) or a JSON / YAML file of flags. Its values are the defaults of this "
            "run; flags given on the command line win. The output folder records it in recipe.json."
        },
    )
    media_loss_weight: str | None = field(
        default=None,
        metadata={
            "help": "Next-element prediction for media (pretraining): the weight of the media loss against the text "
            "loss, for every modality ('0.5') or per modality ('vision=0.5,audio=1'); 0 turns it off. Sets the "
            "config of a new model, or of the checkpoint continued (0 drops a pretraining checkpoint's heads). "
            "Default: the preset's or the checkpoint's."
        },
    )
    tower_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the vision and audio towers (default: --learning_rate)."}
    )
    fusion_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the fusion: projectors, resamplers, gated cross-attention, media prediction "
            "heads (default: --learning_rate)."
        },
    )
    embedding_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of GPT-2's token and position embeddings (and tied LM head)."},
    )
    language_model_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of GPT-2's blocks and final norm (default: --learning_rate)."}
    )
    train_only_fusion_steps: int = field(
        default=0,
        metadata={
            "help": "Staged training: the first N optimizer steps train only the fusion (towers and GPT-2 frozen), "
            "then everything trains (0: off). Unlike --train_only_fusion, which freezes them for the whole run."
        },
    )
    self_critical_samples: int = field(
        default=0,
        metadata={
            "help": "Self-critical sequence training (SCST) instead of the teacher-forced loss, to finetune a trained "
            "model (--model_name_or_path) on its task's metric: each step samples this many outputs per training row "
            "and trains towards those whose reward beats the mean of the row's other samples (captioning: CIDEr-D, "
            "document frequencies from the training references; translation, mmt: sentence BLEU; asr: 1 - WER). "
            "0: off; else at least 2. Each step generates and scores this many outputs per row. See "
            "multimodal_gpt/training/self_critical.py."
        },
    )
    self_critical_cross_entropy_weight: float = field(
        default=0.0,
        metadata={
            "help": "With --self_critical_samples: add the teacher-forced loss of the same rows (their reference, "
            "with the run's augmentation and label smoothing) with this weight (the mixed objective; 0: the "
            "self-critical loss alone)."
        },
    )
    average_checkpoints: int = field(
        default=0,
        metadata={
            "help": "Save as the final model the average of the weights of the last N completed checkpoints (0: "
            "off; needs --save_strategy steps, and --save_total_limit of at least N if set)."
        },
    )


@dataclass
class DataArguments:
    """Which data a run reads, named as in the Transformers example scripts (`run_speech_recognition_seq2seq.py`,
    `run_translation.py`): a built-in corpus, a `datasets` data set (Hub id or local folder) or data files, any split
    names, any column names. See `multimodal_gpt.data.sources`."""

    task: str = field(metadata={"help": "pretrain, captioning, translation, asr or mmt."})
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "The data: a built-in corpus (fsdd, read_speech, multi30k, flickr8k, read under --data_dir; "
            "synthetic, generated), a local folder (an imagefolder / audiofolder with a metadata.csv / .jsonl / "
            ".parquet file, a save_to_disk folder, or any folder datasets.load_dataset reads) or a Hub data set id "
            "(from the local cache when HF_HUB_OFFLINE=1). Default: the task's built-in corpus (asr: fsdd, "
            "translation: multi30k, captioning and mmt: flickr8k, pretrain: all four mixed). Not with --train_file."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration (subset) of a Hub or folder data set, e.g. 'de-en'."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "The folder that holds the built-in corpora (fsdd/, read_speech/, multi30k/, flickr8k/). "
            "Default: $MMGPT_DATA_DIR, else ../shared/data."
        },
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "The training split as one JSON lines, JSON, CSV or Parquet file. Media paths in it are relative "
            "to the file. Instead of --dataset_name."
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "The 'validation' split as one file (see --train_file)."}
    )
    test_file: str | None = field(default=None, metadata={"help": "The 'test' split as one file (see --train_file)."})
    train_split_name: str = field(default="train", metadata={"help": "The split to train on."})
    eval_split_name: list[str] = field(
        default_factory=lambda: ["validation"],
        metadata={
            "aliases": ["--eval_splits"],
            "help": "The splits to evaluate on, any names the data has (several: '--eval_split_name validation "
            "test'; commas also separate). Metrics are prefixed 'eval_' for 'validation', else with the split name.",
        },
    )
    audio_column_name: str | None = field(
        default=None, metadata={"help": "asr, pretrain: the column with the audio (default 'audio')."}
    )
    text_column_name: str | None = field(
        default=None, metadata={"help": "asr: the transcript column; pretrain: the text column (default 'text')."}
    )
    image_column: str | None = field(
        default=None, metadata={"help": "captioning, mmt, pretrain: the column with the image (default 'image')."}
    )
    caption_column: str | None = field(
        default=None,
        metadata={
            "help": "captioning: the column with one caption or a list of references per row (default 'captions')."
        },
    )
    source_column: str | None = field(
        default=None,
        metadata={
            "help": "translation, mmt: the column to translate (default 'source'). Without --source_column and "
            "--target_column, data with a 'translation' column of {language: sentence} dicts (as Hub translation "
            "data sets have) is read through --source_lang and --target_lang."
        },
    )
    target_column: str | None = field(
        default=None, metadata={"help": "translation, mmt: the column with the translation (default 'target')."}
    )
    source_lang: str | None = field(
        default=None, metadata={"help": "translation, mmt: the source language code (default 'en')."}
    )
    target_lang: str | None = field(
        default=None, metadata={"help": "translation, mmt: the target language code (default 'de')."}
    )
    text_only: bool = field(
        default=False, metadata={"help": "mmt: drop the images (the text-only baseline on the same rows)."}
    )
    max_duration_in_seconds: float | None = field(
        default=None, metadata={"help": "asr, pretrain: drop training clips longer than this (in seconds)."}
    )
    min_duration_in_seconds: float | None = field(
        default=None, metadata={"help": "asr, pretrain: drop training clips shorter than this (in seconds)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={
            "help": "Processes that prepare the data (datasets' num_proc: reading files into Arrow, the duration "
            "filter). Not with --streaming."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the data as it is iterated (datasets' IterableDataset) instead of preparing it first; "
            "training then needs --max_steps."
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "The datasets cache folder (default: $HF_DATASETS_CACHE), also where --cache_media_features "
            "stores its features."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many rows of each evaluation split."}
    )
    max_length: int = field(default=256, metadata={"help": "Longest training sequence, media tokens included."})
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Longest generated output in evaluation, in new tokens; saved as the model's generate() default. "
            "The same setting as --generation_max_length (give one). Default: the checkpoint's generation_config, "
            f"else {DEFAULT_MAX_NEW_TOKENS}."
        },
    )
    num_beams: int | None = field(
        default=None,
        metadata={
            "help": "Beam width of generation in evaluation (1: greedy); saved as the generate() default. The same "
            "setting as --generation_num_beams (give one). Default: the checkpoint's generation_config, else 1."
        },
    )
    predict_split_name: str = field(
        default="test",
        metadata={
            "help": "The split that --do_predict generates for (trainer.predict()): metrics prefixed with its name "
            "(test_wer), predict_results.json and predictions_<split>.jsonl."
        },
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many rows of the --predict_split_name split."}
    )
    pretrain_mix: str | None = field(
        default=None,
        metadata={
            "help": "pretrain, built-in mix only: the share of each kind of row, e.g. 'text=1,text_pair=1,"
            "image_text=2,audio_text=2,image=1,audio=1' (kinds not named: none). Kinds: text (Multi30k sentences), "
            "text_pair (an English sentence and its German translation in one row, in the translation prompt), "
            "image_text (Flickr8k image + caption), audio_text (FSDD / read-speech clip + transcript), image and "
            "audio (media alone, for --media_loss_weight). Default: text, image_text and audio_text rows as they come."
        },
    )
    audio_speed_perturbation: float | None = field(
        default=None,
        metadata={"help": "asr, pretrain, training only: resample each clip by a random factor in [1-x, 1+x]."},
    )
    audio_noise_snr_db: float | None = field(
        default=None,
        metadata={"help": "asr, pretrain, training only: add white noise at a random SNR in [x, x+20] dB."},
    )
    spec_augment_time_masks: int | None = field(
        default=None,
        metadata={"help": "asr, pretrain, training only (log-mel towers): SpecAugment time masks per clip."},
    )
    spec_augment_time_mask_fraction: float | None = field(
        default=None,
        metadata={"help": "The longest SpecAugment time mask, as a fraction of the clip's frames (default 0.05)."},
    )
    spec_augment_frequency_masks: int | None = field(
        default=None,
        metadata={"help": "asr, pretrain, training only (log-mel towers): SpecAugment frequency masks per clip."},
    )
    spec_augment_frequency_mask_bins: int | None = field(
        default=None, metadata={"help": "The widest SpecAugment frequency mask, in mel bins (default 8)."}
    )
    image_crop_scale: float | None = field(
        default=None,
        metadata={
            "help": "captioning, mmt, pretrain, training only: random resized crops that keep at least this "
            "fraction of the image's area (e.g. 0.6)."
        },
    )
    image_horizontal_flip: bool = field(
        default=False,
        metadata={
            "help": "captioning, mmt, pretrain, training only: flip half the images, except those whose texts name "
            "a side (left/right, links/rechts, ...), which a flip would make wrong."
        },
    )
    cache_media_features: bool = field(
        default=False,
        metadata={
            "help": "Encode every image and clip of the training split once with the frozen towers, store the "
            "features in a datasets cache (keyed by the data, the towers' weights and the processor's settings, so a "
            "rerun reuses it) and train from them: a step then costs what the fusion and GPT-2 cost. Needs frozen "
            "towers (--freeze_towers or --train_only_fusion) without dropout or SpecAugment in their config; not "
            "with --streaming. The files go under --cache_dir (default $HF_DATASETS_CACHE)."
        },
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "Pack each training batch's samples into as few rows of --max_length tokens as fit, instead of "
            "one padded row each: no work on padding. Positions restart at 0 for every sample and each token "
            "attends only to its own sample (text and media), so the loss is the unpacked one."
        },
    )

    def __post_init__(self):
        names = [self.eval_split_name] if isinstance(self.eval_split_name, str) else self.eval_split_name
        self.eval_split_name = [part.strip() for name in names for part in name.split(",") if part.strip()]


# The augmentation flags of each medium (`multimodal_gpt.data.augment`).
AUDIO_AUGMENTATION_FLAGS = {
    "audio_speed_perturbation",
    "audio_noise_snr_db",
    "spec_augment_time_masks",
    "spec_augment_time_mask_fraction",
    "spec_augment_frequency_masks",
    "spec_augment_frequency_mask_bins",
}
IMAGE_AUGMENTATION_FLAGS = {"image_crop_scale", "image_horizontal_flip"}


@dataclass
class MultimodalTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` as train.py reads them: `--predict_with_generate` (on by default here),
    `--generation_max_length`, `--generation_num_beams` and `--generation_config` work as `Seq2SeqTrainer` users
    expect, for this decoder-only model (see [`MultimodalTrainer`])."""

    predict_with_generate: bool = field(
        default=True,
        metadata={
            "help": "Evaluate (and predict) by generating and scoring the outputs with the task's metrics, next to "
            "the teacher-forced loss; periodic evaluation during training (--eval_strategy steps) too. On by default "
            "here (Seq2SeqTrainingArguments' default is off); --predict_with_generate false gives loss-only "
            "evaluation."
        },
    )
    generation_max_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest generated output in evaluation. For this decoder-only model it counts the new tokens "
            "only (generate()'s max_new_tokens), as an encoder-decoder's output length does: the same setting as "
            "--max_new_tokens (give one)."
        },
    )
    generation_num_beams: int | None = field(
        default=None,
        metadata={"help": "Beam width of generation in evaluation: the same setting as --num_beams (give one)."},
    )
    flush_denormal: bool = field(
        default=True,
        metadata={
            "help": "Flush denormal floats to zero on the CPU for the whole run (torch.set_flush_denormal): a model "
            "that has trained a while has denormal gradients, which slowed the ASR recipe 1.6x (see "
            "multimodal_gpt/training/cpu.py). Changes only values below 1.2e-38; --flush_denormal false keeps them."
        },
    )


# Which data flags each task reads: any other given for that task is a flag the run would ignore.
TASK_DATA_FLAGS = {
    "asr": {"audio_column_name", "text_column_name", "max_duration_in_seconds", "min_duration_in_seconds"}
    | AUDIO_AUGMENTATION_FLAGS,
    "pretrain": {
        "audio_column_name",
        "text_column_name",
        "image_column",
        "max_duration_in_seconds",
        "min_duration_in_seconds",
        "pretrain_mix",
    }
    | AUDIO_AUGMENTATION_FLAGS
    | IMAGE_AUGMENTATION_FLAGS,
    "captioning": {"image_column", "caption_column"} | IMAGE_AUGMENTATION_FLAGS,
    "translation": {"source_column", "target_column", "source_lang", "target_lang"},
    "mmt": {"image_column", "source_column", "target_column", "source_lang", "target_lang", "text_only"}
    | IMAGE_AUGMENTATION_FLAGS,
}
# Data flags of training only: an evaluation run reads no training split.
TRAINING_DATA_FLAGS = (
    "train_file",
    "max_train_samples",
    "max_duration_in_seconds",
    "min_duration_in_seconds",
    *sorted(AUDIO_AUGMENTATION_FLAGS | IMAGE_AUGMENTATION_FLAGS),
)


def _given(arguments: object, names: Iterable[str]) -> list[str]:
    """The flags among `names` set away from their `None` / `False` default, as `--name`."""
    return [f"--{name}" for name in names if getattr(arguments, name) not in (None, False)]


def check_data_arguments(data_args: DataArguments, *, training: bool = True) -> None:
    """Fail early on data flags that contradict each other or that the run would ignore (what to drop is named).

    Args:
        data_args ([`DataArguments`]): the run's data flags.
        training (`bool`, defaults to `True`): `False` for an evaluation run, which reads no training split.

    Raises:
        `ValueError`: naming the flags.
    """
    if data_args.task not in TASK_DATA_FLAGS:
        raise ValueError(f"--task {data_args.task!r} is not one of {sorted(TASK_DATA_FLAGS)}.")
    every_task_flag = set().union(*TASK_DATA_FLAGS.values())
    ignored = _given(data_args, sorted(every_task_flag - TASK_DATA_FLAGS[data_args.task]))
    if ignored:
        raise ValueError(f"--task {data_args.task} does not read {', '.join(ignored)}: drop them.")
    if data_args.text_only and data_args.image_column is not None:
        raise ValueError("--text_only drops the images: drop --image_column.")
    files = _given(data_args, ("train_file", "validation_file", "test_file"))
    if files and data_args.dataset_name is not None:
        raise ValueError(f"Give the data either as --dataset_name or as {' / '.join(files)}, not both.")
    if not training and _given(data_args, TRAINING_DATA_FLAGS):
        raise ValueError(
            f"An evaluation reads no training split: drop {', '.join(_given(data_args, TRAINING_DATA_FLAGS))}."
        )
    if data_args.cache_media_features and data_args.streaming:
        raise ValueError("--cache_media_features stores features next to a data set; --streaming has none: drop one.")
    if data_args.streaming and data_args.preprocessing_num_workers is not None:
        raise ValueError("--preprocessing_num_workers prepares a data set in processes; --streaming prepares none.")
    if not data_args.eval_split_name:
        raise ValueError("--eval_split_name is empty: name at least one split.")
    for name in ("max_train_samples", "max_eval_samples", "max_predict_samples", "preprocessing_num_workers"):
        if getattr(data_args, name) is not None and getattr(data_args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(data_args, name)}.")
    low, high = data_args.min_duration_in_seconds, data_args.max_duration_in_seconds
    if low is not None and high is not None and low > high:
        raise ValueError(f"--min_duration_in_seconds {low} is above --max_duration_in_seconds {high}.")


# Tasks whose rows have no media: no fusion module sees an input, so none would train.
TEXT_ONLY_TASKS = ("translation",)


def check_model_arguments(model_args: ModelArguments, data_args: DataArguments) -> None:
    """Fail early on model flags that the run would ignore: a new model's settings next to a checkpoint to continue,
    and `--train_only_fusion` where no fusion would train.

    Raises:
        `ValueError`: naming the flags.
    """
    if model_args.model_name_or_path is not None:
        ignored = _given(model_args, ("preset", "fusion", "vocab_size", "tokenizer_name_or_path"))
        if ignored:
            raise ValueError(
                f"{', '.join(ignored)} describe a new model, but --model_name_or_path continues "
                f"{model_args.model_name_or_path} with its own configuration and tokenizer: drop them."
            )
    elif model_args.tokenizer_name_or_path is not None and model_args.vocab_size is not None:
        raise ValueError("--vocab_size sizes a tokenizer trained here; --tokenizer_name_or_path loads one: drop one.")
    text_only = data_args.task in TEXT_ONLY_TASKS or (data_args.task == "mmt" and data_args.text_only)
    if data_args.cache_media_features and text_only:
        raise ValueError("--cache_media_features caches the features of media, but this task has none: drop it.")
    frozen_towers = model_args.freeze_towers or model_args.train_only_fusion
    if data_args.cache_media_features and (not frozen_towers or model_args.lora_target_towers):
        raise ValueError(
            "--cache_media_features encodes each medium once with frozen towers, but the towers train here"
            + (" (--lora_target_towers)" if model_args.lora_target_towers else "")
            + ": add --freeze_towers (or --train_only_fusion), or drop --cache_media_features."
        )
    if model_args.freeze_feature_encoder and data_args.task not in ("asr", "pretrain"):
        raise ValueError(
            f"--freeze_feature_encoder freezes the audio tower's front end, but --task {data_args.task} gives no "
            "audio: drop it."
        )
    if model_args.train_only_fusion and text_only:
        task = "--task mmt --text_only" if data_args.task == "mmt" else f"--task {data_args.task}"
        raise ValueError(
            f"--train_only_fusion trains only the fusion modules, but {task} gives no image or audio, so no fusion "
            "would train: drop --train_only_fusion."
        )


IMAGE_TASKS = ("pretrain", "captioning", "mmt")


def check_generation_arguments(data_args: DataArguments, model_config: Any) -> None:
    """Fail before training on generation and length flags that would otherwise fail during or after it.

    Checks `--num_beams` and `--max_new_tokens` (at least 1; unset, 1 and the default), `--max_length` against the
    model's positions (GPT-2's `n_positions`), `--max_new_tokens` against the positions left for a prompt, and, for
    tasks with images, that one image's tokens fit `--max_length` (training) and leave room for `--max_new_tokens`
    (generation).

    Args:
        data_args ([`DataArguments`]): the parsed data and generation flags.
        model_config ([`MultimodalGPTConfig`]): the configuration of the model about to be trained.

    Raises:
        `ValueError`: naming the flag, its value, the limit and how to fix it.
    """
    num_beams = 1 if data_args.num_beams is None else data_args.num_beams
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS if data_args.max_new_tokens is None else data_args.max_new_tokens
    if num_beams < 1:
        raise ValueError(f"--num_beams must be at least 1 (1: greedy decoding), got {num_beams}.")
    if max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens must be at least 1, got {max_new_tokens}: nothing to generate.")
    if data_args.max_length < 2:
        raise ValueError(f"--max_length must be at least 2 (bos and one target token), got {data_args.max_length}.")
    positions = model_config.text_config.n_positions
    if data_args.max_length > positions:
        raise ValueError(
            f"--max_length {data_args.max_length} exceeds the model's {positions} positions (n_positions): training "
            f"would fail at the first sequence longer than that. Use --max_length {positions} or less."
        )
    if max_new_tokens >= positions:
        raise ValueError(
            f"--max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's {positions} "
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
        if 1 + image_tokens + max_new_tokens > positions:
            raise ValueError(
                f"--max_new_tokens {max_new_tokens} after an image's {image_tokens} tokens (and bos) "
                f"exceeds the model's {positions} positions: use --max_new_tokens {positions - image_tokens - 1} or "
                "less."
            )


__all__ = [
    "DataArguments",
    "ModelArguments",
    "MultimodalTrainingArguments",
    "check_data_arguments",
    "check_generation_arguments",
    "check_model_arguments",
]
