"""A media-feature cache: encode every image and clip of a data set once with the frozen towers, then train from
the features (`train.py --cache_media_features`).

A frozen tower computes the same features for a medium in every epoch, and on a CPU it can take most of a training
step (the vision tower alone is several times GPT-2's forward at the benchmark's shapes). The cache runs it once per
data set: [`cache_media_features`] adds to every row the features the fusion takes (the model's `encode_images` /
`encode_audio`: the tower's chosen layer, patch tokens only, merged or frame-reduced), and the collators then hand
them to the model as `image_features` / `audio_features`, so that a training step costs what the fusion and GPT-2
cost. Training from the cache computes exactly what training from the media computes, which is why it is refused
where that would not hold:

- a tower that trains (its features change with every step): freeze it (`--freeze_towers`, `--train_only_fusion`);
- a tower that is random in training mode (dropout, LayerDrop, SpecAugment, all of which a frozen tower still
  applies when the model trains): the cache holds its deterministic (evaluation-mode) features, so set those
  probabilities to 0 in the tower's config, or train without the cache;
- a collator that augments media ([`TaskCollator.changes_media_between_epochs`]);
- a stream (`--streaming`): there is no data set to store next to.

The features live in a `datasets` cache file whose name is a hash of everything they depend on: the data set's
fingerprint, the tower's weights and config, the feature settings of the model config (feature layers, token merge,
frame reduction) and the processor's settings. The same run again, or another run with the same towers and data,
reuses the file; any change makes a new one. A row whose media cannot be decoded keeps the reason, and the collator
skips it as it would skip the raw row; so does a clip too short to give the tower one frame (a model with
cross-attention or resampler fusion would otherwise take it, with no valid feature).
"""

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..configuration_multimodal_gpt import AUDIO_TOKEN, IMAGE_TOKEN

logger = logging.getLogger(__name__)

# The columns a cached data set gains: per row, one (num_features, width) float32 array per image / per clip (the
# valid features only), and why its media could not be used (`None` when they could).
IMAGE_FEATURES = "cached_image_features"
AUDIO_FEATURES = "cached_audio_features"
MEDIA_ERROR = "cached_media_error"
# Part of every cache key: raise it when what is stored changes.
CACHE_FORMAT_VERSION = 1
# Tower config fields that make a tower random in training mode, when above 0 (SpecAugment's only with
# `apply_spec_augment`).
RANDOM_IN_TRAINING = (
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "hidden_dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "feat_proj_dropout",
    "layerdrop",
    "encoder_layerdrop",
)
SPEC_AUGMENT = ("mask_time_prob", "mask_feature_prob")
MODALITY_OF_PLACEHOLDER = {"image": "vision", "audio": "audio"}


def cache_media_features(
    dataset: datasets.Dataset,
    model: torch.nn.Module,
    collator: Any,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
) -> datasets.Dataset:
    """`dataset` with the features of its media: the columns `cached_image_features`, `cached_audio_features` and
    `cached_media_error`, read from the cache file of this data set, towers and settings, or computed once and
    stored there (see the module docstring).

    Args:
        dataset (`datasets.Dataset`): raw rows of `collator.task` (media undecoded).
        model ([`MultimodalGPTForConditionalGeneration`], or a PEFT model around one): its frozen towers encode.
        collator ([`TaskCollator`]): the training collator; its task reads the rows, its processor prepares the
            media, its decoder decodes them.
        cache_dir (`str` or `Path`, *optional*): where the cache files go (default: the `datasets` cache,
            `$HF_DATASETS_CACHE`), under `multimodal_gpt_media_features/`.
        batch_size (`int`, defaults to 32): media encoded per tower call.

    Raises:
        `ValueError`: the data set is a stream, the task has no media, a tower trains or is random in training
            mode, or the collator augments media (what to do is said).
    """
    base = _base_model(model)
    modalities = check_cacheable(dataset, base, collator)
    key = cache_key(dataset, base, collator.processor, modalities)
    folder = Path(cache_dir if cache_dir is not None else datasets.config.HF_DATASETS_CACHE)
    path = folder / "multimodal_gpt_media_features" / f"{key}.arrow"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        logger.info("Media features of %d rows from the cache %s.", len(dataset), path)
    # a modality the task does not have gets empty lists (the collators read both columns)
    widths = {
        modality: base.model.fusion_input_width(modality) if modality in modalities else 1
        for modality in ("vision", "audio")
    }
    features = datasets.Features(
        {
            **dataset.features,
            IMAGE_FEATURES: datasets.List(datasets.Array2D(shape=(None, widths["vision"]), dtype="float32")),
            AUDIO_FEATURES: datasets.List(datasets.Array2D(shape=(None, widths["audio"]), dtype="float32")),
            MEDIA_ERROR: datasets.Value("string"),
        }
    )
    was_training = base.training
    base.eval()  # the towers' deterministic features: what they compute in training too (checked above)
    try:
        cached = dataset.map(
            _encode_rows,
            fn_kwargs={"model": base, "collator": collator},
            batched=True,
            batch_size=batch_size,
            features=features,
            cache_file_name=str(path),
            new_fingerprint=key,
            desc="caching media features",
        )
    finally:
        base.train(was_training)
    # the features as arrays (not nested lists), every other column as it was
    return cached.with_format("numpy", columns=[IMAGE_FEATURES, AUDIO_FEATURES], output_all_columns=True)


