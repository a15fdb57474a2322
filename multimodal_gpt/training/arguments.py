"""The command-line arguments of training and evaluation (`HfArgumentParser` dataclasses: each field's `help` is its
documentation), next to the `TrainingArguments` of the `Trainer`."""

from dataclasses import dataclass, field


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
    max_new_tokens: int = field(
        default=48,
        metadata={"help": "Longest generated output in evaluation; saved as the model's generate() default."},
    )
    num_beams: int = field(
        default=1,
        metadata={"help": "Beam width of generation in evaluation (1: greedy); saved as the generate() default."},
    )
    eval_splits: str = field(
        default="validation",
        metadata={"help": "Comma-separated splits scored after training (e.g. 'validation,test')."},
    )


__all__ = ["DataArguments", "ModelArguments"]
