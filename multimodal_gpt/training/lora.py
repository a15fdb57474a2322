"""LoRA finetuning with PEFT: low-rank adapters on GPT-2 (and, if asked, on the towers), the fusion trained in full.

What `lora_config_for` targets, by module name (relative to `MultimodalGPTForConditionalGeneration`):

- LoRA: GPT-2's attention and MLP `Conv1D` layers, `model.language_model.h.<i>.attn.{c_attn,c_proj}` and
  `model.language_model.h.<i>.mlp.{c_fc,c_proj}`, through one anchored regex, so that a tower layer with a similar name
  is never hit; with `target="language_model+towers"` also every `nn.Linear` of the vision and audio towers (but their
  poolers and pooling heads, whose outputs the model never uses).
- Trained in full and saved with the adapter (`modules_to_save`): the fusion, i.e. `model.vision_fusion` and
  `model.audio_fusion` (projectors or resamplers), the gated cross-attention layers that live inside GPT-2's blocks
  (`model.language_model.h.<i>.gated_cross_attention`) and the projection of the media into their keys and values
  (`model.cross_attention_key_values`). PEFT never puts LoRA inside a module to save.
- Optionally (`train_new_tokens=True`), the embedding rows of the tokens added to GPT-2's vocabulary (`<image>`,
  `<audio>`, `<|pad|>`) through PEFT's `trainable_token_indices`: only those rows train, on the tied `wte` and
  `lm_head` together, and only those rows are saved.

Everything else (GPT-2's weights, embeddings and head, the towers) stays frozen. peft is an optional dependency:
`pip install -e ".[peft]"`.
"""

import json
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import nn
from transformers.pytorch_utils import Conv1D

from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from ..towers_multimodal_gpt import is_unused_tower_part

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel

LANGUAGE_MODEL_TARGETS = r"model\.language_model\.h\.\d+\.(?:attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)"
ADAPTER_CONFIG_NAME = "adapter_config.json"
FUSION_MODULES = ("vision_fusion", "audio_fusion", "gated_cross_attention", "cross_attention_key_values")
LORA_TARGETS = ("language_model", "language_model+towers")


def _import_peft() -> ModuleType:
    try:
        import peft
    except ImportError as error:
        raise ImportError(
            "LoRA finetuning needs the `peft` package: pip install -e '.[peft]' (or pip install peft)."
        ) from error
    return peft


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """PEFT 0.21 reads `PreTrainedModel.is_gradient_checkpointing`, which transformers 5 deprecates with a
    FutureWarning (an error under this project's pytest settings); and with tower targets one config covers both
    GPT-2's `Conv1D` (fan-in x fan-out weights) and the towers' `nn.Linear` layers, for which PEFT picks the right
    layout layer by layer, warning each time. Neither is actionable."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to", category=UserWarning)
        yield


def _check_model(model: Any) -> None:
    if not isinstance(model, MultimodalGPTForConditionalGeneration):
        raise TypeError(
            f"LoRA is set up for MultimodalGPTForConditionalGeneration (module names start at `model.`), got "
            f"{type(model).__name__}. Pass the full model, not its `.model` or an already wrapped PeftModel."
        )


def tower_target_modules(model: MultimodalGPTForConditionalGeneration) -> list[str]:
    """Regexes (one per distinct layer path, layer indices as `\\d+`) for every `nn.Linear` / `Conv1D` of the
    vision and audio towers, leaving out the parts our features never pass through (poolers, pooling heads)."""
    patterns: dict[str, None] = {}
    for modality in ("vision", "audio"):
        tower = getattr(model.model, f"{modality}_tower")
        if tower is None:
            continue
        found = len(patterns)
        for name, module in tower.named_modules():
            if not isinstance(module, (nn.Linear, Conv1D)) or is_unused_tower_part(tower.config.model_type, name):
                continue
            parts = name.split(".")
            path = r"\.".join(r"\d+" if part.isdigit() else re.escape(part) for part in parts)
            patterns[rf"model\.{modality}_tower\.{path}"] = None
        if len(patterns) == found:
            raise ValueError(
                f"The {modality} tower ({tower.config.model_type}) has no linear layers to put LoRA on (a ResNet is "
                "all convolutions): use target='language_model' and train that tower in full, or freeze it."
            )
    return list(patterns)


def lora_target_regex(model: MultimodalGPTForConditionalGeneration, target: str = "language_model") -> str:
    """The `target_modules` regex (PEFT matches it against the whole module name) for `target`: "language_model"
    (GPT-2's attention and MLP layers) or "language_model+towers" (those and the towers' linear layers)."""
    if target not in LORA_TARGETS:
        raise ValueError(f"target must be one of {LORA_TARGETS}, got {target!r}.")
    patterns = [LANGUAGE_MODEL_TARGETS]
    if target == "language_model+towers":
        towers = tower_target_modules(model)
        if not towers:
            raise ValueError(f"target={target!r}, but this model has no vision or audio tower to put LoRA on.")
        patterns += towers
    return patterns[0] if len(patterns) == 1 else "(?:" + "|".join(patterns) + ")"


def fusion_module_names(model: MultimodalGPTForConditionalGeneration) -> list[str]:
    """Names of the fusion modules this model has, as PEFT's `modules_to_save` matches them (name endings)."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return [name for name in FUSION_MODULES if name in present]