def check_cacheable(dataset: Any, model: torch.nn.Module, collator: Any) -> list[str]:
    """The modalities (`"vision"`, `"audio"`) whose media the task's rows carry and the model takes, after checking
    that caching their features changes nothing in training (see the module docstring); raises `ValueError`
    otherwise."""
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            "--cache_media_features stores the features next to a data set, but the training data is a stream "
            "(--streaming): drop one of them."
        )
    task = collator.task
    modalities = [
        modality for column, modality in ((task.image_column, "vision"), (task.audio_column, "audio")) if column
    ]
    if not modalities:
        raise ValueError(
            f"--cache_media_features caches the features of images and audio, but task {task.name!r} has none: "
            "drop it."
        )
    if collator.changes_media_between_epochs:
        raise ValueError(
            "--cache_media_features encodes each medium once, but the collator augments media (different pixels or "
            "samples every epoch): turn the augmentation off, or train without the cache."
        )
    predicted = model.config.media_prediction_modalities
    if predicted:
        raise ValueError(
            f"--cache_media_features trains from the towers' features, but media_loss_weight > 0 for "
            f"{' and '.join(predicted)} predicts the next patch / frame of the raw media (and runs the tower "
            "causally): set --media_loss_weight 0, or train without the cache."
        )
    # a modality without a tower: the collator reports its media as what the model cannot take
    modalities = [modality for modality in modalities if getattr(model.model, f"{modality}_tower") is not None]
    for modality in modalities:
        tower = getattr(model.model, f"{modality}_tower")
        if any(parameter.requires_grad for parameter in tower.parameters()):
            raise ValueError(
                f"--cache_media_features needs frozen towers, but the {modality} tower trains (its features change "
                "with every step): add --freeze_towers (or --train_only_fusion), or train without the cache."
            )
        random_fields = randomness_in_training(model.config.modality_config(modality))
        if random_fields:
            settings = ", ".join(f"{name}={value}" for name, value in random_fields.items())
            raise ValueError(
                f"--cache_media_features stores the {modality} tower's deterministic features, but in training mode "
                f"this tower is random ({settings}): a frozen tower still applies these, so the cache would change "
                f"what the model learns from. Set them to 0 in the tower's config (the model's "
                f"config.{modality}_config, or the preset), or train without the cache."
            )
    return modalities


def randomness_in_training(tower_config: Any) -> dict[str, float]:
    """The settings of `tower_config` that make the tower random in training mode, with their values."""
    found = {name: getattr(tower_config, name) for name in RANDOM_IN_TRAINING if getattr(tower_config, name, 0)}
    if getattr(tower_config, "apply_spec_augment", False):
        found.update({name: getattr(tower_config, name) for name in SPEC_AUGMENT if getattr(tower_config, name, 0)})
    return found


