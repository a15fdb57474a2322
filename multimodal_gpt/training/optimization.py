"""What the optimizer sees: per-module learning rates ([`parameter_groups`], behind
`MultimodalTrainer.create_optimizer`) and staged training ([`StagedTrainingCallback`]: the fusion first, with the
towers and GPT-2 frozen, then all).

The modules of a [`MultimodalGPTForConditionalGeneration`] ([`MODULE_GROUPS`]): the towers (`vision_tower`,
`audio_tower`), the fusion (projectors, resamplers, gated cross-attention, the media prediction heads: the new
modules), GPT-2's embeddings (`wte`, tied to the LM head, and `wpe`) and the rest of GPT-2. LoRA adapters count with
the module they adapt.
"""

import logging
import re
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# GPT-2 first: the `Trainer` logs the learning rate of the first parameter group, which is then --learning_rate's.
MODULE_GROUPS = ("language_model", "embeddings", "fusion", "towers")
# Matched in order against a parameter's dotted name (PEFT and DDP prefixes included); the first match wins.
_MODULE_PATTERNS = (
    ("towers", re.compile(r"(^|\.)(vision|audio)_tower\.")),
    (
        "fusion",
        re.compile(
            r"(^|\.)(vision_fusion|audio_fusion|audio_frame_reducer|cross_attention_key_values|gated_cross_attention"
            r"|media_prediction_heads)\."
        ),
    ),
    ("embeddings", re.compile(r"(^|\.)language_model\.(wte|wpe)\.|(^|\.)lm_head\.")),
    ("language_model", re.compile(r"(^|\.)language_model\.")),
)


def module_group(parameter_name: str) -> str:
    """Which of [`MODULE_GROUPS`] a parameter of the model belongs to."""
    for group, pattern in _MODULE_PATTERNS:
        if pattern.search(parameter_name):
            return group
    raise ValueError(
        f"Parameter {parameter_name!r} belongs to none of {MODULE_GROUPS}: per-module learning rates need a "
        "MultimodalGPTForConditionalGeneration (or a PEFT model wrapping one)."
    )


def parameter_groups(
    model: torch.nn.Module,
    *,
    learning_rate: float,
    weight_decay: float,
    decay_parameter_names: set[str] | list[str],
    module_learning_rates: dict[str, float | None],
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one per module and weight decay (decayed or not, as the `Trainer` decides),
    each with its module's learning rate (`module_learning_rates[module]`, `None` or absent: `learning_rate`). Every
    trainable parameter is in exactly one group; empty groups are left out."""
    unknown = set(module_learning_rates) - set(MODULE_GROUPS)
    if unknown:
        raise ValueError(f"Unknown modules {sorted(unknown)} in the learning rates: the modules are {MODULE_GROUPS}.")
    decayed = set(decay_parameter_names)
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((module_group(name), name in decayed), []).append(parameter)
    return [
        {
            "params": parameters,
            "weight_decay": weight_decay if decays else 0.0,
            "lr": learning_rate if module_learning_rates.get(module) is None else module_learning_rates[module],
            "module": module,  # kept by the optimizer: names the group in its state and in logs
        }
        for (module, decays), parameters in sorted(groups.items(), key=lambda item: MODULE_GROUPS.index(item[0][0]))
    ]


class StagedTrainingCallback(TrainerCallback):
    """Trains only the fusion for the first `fusion_steps` optimizer steps, with the towers and GPT-2 frozen (LLaVA's
    first stage: the new modules learn to speak GPT-2's language before the pretrained parts move), then everything
    that was trainable before.

    The freezing happens at `on_train_begin`, after the `Trainer` has built its optimizer over every trainable
    parameter and wrapped the model: the parameters frozen here are in the optimizer from the start, get no gradient
    (AdamW skips them: no update, no weight decay) until they are unfrozen, and need no new optimizer then. Under DDP
    they are in the reducer too, which needs `find_unused_parameters` while they are frozen (`run()` sets it). A run
    resumed past `fusion_steps` starts unfrozen.
    """

    def __init__(self, fusion_steps: int):
        if fusion_steps < 1:
            raise ValueError(f"fusion_steps must be at least 1, got {fusion_steps}.")
        self.fusion_steps = fusion_steps
        self.frozen: list[torch.nn.Parameter] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step >= self.fusion_steps:
            return
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's own
        base.freeze_all_but_fusion()
        self.frozen = [parameter for parameter in trainable if not parameter.requires_grad]
        logger.info(
            "Staged training: steps 0-%d train only the fusion (%d parameter tensors frozen until then).",
            self.fusion_steps - 1,
            len(self.frozen),
        )

    def on_step_begin(self, args, state, control, **kwargs):
        if self.frozen and state.global_step >= self.fusion_steps:
            for parameter in self.frozen:
                parameter.requires_grad_(True)
            logger.info("Staged training: from step %d on, every module trains.", state.global_step)
            self.frozen = []


__all__ = ["MODULE_GROUPS", "StagedTrainingCallback", "module_group", "parameter_groups"]
