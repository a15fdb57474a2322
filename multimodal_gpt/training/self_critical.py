"""Self-critical sequence training (SCST): finetuning on the task's own metric instead of the teacher-forced
cross-entropy, the step that lifts captioning models' CIDEr after supervised training (Rennie et al. 2017,
"Self-critical Sequence Training for Image Captioning"), with the baseline of Luo 2020 ("A Better Variant of
Self-Critical Sequence Training"): no greedy decode, the other samples of the same row are the baseline.

Each training step, for every row of the batch:

1. `samples` outputs are drawn from the model (`generate(do_sample=True)`, temperature 1, no top-k or top-p: the
   model's own distribution, whatever decoding its generation config sets for evaluation);
2. each is scored against the row's references with the task's reward (below);
3. the loss raises the log-probability of the outputs that score above the mean of the row's other samples and
   lowers the others': `loss = -sum_i (r_i - b_i) sum_t log p(w_it) / sum_i |w_i|`, `b_i = mean_{j != i} r_j`,
   with `|w_i|` the tokens of sample i up to its eos (ruotianluo/self-critical.pytorch's normalisation).

Both the sampling and the forward pass that scores it run with dropout off, so that the gradient is that of the
distribution sampled from. With `cross_entropy_weight` above 0 the teacher-forced loss of the same rows (the training
collator's batch: its reference, augmentation, label smoothing) is added with that weight, the mixed objective that
keeps the model near its references while the reward moves it (Paulus et al. 2018). Rewards:

- captioning: CIDEr-D of the caption against the row's references, with document frequencies from the training
  split's references (coco-caption's `CiderD(df="coco-train")`);
- translation, mmt: sentence BLEU (sacrebleu, exponential smoothing, effective order) / 100;
- asr: 1 - WER of the transcript (`normalize_transcript` on both sides).

`MultimodalTrainer(self_critical=SelfCritical(...))` trains so; `multimodal-gpt train --self_critical_samples K`
(`--self_critical_cross_entropy_weight W`) builds it from a run's data.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from sacrebleu.metrics import BLEU
from transformers import BatchFeature, GenerationConfig

from ..data.collators import NoUsableRowsError, TaskCollator
from ..data.tasks import Task
from .metrics.scores import CiderD, word_error_rate
from .recipes import media_loss_weight

# The audio inputs a tower encodes (`encode_audio`'s arguments), as the collators give them.
RAW_AUDIO_INPUTS = ("input_features", "input_features_mask", "input_values", "input_values_mask")

# Where a training batch holds the teacher-forced batch of the same rows (`cross_entropy_weight` above 0).
TEACHER_FORCED = "teacher_forced"
# The keys of a training batch that are not the model's inputs: its rows' references and positions, that batch.
_NOT_MODEL_INPUTS = ("references", "row_indices", "skipped_rows", TEACHER_FORCED)

Reward = Callable[[Sequence[str], Sequence[Sequence[str]]], list[float]]
REWARDED_TASKS = ("captioning", "translation", "mmt", "asr")
# Data flags of the teacher-forced training batches, which self-critical training does not make.
IGNORED_FLAGS = (
    "packing",
    "image_crop_scale",
    "image_horizontal_flip",
    "audio_speed_perturbation",
    "audio_noise_snr_db",
    "spec_augment_time_masks",
    "spec_augment_frequency_masks",
)


class CaptionReward:
    """CIDEr-D of each caption against its references, with the document frequencies of `training_references` (the
    references of each training image)."""

    def __init__(self, training_references: Sequence[Sequence[str]]):
        if len(training_references) < 2:
            raise ValueError(
                "The captioning reward weighs n-grams by their document frequency over the training images' "
                f"references, but the training split has {len(training_references)} row(s) with references: at "
                "least 2 are needed."
            )
        self.scorer = CiderD(training_references)

    def __call__(self, predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> list[float]:
        return self.scorer.scores(predictions, references_list)


class SentenceBleuReward:
    """Sentence BLEU of each translation against its references (sacrebleu's exponential smoothing, effective
    order, so that a short sentence is not 0 for lack of 4-grams), on a 0-1 scale."""

    def __init__(self):
        self.bleu = BLEU(effective_order=True)

    def __call__(self, predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> list[float]:
        return [
            self.bleu.sentence_score(prediction, list(references)).score / 100.0
            for prediction, references in zip(predictions, references_list)
        ]


def transcript_reward(predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> list[float]:
    """1 - WER of each transcript against its (first) reference."""
    return [
        1.0 - word_error_rate([prediction], [references[0]])
        for prediction, references in zip(predictions, references_list)
    ]


def task_reward(task: Task, training_references: Sequence[Sequence[str]] = ()) -> Reward:
    """The reward of a task (see the module docstring); captioning's needs the training split's references."""
    if task.name == "captioning":
        return CaptionReward(training_references)
    if task.name in ("translation", "mmt"):
        return SentenceBleuReward()
    if task.name == "asr":
        return transcript_reward
    raise ValueError(
        f"Self-critical training rewards a generated output against its references: {', '.join(REWARDED_TASKS)}, "
        f"not {task.name!r}."
    )


def check_self_critical_arguments(model_args: Any, data_args: Any, training_args: Any) -> None:
    """Fail before anything loads on `--self_critical_samples` with flags its training would ignore (the
    teacher-forced loss's label smoothing, media loss and packing, and the training collator's augmentation, unless
    `--self_critical_cross_entropy_weight` keeps that loss), on a task without references to reward, and without a
    trained model to start from.

    Raises:
        `ValueError`: naming the flags.
    """
    samples = model_args.self_critical_samples
    if samples == 0:
        if model_args.self_critical_cross_entropy_weight:
            raise ValueError(
                "--self_critical_cross_entropy_weight weighs a part of --self_critical_samples: give both."
            )
        return
    if samples < 2:
        raise ValueError(
            f"--self_critical_samples must be 0 (off) or at least 2 (each sample's baseline is the mean reward of the "
            f"others), got {samples}."
        )
    if data_args.task not in REWARDED_TASKS:
        raise ValueError(
            f"--self_critical_samples rewards generated outputs against references: --task "
            f"{' / '.join(REWARDED_TASKS)}, not {data_args.task}."
        )
    if model_args.model_name_or_path is None:
        raise ValueError(
            "--self_critical_samples finetunes a trained model on samples of its own outputs (a new model's are "
            "noise, and reward nothing): give --model_name_or_path, e.g. a run of the task's recipe."
        )
    if model_args.self_critical_cross_entropy_weight < 0:
        raise ValueError(
            f"--self_critical_cross_entropy_weight must be >= 0, got {model_args.self_critical_cross_entropy_weight}."
        )
    if model_args.self_critical_cross_entropy_weight > 0:
        return  # the teacher-forced loss is part of the objective: its flags count
    ignored = [f"--{name}" for name in IGNORED_FLAGS if getattr(data_args, name, None) not in (None, False)]
    if training_args.label_smoothing_factor:
        ignored.append("--label_smoothing_factor")
    weights = media_loss_weight(model_args)
    if any(weights.values()) if isinstance(weights, dict) else bool(weights):
        ignored.append("--media_loss_weight")
    if ignored:
        raise ValueError(
            f"--self_critical_samples trains on sampled outputs, not on the teacher-forced loss and its batches: drop "
            f"{', '.join(ignored)}, or keep the teacher-forced loss in the objective with "
            "--self_critical_cross_entropy_weight."
        )


@dataclass
class SelfCritical:
    """Self-critical training of a [`MultimodalTrainer`] (see the module docstring).

    Args:
        collator ([`TaskCollator`]): a generation collator (`for_generation=True`) of the task, which makes the
            training batches: prompts with their media, and every reference of each row.
        reward (`Callable[[list[str], list[list[str]]], list[float]]`): scores each output against its references
            (see [`task_reward`]).
        samples (`int`, defaults to 5): outputs sampled per row; at least 2 (each one's baseline is the others).
        max_new_tokens (`int`, *optional*): the longest sample. Default: the model's `generation_config`.
        teacher_forced_collator ([`TaskCollator`], *optional*): the training collator, whose batch of the same rows
            gives the teacher-forced loss added with `cross_entropy_weight`.
        cross_entropy_weight (`float`, defaults to 0): the weight of that loss (0: the self-critical loss alone).

    Called on raw rows (the training loader's `collate_fn`), it returns `collator`'s batch, with the teacher-forced
    batch of the same rows under `"teacher_forced"` when `cross_entropy_weight` is above 0.
    """

    collator: TaskCollator
    reward: Reward
    samples: int = 5
    max_new_tokens: int | None = None
    teacher_forced_collator: TaskCollator | None = None
    cross_entropy_weight: float = 0.0
    # The rewards of the samples since the trainer last logged: their mean is logged as `reward`.
    rewards: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        if not self.collator.for_generation:
            raise ValueError("SelfCritical's collator makes prompts: build it with for_generation=True.")
        if self.samples < 2:
            raise ValueError(
                f"Self-critical training needs at least 2 samples per row (each one's baseline is the mean reward "
                f"of the others), got {self.samples}."
            )
        if self.cross_entropy_weight > 0 and self.teacher_forced_collator is None:
            raise ValueError("cross_entropy_weight > 0 needs the teacher_forced_collator whose loss it weighs.")

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> BatchFeature:
        batch = self.collator(rows)
        if self.cross_entropy_weight > 0:
            batch[TEACHER_FORCED] = self.teacher_forced_collator(rows)
        return batch

    def loss(self, model: torch.nn.Module, generator: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The self-critical loss of a generation batch.

        Args:
            model (`torch.nn.Module`): the model as the trainer runs it (wrapped for DDP, say): the forward pass.
            generator ([`MultimodalGPTForConditionalGeneration`]): the same model unwrapped: `generate()`.
            batch (`dict`): a batch of `collator`.
        """
        if "input_ids" not in batch:
            reasons = "; ".join(sorted(set(batch.get("skipped_rows", {}).values()))[:3])
            raise NoUsableRowsError(f"No row of the training batch could be used: {reasons}")
        references = batch["references"]
        inputs = {key: value for key, value in batch.items() if key not in _NOT_MODEL_INPUTS and value is not None}
        was_training = model.training
        model.eval()  # no dropout: the gradient below is that of the distribution sampled from
        try:
            input_ids, inputs = generator._expand_inputs_for_generation(
                expand_size=self.samples, input_ids=inputs.pop("input_ids"), **encoded_media(generator, inputs)
            )
            with torch.no_grad():
                generated = generator.generate(
                    input_ids=input_ids, **inputs, generation_config=self._sampling(generator)
                )
            outputs, mask = self._new_tokens(generated, input_ids.shape[1])
            texts = self.collator.decode_predictions(generated, input_ids)
            rewards = self.reward(texts, [row for row in references for _ in range(self.samples)])
            advantages = self._advantages(torch.tensor(rewards, dtype=torch.float32, device=generated.device))
            log_probs = self._log_probs(model, generated, inputs, outputs, mask)
        finally:
            model.train(was_training)
        self.rewards.extend(rewards)
        return -(advantages[:, None] * log_probs * mask).sum() / mask.sum().clamp(min=1)

    def _sampling(self, generator: Any) -> GenerationConfig:
        """Plain sampling from the model's distribution, with the model's special tokens and length."""
        config = generator.generation_config
        tokenizer = self.collator.processor.tokenizer
        return GenerationConfig(
            do_sample=True,
            num_beams=1,
            max_new_tokens=self.max_new_tokens or config.max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=config.bos_token_id,
        )

    def _new_tokens(self, generated: torch.Tensor, prompt_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampled tokens and the mask of those that count: up to and including the first eos."""
        outputs = generated[:, prompt_length:]
        is_eos = outputs == self.collator.processor.tokenizer.eos_token_id
        after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
        return outputs, (~after_eos).float()

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """Each sample's reward less the mean reward of the other samples of its row."""
        per_row = rewards.view(-1, self.samples)
        baseline = (per_row.sum(1, keepdim=True) - per_row) / (self.samples - 1)
        return (per_row - baseline).flatten()

    @staticmethod
    def _log_probs(
        model: torch.nn.Module,
        generated: torch.Tensor,
        inputs: dict[str, Any],
        outputs: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """`(samples, new_tokens)` log-probabilities of the sampled tokens, with gradients: one forward pass over the
        prompt (left-padded, positions as `generate()` gave them) and the samples."""
        new_tokens = outputs.shape[1]
        attention_mask = torch.cat([inputs["attention_mask"], mask.long()], dim=1)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        media = {key: value for key, value in inputs.items() if key != "attention_mask"}
        logits = model(
            input_ids=generated,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=new_tokens + 1,
            use_cache=False,
            **media,
        ).logits[:, :-1]
        return torch.log_softmax(logits.float(), dim=-1).gather(-1, outputs[..., None]).squeeze(-1)


def encoded_media(generator: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """`inputs` with their images and clips replaced by the features the fusion takes (`image_features=`,
    `audio_features=` and its mask), encoded once per medium: the towers run once per image or clip, not once per
    sample in `generate()` and again in the scoring pass. A tower that trains gets its gradient through the repeats
    of `_expand_inputs_for_generation`, the sum over the samples of each medium, as when it ran once per sample."""
    inputs = dict(inputs)
    model = generator.model
    if inputs.get("pixel_values") is not None:
        inputs["image_features"] = model.encode_images(inputs.pop("pixel_values"))
    audio = {key: inputs.pop(key) for key in RAW_AUDIO_INPUTS if inputs.get(key) is not None}
    if audio:
        inputs["audio_features"], inputs["audio_features_mask"] = model.encode_audio(**audio)
    return inputs


__all__ = [
    "TEACHER_FORCED",
    "CaptionReward",
    "SelfCritical",
    "SentenceBleuReward",
    "check_self_critical_arguments",
    "task_reward",
    "transcript_reward",
]