def new_token_ids(model: MultimodalGPTForConditionalGeneration) -> list[int]:
    """The ids of the tokens `add_multimodal_tokens` adds to GPT-2's vocabulary: `<image>`, `<audio>` and, when it is
    its own token (not GPT-2's `<|endoftext|>`), the pad token. With a pretrained GPT-2 their embedding rows are new
    (`from_pretrained_parts` initialises them to the mean embedding)."""
    config = model.config
    text_config = config.text_config
    shared = {text_config.eos_token_id, text_config.bos_token_id}
    candidates = [config.image_token_id, config.audio_token_id]
    if text_config.pad_token_id not in shared:
        candidates.append(text_config.pad_token_id)
    return sorted({token_id for token_id in candidates if token_id is not None})


def lora_config_for(
    model: MultimodalGPTForConditionalGeneration,
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target: str = "language_model",
    train_fusion: bool = True,
    train_new_tokens: bool | Sequence[int] = False,
    **lora_kwargs: Any,
) -> "LoraConfig":
    """A `peft.LoraConfig` for `model`: LoRA of rank `r` (scale `alpha / r`, dropout `dropout`) on GPT-2's attention
    and MLP layers, plus the towers' linear layers with `target="language_model+towers"`.

    Args:
        train_fusion: train the fusion modules in full and save them with the adapter (`modules_to_save`): the
            projectors or resamplers and the gated cross-attention layers inside GPT-2's blocks.
        train_new_tokens: train the embedding rows of the tokens added to GPT-2's vocabulary (`True`: those of
            [`new_token_ids`]; or a list of ids), the tied input and output rows together, through
            PEFT's `trainable_token_indices`.
        lora_kwargs: any other `LoraConfig` field (`use_rslora`, `use_dora`, `init_lora_weights`, ...).
    """
    peft = _import_peft()
    _check_model(model)
    if r < 1:
        raise ValueError(f"The LoRA rank r must be at least 1, got {r}.")
    token_ids = new_token_ids(model) if train_new_tokens is True else list(train_new_tokens or [])
    vocab_size = model.config.text_config.vocab_size
    if any(not 0 <= token_id < vocab_size for token_id in token_ids):
        raise ValueError(f"train_new_tokens ids {token_ids} must lie in the vocabulary (0 to {vocab_size - 1}).")
    if train_new_tokens is True and not token_ids:
        raise ValueError("train_new_tokens=True, but this model's config names no <image>, <audio> or pad token.")
    return peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_target_regex(model, target),
        fan_in_fan_out=True,  # GPT-2's Conv1D stores (in, out) weights
        modules_to_save=fusion_module_names(model) if train_fusion else None,
        # PEFT ties the `lm_head` rows to the `wte` rows by itself when config.tie_word_embeddings is set.
        trainable_token_indices=token_ids or None,
        **lora_kwargs,
    )


def apply_lora(
    model: MultimodalGPTForConditionalGeneration, config: "LoraConfig | None" = None, **config_kwargs: Any
) -> "PeftModel":
    """Wrap `model` in a `peft.PeftModel` with LoRA: `config`, or `lora_config_for(model, **config_kwargs)`. Only the
    adapter, the fusion and the chosen token rows are trainable afterwards; train it with the `Trainer` as usual,
    `save_pretrained` writes the adapter (`adapter_model.safetensors`, `adapter_config.json`).

    Set `model.name_or_path` to where the base model is saved first: the adapter records it as
    `base_model_name_or_path`, which `AutoModel*.from_pretrained(adapter_folder)` loads."""
    peft = _import_peft()
    _check_model(model)
    if config is not None and config_kwargs:
        raise ValueError("Give either a LoraConfig or lora_config_for keyword arguments, not both.")
    config = config if config is not None else lora_config_for(model, **config_kwargs)
    with _quiet_peft():
        return peft.get_peft_model(model, config)


def load_lora(
    model: MultimodalGPTForConditionalGeneration,
    adapter_name_or_path: str | os.PathLike,
    *,
    is_trainable: bool = False,
) -> "PeftModel":
    """`peft.PeftModel.from_pretrained(model, adapter_name_or_path)`: a saved adapter on its base model (a folder or
    Hub id); `is_trainable=True` to train it further."""
    peft = _import_peft()
    _check_model(model)
    with _quiet_peft():
        return peft.PeftModel.from_pretrained(model, adapter_name_or_path, is_trainable=is_trainable)


def merge_lora(peft_model: "PeftModel") -> MultimodalGPTForConditionalGeneration:
    """Fold the adapter into the weights (`merge_and_unload`): a plain `MultimodalGPTForConditionalGeneration` with
    the LoRA deltas added, the trained fusion and token rows in place and the head still tied, which
    `save_pretrained` writes as an ordinary checkpoint. `peft_model` is changed in place."""
    with _quiet_peft():
        model = peft_model.merge_and_unload()
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return model


def is_lora_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a local folder holding a PEFT adapter (`adapter_config.json`)."""
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG_NAME))


def lora_base_model(adapter_dir: str | os.PathLike) -> str:
    """The base model a saved adapter belongs to (`base_model_name_or_path` in its `adapter_config.json`)."""
    config_file = os.path.join(adapter_dir, ADAPTER_CONFIG_NAME)
    with open(config_file, encoding="utf-8") as file:
        base = json.load(file).get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{config_file} names no base model (base_model_name_or_path): set it to the folder or Hub id of the "
            "model the adapter was trained on."
        )
    return base


def is_peft_model(model: Any) -> bool:
    """Whether `model` is wrapped by PEFT (a `PeftModel`)."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


__all__ = [
    "LANGUAGE_MODEL_TARGETS",
    "apply_lora",
    "fusion_module_names",
    "is_lora_folder",
    "is_peft_model",
    "load_lora",
    "lora_base_model",
    "lora_config_for",
    "lora_target_regex",
    "merge_lora",
    "new_token_ids",
    "tower_target_modules",
]
