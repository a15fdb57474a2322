"""Named model configurations (JSON files in `presets/`) and building a fresh model + processor from one."""

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .configuration_multimodal_gpt import MultimodalGPTConfig, add_multimodal_tokens
from .modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .processing_multimodal_gpt import MultimodalGPTProcessor
from .tokenizer import load_or_train_tokenizer

PRESET_DIR = Path(__file__).parent / "presets"


def available_presets() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.json"))


def load_preset(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The `MultimodalGPTConfig` keyword arguments of a preset: a name from `presets/` or a JSON file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(
            f"Unknown preset {str(name_or_path)!r}: use one of {available_presets()} or a JSON file path."
        )
    preset = json.loads(path.read_text())
    preset.pop("description", None)
    return preset


def build_model_and_processor(
    preset: str | os.PathLike,
    *,
    texts: Iterable[str] | None = None,
    tokenizer_name_or_path: str | None = None,
    vocab_size: int = 8000,
    fusion: str | dict[str, str] | None = None,
    max_length: int | None = None,
) -> tuple[MultimodalGPTForConditionalGeneration, MultimodalGPTProcessor]:
    """A new model from `preset` and its processor. The tokenizer is loaded (`tokenizer_name_or_path`) or trained
    offline on `texts`; the GPT-2 vocabulary, the special-token ids and `n_positions` (at least `max_length`)
    follow it."""
    tokenizer = load_or_train_tokenizer(tokenizer_name_or_path, texts, vocab_size=vocab_size)
    token_ids = add_multimodal_tokens(tokenizer)
    config_kwargs = load_preset(preset)
    text_config = dict(config_kwargs.pop("text_config"))
    text_config.update(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=token_ids["pad_token_id"],
    )
    if max_length is not None:
        text_config["n_positions"] = max(text_config.get("n_positions", 1024), max_length)
    if fusion is not None:
        config_kwargs["fusion"] = fusion
    has_vision = config_kwargs.get("vision_config") is not None
    has_audio = config_kwargs.get("audio_config") is not None
    config = MultimodalGPTConfig(
        text_config=text_config,
        image_token_id=token_ids["image_token_id"] if has_vision else None,
        audio_token_id=token_ids["audio_token_id"] if has_audio else None,
        **config_kwargs,
    )
    model = MultimodalGPTForConditionalGeneration(config)
    model.generation_config.pad_token_id = token_ids["pad_token_id"]
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, MultimodalGPTProcessor.from_config(config, tokenizer)


__all__ = ["available_presets", "build_model_and_processor", "load_preset"]