def cache_key(dataset: datasets.Dataset, model: torch.nn.Module, processor: Any, modalities: list[str]) -> str:
    """The hash that names a cache file: the data set's fingerprint, the towers' weights and configs, the model
    config's feature settings and the processor's settings."""
    config = model.config
    digest = hashlib.sha256()
    settings = {
        "version": CACHE_FORMAT_VERSION,
        "dataset": dataset._fingerprint,
        "vision_feature_layer": config.vision_feature_layer,
        "vision_token_merge": [config.vision_token_merge, config.vision_token_merge_mode],
        "audio_feature_layer": config.audio_feature_layer,
        "audio_frame_reduction": [config.audio_frame_reduction, config.audio_frame_reduction_mode],
        "towers": {modality: config.modality_config(modality).to_json_string() for modality in modalities},
        "image_processor": processor.image_processor.to_json_string() if "vision" in modalities else None,
        "feature_extractor": processor.feature_extractor.to_json_string() if "audio" in modalities else None,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for modality in modalities:
        for name, tensor in sorted(getattr(model.model, f"{modality}_tower").state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


# ----- encoding (one `datasets.map` batch) -------------------------------------------------------------------------


def _encode_rows(batch: dict[str, list[Any]], *, model: torch.nn.Module, collator: Any) -> dict[str, list[Any]]:
    """The cache columns of a batch of rows: each row's image and clip features, or why its media are unusable."""
    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
    decoded = [_decoded_media(row, collator) for row in rows]
    images = [image for media in decoded if not isinstance(media, str) for image in media[0]]
    clips = [clip for media in decoded if not isinstance(media, str) for clip in media[1]]
    image_features = iter(_image_features(model, collator.processor, images) if images else [])
    clip_features = iter(_clip_features(model, collator.processor, clips) if clips else [])
    columns: dict[str, list[Any]] = {IMAGE_FEATURES: [], AUDIO_FEATURES: [], MEDIA_ERROR: []}
    for media in decoded:
        row_images = [next(image_features) for _ in media[0]] if not isinstance(media, str) else []
        row_clips = [next(clip_features) for _ in media[1]] if not isinstance(media, str) else []
        error = media if isinstance(media, str) else None
        if any(len(clip) == 0 for clip in row_clips):
            error = "an audio clip too short to give the audio tower a single frame"
        columns[IMAGE_FEATURES].append(row_images if error is None else [])
        columns[AUDIO_FEATURES].append(row_clips if error is None else [])
        columns[MEDIA_ERROR].append(error)
    return columns


def _decoded_media(row: dict[str, Any], collator: Any) -> tuple[list[Any], list[np.ndarray]] | str:
    """A row's decoded images and clips, by the collator's own decoder, or why they are unusable (the collator
    skips such a row as it would skip the raw one). A missing column still raises."""
    collator.task.check_columns(row)
    try:
        return collator.decode_media(collator.task.example(row, epoch=0))
    except (ValueError, FileNotFoundError, TypeError) as error:
        return str(error)


@torch.no_grad()
def _image_features(model: torch.nn.Module, processor: Any, images: list[Any]) -> list[np.ndarray]:
    inputs = processor(text=[IMAGE_TOKEN] * len(images), images=images, return_tensors="pt")
    features = model.model.encode_images(inputs["pixel_values"].to(model.device))
    return list(features.float().cpu().numpy())


@torch.no_grad()
def _clip_features(model: torch.nn.Module, processor: Any, clips: list[np.ndarray]) -> list[np.ndarray]:
    sampling_rate = processor.feature_extractor.sampling_rate
    inputs = processor(
        text=[AUDIO_TOKEN] * len(clips), audio=clips, sampling_rate=sampling_rate, padding=True, return_tensors="pt"
    )
    audio = {
        key: value.to(model.device) for key, value in inputs.items() if key not in ("input_ids", "attention_mask")
    }
    features, mask = model.model.encode_audio(**audio)
    features, lengths = features.float().cpu().numpy(), mask.sum(-1).tolist()
    return [clip[:length] for clip, length in zip(features, lengths)]


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The `MultimodalGPTForConditionalGeneration` inside a PEFT model (LoRA on GPT-2), or `model` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


__all__ = [
    "AUDIO_FEATURES",
    "IMAGE_FEATURES",
    "MEDIA_ERROR",
    "cache_key",
    "cache_media_features",
    "check_cacheable",
    "randomness_in_training",
]
