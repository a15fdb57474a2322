"""Model cards: the `README.md` of every saved, pushed or trained checkpoint, rendered from `model_cards/`.

The card has the YAML metadata the Hub reads (`library_name: transformers`, `pipeline_tag`, `tags` with
`custom_code`, `base_model`, `datasets`, and a `model-index` with the run's metric results, built with
`huggingface_hub.ModelCardData` / `EvalResult`), then what the model is, how it was trained, its results and a usage
snippet for `trust_remote_code=True` users.

Which `README.md` gets (over)written ([`write_model_card`]): a card this module wrote (it carries the marker comment
[`CARD_MARKER`]) and the generic cards that `transformers` writes (`push_to_hub`'s and the `Trainer`'s) are replaced,
keeping their tags; any other card is the user's own and is left alone. A card this module wrote also records its
run (task, data, training, results) in that marker, so that re-saving into the same folder (`Trainer.save_model`
after a run, `push_to_hub` into a repo that already has the card) keeps them.
"""

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers.modelcard import make_markdown_table

from ..configuration_multimodal_gpt import AUDIO_TOKEN, IMAGE_TOKEN, MultimodalGPTConfig, vision_tower_convolutions
from ..data.tasks import get_task, language_name
from .metrics import TASK_METRICS

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "multimodal_gpt.md"
CARD_MARKER = "multimodal_gpt model card"
# Phrases of the cards that transformers writes on its own: `push_to_hub`'s (`create_and_tag_model_card`) and the
# `Trainer`'s (`TrainingSummary`). Such a card is replaced by ours, as is ours; any other card is the user's.
GENERIC_CARD_PHRASES = (
    "This model card has been automatically generated.",
    "This model card has been generated automatically according to the information the Trainer had access to.",
)
_MARKER_PATTERN = re.compile(re.escape(CARD_MARKER) + r" (\{.*?\}) -->", re.DOTALL)

TASK_DESCRIPTIONS = {
    "pretrain": "multimodal pretraining (next-token prediction on text, image-text and audio-text)",
    "captioning": "image captioning",
    "translation": "translation",
    "asr": "speech recognition",
    "mmt": "multimodal translation (an image and a sentence to translate)",
}
TASK_TAGS = {
    "captioning": ["image-captioning"],
    "translation": ["translation"],
    "asr": ["speech-recognition"],
    "mmt": ["translation", "multimodal-translation"],
}
METRIC_NAMES = {"wer": "WER", "cer": "CER", "bleu": "BLEU", "chrf": "chrF", "bleu4": "BLEU-4", "cider": "CIDEr-D"}
# The Hub's metric ids; BLEU-4 is a BLEU.
METRIC_TYPES = {"bleu4": "bleu"}
FUSION_DESCRIPTIONS = {
    "linear": "linear projector, one token per feature spliced in at the placeholder (LLaVA)",
    "mlp": "two-layer MLP projector, one token per feature spliced in at the placeholder (LLaVA)",
    "resampler": "Perceiver resampler with {queries} learned queries (Flamingo, BLIP-2)",
    "cross_attention": "gated cross-attention in GPT-2 blocks {layers}, tanh gates initialised at zero (Flamingo)",
}
# What a user's own input file is called in the usage snippet.
EXAMPLE_IMAGE = "photo.jpg"
EXAMPLE_AUDIO = "speech.wav"
EXAMPLE_SOURCE = "A man is riding a bicycle down the street."


@dataclass(frozen=True)
class DatasetInfo:
    """A data set as the card names it.

    Args:
        id (`str`): the name in the card's `datasets` metadata and `model-index` (a Hub id where there is one).
        name (`str`): the readable name.
        config (`str`, *optional*): the subset, e.g. the language pair `"en-de"`.
        description (`str`, defaults to `""`): one line on what was used.
        license (`str`, defaults to `""`): its licence, named in the card's limitations.
        on_hub (`bool`, defaults to `False`): `id` is a Hub data set id: the card's `datasets` metadata lists it
            (the Hub links it), others are named in the text only.
    """

    id: str
    name: str
    config: str | None = None
    description: str = ""
    license: str = ""
    on_hub: bool = False


def _is_card_metric(key: str, value: Any, task: str | None) -> bool:
    """A loss or one of the task's generation metrics (`eval_wer`, `test_bleu`, `train_loss`, ...)."""
    metric = key.partition("_")[2]
    return isinstance(value, int | float) and metric in (*TASK_METRICS.get(task, ()), "loss")


# ----- rendering ---------------------------------------------------------------------------------------------------


def render_model_card(
    model_or_config: Any,
    *,
    task: str | None = None,
    datasets: Sequence[DatasetInfo | Mapping[str, Any] | str] | None = None,
    results: Mapping[str, float] | None = None,
    training: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    evaluation_history: Sequence[Mapping[str, Any]] | None = None,
    framework_versions: Mapping[str, str] | None = None,
    base_models: Sequence[str] | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    tags: Sequence[str] | None = None,
    license: str | None = None,
    language: str | Sequence[str] | None = None,
) -> ModelCard:
    """Render the model card of a [`MultimodalGPTForConditionalGeneration`] (or of its config) from the template in
    `model_cards/`.

    Args:
        model_or_config: the model (its parameters are counted) or a [`MultimodalGPTConfig`].
        task (`str`, *optional*): the task it was trained for (`pretrain`, `captioning`, `translation`, `asr`,
            `mmt`): chooses the `pipeline_tag`, the tags and the usage snippet. Without one, the towers do.
        datasets (*optional*): the training data, as [`DatasetInfo`]s, their dicts, or names; the first is the one
            `results` were measured on.
        results (`Mapping[str, float]`, *optional*): metrics as the `Trainer` returns them (`eval_wer`,
            `test_bleu`, `eval_loss`, ...: the prefix `eval` is the validation split, any other prefix names its
            split). The task's generation metrics go into the `model-index`; the loss only into the results table.
        training (`Mapping[str, Any]`, *optional*): lines for the training section, label -> value (e.g.
            `{"steps": 1200, "started from": "gpt2"}`).
        hyperparameters (`Mapping[str, Any]`, *optional*): the `Trainer`'s hyperparameters, as its own card lists
            them (`transformers.modelcard.extract_hyperparameters_from_trainer`).
        evaluation_history (`Sequence[Mapping[str, Any]]`, *optional*): one row per evaluation during training
            (`transformers.modelcard.parse_log_history`), shown as a table.
        framework_versions (`Mapping[str, str]`, *optional*): package name -> version.
        base_models (`Sequence[str]`, *optional*): the `base_model` metadata. Default: the Hub id the model was
            loaded from, else the Hub ids of the parts it was built from (`from_pretrained_parts`); local folders
            are never listed.
        model_name (`str`, *optional*): the card's title. Default: the last part of `repo_id`, else
            `"multimodal-gpt2"` ([`write_model_card`]: the folder's name).
        repo_id (`str`, *optional*): the Hub repo the card is for; the usage snippet loads it.
        tags (`Sequence[str]`, *optional*): more tags, after `custom_code`, `multimodal_gpt`, `gpt2`, the modalities.
        license, language (*optional*): the card's `license` and `language` metadata.
    """
    config = _config_of(model_or_config)
    if task is not None and task not in TASK_DESCRIPTIONS:
        raise ValueError(f"Unknown task {task!r} for the model card: choose one of {sorted(TASK_DESCRIPTIONS)}.")
    dataset_infos = [_dataset_info(entry) for entry in datasets or []]
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else "multimodal-gpt2")
    pipeline_tag = pipeline_tag_for(config, task)
    result_rows = _result_rows(config, results or {}, task, dataset_infos)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=_unique([*card_tags(config, task), *(tags or [])]),
        base_model=list(base_models) if base_models is not None else base_models_of(model_or_config) or None,
        datasets=_unique([info.id for info in dataset_infos if info.on_hub]) or None,
        license=license,
        language=language,
        model_name=model_name,
        eval_results=[row["eval_result"] for row in result_rows if row["eval_result"] is not None] or None,
    )
    if not card_data.base_model:
        card_data.base_model = None
    state = {
        "task": task,
        "datasets": [asdict(info) for info in dataset_infos],
        "results": dict(results or {}),
        "training": dict(training or {}),
        "hyperparameters": dict(hyperparameters or {}),
        "evaluation_history": [dict(row) for row in evaluation_history or []],
        "framework_versions": dict(framework_versions or {}),
        "base_models": list(base_models) if base_models is not None else None,
        "license": license,
        "language": language,
    }
    template_kwargs = {
        "marker": f"{CARD_MARKER} {_encode_state(state)}",
        "model_name": model_name,
        "summary": _summary(config, task, dataset_infos),
        "architecture": _architecture(model_or_config, config),
        "training": _training_lines(task, dataset_infos, training or {}),
        "hyperparameters": [f"{name}: {value}" for name, value in (hyperparameters or {}).items()],
        "evaluation_table": make_markdown_table(list(evaluation_history or [])).strip(),
        "framework_versions": [f"{name} {version}" for name, version in (framework_versions or {}).items()],
        "results": result_rows,
        "results_note": "Generation is greedy unless the training lines say otherwise. WER and CER are fractions "
        "(0 is perfect); BLEU, chrF and BLEU-4 are 0-100; CIDEr-D is on coco-caption's scale.",
        "usage_intro": _usage_intro(config, task),
        "usage": usage_snippet(config, task, repo_id=repo_id or f"your-username/{_slug(model_name)}"),
        "limitations": _limitations(dataset_infos),
    }
    return ModelCard.from_template(card_data, template_str=read_template(), **template_kwargs)


def write_model_card(
    folder: str | os.PathLike,
    model_or_config: Any,
    *,
    overwrite: bool = False,
    **card_kwargs: Any,
) -> Path | None:
    """Write the model card into `folder/README.md` and return its path.

    A `README.md` already in `folder` is replaced only if this module wrote it or it is one of transformers'
    generic cards (its tags are kept); anything else is the user's own card: it is kept (returns `None`) unless
    `overwrite=True`. A card this module wrote also gives the task, data, results, training and base models that
    `card_kwargs` leave out, so that re-saving a trained model into its folder keeps them.

    Args:
        folder (`str` or `os.PathLike`): the checkpoint folder (created if missing).
        model_or_config: the model or its config.
        overwrite (`bool`, defaults to `False`): replace a hand-written card too.
        card_kwargs: [`render_model_card`]'s keyword arguments.
    """
    path = Path(folder) / "README.md"
    if path.is_file() and not overwrite:
        existing = path.read_text(encoding="utf-8")
        if not is_generated_card(existing):
            logger.info("Kept the hand-written model card %s (pass overwrite=True to replace it).", path)
            return None
        for key, value in recorded_card_state(existing).items():
            if card_kwargs.get(key) is None and value:
                card_kwargs[key] = value
        existing_tags = ModelCard(existing, ignore_metadata_errors=True).data.tags or []
        card_kwargs["tags"] = _unique([*(card_kwargs.get("tags") or []), *existing_tags])
    if card_kwargs.get("model_name") is None and card_kwargs.get("repo_id") is None:
        card_kwargs["model_name"] = Path(folder).resolve().name
    card = render_model_card(model_or_config, **card_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


def is_generated_card(text: str) -> bool:
    """Whether a `README.md` was written by this module or is one of transformers' generic cards."""
    return CARD_MARKER in text or any(phrase in text for phrase in GENERIC_CARD_PHRASES)


def recorded_card_state(text: str) -> dict[str, Any]:
    """The run a card of this module records in its marker (task, datasets, results, training, ...); `{}` for any
    other card."""
    match = _MARKER_PATTERN.search(text)
    if match is None:
        return {}
    try:
        return json.loads(match.group(1))
    except json.JSONDecodeError:
        return {}


def read_template() -> str:
    """The card template, `model_cards/multimodal_gpt.md`: the one beside this code in a source checkout (editable
    installs included), else the installed package's data (mapped to `multimodal_gpt.model_cards` in
    pyproject.toml)."""
    checkout = Path(__file__).resolve().parents[2] / "model_cards" / TEMPLATE_NAME
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    try:
        return resources.files("multimodal_gpt.model_cards").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    raise FileNotFoundError(
        f"The model card template {TEMPLATE_NAME} is missing: it ships as package data (multimodal_gpt.model_cards) "
        "and lives in model_cards/ of a source checkout. Reinstall the package (pip install multimodal-gpt, or "
        "pip install -e . in the checkout)."
    )


# ----- metadata ----------------------------------------------------------------------------------------------------


def pipeline_tag_for(config: MultimodalGPTConfig, task: str | None = None) -> str:
    """The Hub `pipeline_tag`: from the task (translation is `text-generation`: v5 has no translation pipeline), or,
    for pretraining and no task, from the towers."""
    if task == "asr":
        return "automatic-speech-recognition"
    if task in ("captioning", "mmt"):
        return "image-text-to-text"
    if task == "translation":
        return "text-generation"
    vision, audio = config.vision_config is not None, config.audio_config is not None
    if vision and audio:
        return "any-to-any"
    if vision:
        return "image-text-to-text"
    if audio:
        return "audio-text-to-text"
    return "text-generation"


def card_tags(config: MultimodalGPTConfig, task: str | None = None) -> list[str]:
    """`custom_code` (the Hub's tag for repos that need `trust_remote_code`), the package, GPT-2, the modalities
    and the task."""
    modalities = [name for name, sub in (("vision", config.vision_config), ("audio", config.audio_config)) if sub]
    return ["custom_code", "multimodal_gpt", "gpt2", *modalities, *TASK_TAGS.get(task, [])]


def base_models_of(model_or_config: Any) -> list[str]:
    """The Hub ids this model comes from: the repo it was loaded from, else the parts `from_pretrained_parts` built
    it from (GPT-2, the towers), as recorded in the sub-configs. Local folders are left out."""
    name_or_path = getattr(model_or_config, "name_or_path", "") or ""
    if isinstance(model_or_config, MultimodalGPTConfig):
        name_or_path = ""  # a config's `_name_or_path` is where it was read from, not a model it was trained from
    if _is_hub_id(name_or_path):
        return [name_or_path]
    config = _config_of(model_or_config)
    parts = [
        getattr(sub, "_name_or_path", "") for sub in (config.text_config, config.vision_config, config.audio_config)
    ]
    return _unique([name for name in parts if _is_hub_id(name)])


def _is_hub_id(name: str) -> bool:
    if not name or os.path.isabs(name) or name.startswith(".") or os.path.exists(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _result_rows(
    config: MultimodalGPTConfig, results: Mapping[str, float], task: str | None, datasets: Sequence[DatasetInfo]
) -> list[dict[str, Any]]:
    """One row per recorded metric: the task's generation metrics (also as `EvalResult`s) and the losses."""
    generation_metrics = TASK_METRICS.get(task, ())
    dataset = datasets[0] if datasets else DatasetInfo("unknown", "unspecified data")
    rows = []
    for key, value in results.items():
        prefix, _, metric = key.partition("_")
        if not _is_card_metric(key, value, task):
            continue
        split = "validation" if prefix == "eval" else prefix
        eval_result = None
        if metric in generation_metrics:
            eval_result = EvalResult(
                task_type=pipeline_tag_for(config, task),
                task_name=TASK_DESCRIPTIONS[task],
                dataset_type=dataset.id,
                dataset_name=dataset.name,
                dataset_config=dataset.config,
                dataset_split=split,
                metric_type=METRIC_TYPES.get(metric, metric),
                metric_name=METRIC_NAMES[metric],
                metric_value=round(float(value), 6),
            )
        rows.append(
            {
                "dataset": dataset.name,
                "split": split,
                "metric": METRIC_NAMES.get(metric, metric),
                "value": f"{value:.4g}",
                "eval_result": eval_result,
            }
        )
    return rows


# ----- body --------------------------------------------------------------------------------------------------------


def _summary(config: MultimodalGPTConfig, task: str | None, datasets: Sequence[DatasetInfo]) -> str:
    inputs = ["text"]
    if config.vision_config is not None:
        inputs.insert(0, "images")
    if config.audio_config is not None:
        inputs.insert(0, "audio")
    text = f"A GPT-2 that reads {', '.join(inputs[:-1])} and {inputs[-1]}" if len(inputs) > 1 else "A GPT-2"
    text += ", with pluggable Transformers encoder towers and a fusion module, writing text."
    if task is not None:
        text += f" Trained for {TASK_DESCRIPTIONS[task]}"
        text += f" on {', '.join(info.name for info in datasets)}." if datasets else "."
    return text


def _architecture(model_or_config: Any, config: MultimodalGPTConfig) -> list[tuple[str, str]]:
    text = config.text_config
    rows = [
        (
            "language model",
            f"GPT-2: {text.n_layer} layers, hidden size {text.n_embd}, {text.n_head} heads, vocabulary "
            f"{text.vocab_size:,}, context {text.n_positions} tokens{_from(text)}",
        )
    ]
    if config.vision_config is not None:
        rows.append(("vision tower", _tower_description(config.vision_config)))
        rows.append(("vision fusion", f"{_fusion_description(config, 'vision')}; {_image_tokens(config)}"))
    if config.audio_config is not None:
        rows.append(("audio tower", _tower_description(config.audio_config)))
        rows.append(("audio fusion", f"{_fusion_description(config, 'audio')}; {_audio_tokens(config)}"))
    if hasattr(model_or_config, "parameters"):
        total = sum(parameter.numel() for parameter in model_or_config.parameters())
        rows.append(("parameters", f"{total / 1e6:.2f} M"))
    return rows


def _tower_description(tower_config: Any) -> str:
    convolutions = vision_tower_convolutions(tower_config)
    if convolutions is not None:
        stride = math.prod(stride for _, stride, _ in convolutions)
        text = (
            f"`{tower_config.model_type}` convolutional encoder: {len(tower_config.depths)} stages of "
            f"{list(tower_config.depths)} blocks, widths {list(tower_config.hidden_sizes)}, {tower_config.image_size} "
            f"px images, one feature per {stride} px of the last feature map"
        )
        return text + _from(tower_config)
    layers = getattr(tower_config, "num_hidden_layers", None) or getattr(tower_config, "encoder_layers", None)
    hidden = getattr(tower_config, "hidden_size", None) or getattr(tower_config, "d_model", None)
    text = f"`{tower_config.model_type}` encoder: {layers} layers, hidden size {hidden}"
    if hasattr(tower_config, "image_size"):
        text += f", {tower_config.image_size} px images in {tower_config.patch_size} px patches"
    if hasattr(tower_config, "num_mel_bins"):
        window = 2 * tower_config.max_source_positions / 100
        text += f", {tower_config.num_mel_bins} log-mel bins, a {window:g} s window"
    return text + _from(tower_config)


def _from(sub_config: Any) -> str:
    name = getattr(sub_config, "_name_or_path", "")
    return f", from `{name}`" if name and _is_hub_id(name) else ""


def _fusion_description(config: MultimodalGPTConfig, modality: str) -> str:
    fusion = config.fusion[modality]
    layers = ", ".join(str(index) for index in config.cross_attention_layers)
    return f"`{fusion}`: " + FUSION_DESCRIPTIONS[fusion].format(queries=config.resampler_num_queries, layers=layers)


def _image_tokens(config: MultimodalGPTConfig) -> str:
    count = config.num_image_tokens()
    return f"{count} token{'s' if count != 1 else ''} per `{IMAGE_TOKEN}`"


def _audio_tokens(config: MultimodalGPTConfig) -> str:
    fusion = config.fusion["audio"]
    if fusion in ("resampler", "cross_attention"):
        count = config.num_audio_tokens(1)
        return f"{count} token{'s' if count != 1 else ''} per `{AUDIO_TOKEN}`, whatever the clip's length"
    # One second of tower input: 100 log-mel frames of 10 ms (Whisper) or 16,000 samples (wav2vec2, HuBERT).
    second = 100 if hasattr(config.audio_config, "num_mel_bins") else 16000
    tokens = config.num_audio_tokens(second)
    return f"about {tokens} tokens per second of audio (frames reduced {config.audio_frame_reduction}:1)"


def _training_lines(task: str | None, datasets: Sequence[DatasetInfo], training: Mapping[str, Any]) -> list[str]:
    lines = []
    if task is not None:
        lines.append(f"task: {TASK_DESCRIPTIONS[task]} (`{task}`), prompt `{_prompt(task)}`")
    for info in datasets:
        subset = f" ({info.config})" if info.config else ""
        lines.append(f"data: {info.name}{subset}" + (f": {info.description}" if info.description else ""))
    for label, value in training.items():
        lines.append(f"{label}: {value:.4g}" if isinstance(value, float) else f"{label}: {value}")
    return lines


def _limitations(datasets: Sequence[DatasetInfo]) -> str:
    text = (
        "The Hub's hosted inference widgets do not run custom code: load the model as above. "
        "The figures above are the run's own evaluation, on the splits named there."
    )
    if any(info.id == "multimodal_gpt-synthetic" for info in datasets):
        text += " Trained on generated data only: this checkpoint demonstrates the pipeline; it is not meant for "
        text += "real images, speech or text."
    elif datasets:
        text += " Expect it to work on inputs like its training data, not beyond."
        licences = [f"{info.name}: {info.license}" for info in datasets if info.license]
        if licences:
            text += f" The data's licences apply ({'; '.join(licences)})."
    return text


# ----- usage -------------------------------------------------------------------------------------------------------


def _usage_kind(config: MultimodalGPTConfig, task: str | None) -> str:
    """Which input the snippet shows: `audio`, `image`, `mmt`, `translation` or `text`."""
    if task in ("asr", "mmt", "translation"):
        return {"asr": "audio", "mmt": "mmt", "translation": "translation"}[task]
    if task == "captioning" or config.vision_config is not None:
        return "image"
    if config.audio_config is not None:
        return "audio"
    return "text"


AUTO_CLASSES = {
    "audio": "AutoModelForSpeechSeq2Seq",
    "image": "AutoModelForImageTextToText",
    "mmt": "AutoModelForImageTextToText",
    "translation": "AutoModelForCausalLM",
    "text": "AutoModelForCausalLM",
}


def _prompt(task_or_kind: str) -> str:
    """The prompt of a task (or usage kind), as the task's template gives it (see `tasks.py`)."""
    if task_or_kind in ("audio", "asr"):
        return AUDIO_TOKEN
    if task_or_kind in ("image", "captioning"):
        return IMAGE_TOKEN
    if task_or_kind in ("translation", "mmt"):
        task = get_task(task_or_kind)
        return task.prompt_template.format(
            image=IMAGE_TOKEN,
            audio="",
            source=EXAMPLE_SOURCE,
            source_language=language_name(task.source_lang),
            target_language=language_name(task.target_lang),
        )
    if task_or_kind == "pretrain":
        return f"{IMAGE_TOKEN} or {AUDIO_TOKEN} (the row's media), or nothing"
    return ""


def usage_snippet(config: MultimodalGPTConfig, task: str | None = None, *, repo_id: str = "user/model") -> str:
    """Python that loads the checkpoint with `trust_remote_code=True` and generates for the task's prompt; it reads
    the user's `photo.jpg` / `speech.wav`."""
    kind = _usage_kind(config, task)
    imports = ["from PIL import Image"] if kind in ("image", "mmt") else []
    media = ""
    if kind in ("image", "mmt"):
        media = f', images=Image.open("{EXAMPLE_IMAGE}")'
    elif kind == "audio":
        media = f', audio="{EXAMPLE_AUDIO}"'  # decoded with soundfile and resampled to the tower's rate
    lines = [
        *imports,
        f"from transformers import AutoProcessor, {AUTO_CLASSES[kind]}",
        "",
        f'checkpoint = "{repo_id}"  # this repo, or a local folder with its files',
        "processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)",
        f"model = {AUTO_CLASSES[kind]}.from_pretrained(checkpoint, trust_remote_code=True)",
        "",
        f'inputs = processor(text={json.dumps(_prompt(kind))}{media}, return_tensors="pt")',
        "generated = model.generate(**inputs, max_new_tokens=32)",
        'new_tokens = generated[:, inputs["input_ids"].shape[1] :]',
        "print(processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip())",
    ]
    return "\n".join(lines)


def _usage_intro(config: MultimodalGPTConfig, task: str | None) -> str:
    kind = _usage_kind(config, task)
    needs = {
        "image": f"and Pillow, on your own `{EXAMPLE_IMAGE}`",
        "mmt": f"and Pillow, on your own `{EXAMPLE_IMAGE}` and sentence",
        "audio": "and `soundfile` (to decode audio files; or pass arrays with `sampling_rate=`), on your own "
        f"`{EXAMPLE_AUDIO}`",
        "translation": "on your own sentence",
        "text": "on your own text",
    }[kind]
    text = f"With `transformers` and `torch` installed, {needs}:"
    if kind == "image" and config.audio_config is not None:
        text += (
            f' audio works the same way, with `processor(text="{AUDIO_TOKEN}", audio="{EXAMPLE_AUDIO}")` and '
            "`AutoModelForSpeechSeq2Seq` (every Auto class in `auto_map` loads the same model)."
        )
    return text


# ----- helpers -----------------------------------------------------------------------------------------------------


def _config_of(model_or_config: Any) -> MultimodalGPTConfig:
    config = getattr(model_or_config, "config", model_or_config)
    if getattr(config, "model_type", None) != MultimodalGPTConfig.model_type:
        raise TypeError(
            "The model card describes a multimodal_gpt model: pass a MultimodalGPTForConditionalGeneration (or "
            f"MultimodalGPTModel) or its MultimodalGPTConfig, not {type(model_or_config).__name__}."
        )
    return config


def _dataset_info(entry: DatasetInfo | Mapping[str, Any] | str) -> DatasetInfo:
    if isinstance(entry, DatasetInfo):
        return entry
    if isinstance(entry, str):
        return DatasetInfo(entry, entry)
    return DatasetInfo(**entry)


def _encode_state(state: Mapping[str, Any]) -> str:
    """The run as JSON inside an HTML comment: `>` is escaped so that no string can close the comment."""
    return json.dumps(state, default=str).replace(">", "\\u003e")


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "multimodal-gpt2"


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


__all__ = [
    "CARD_MARKER",
    "DatasetInfo",
    "base_models_of",
    "card_tags",
    "is_generated_card",
    "pipeline_tag_for",
    "read_template",
    "recorded_card_state",
    "render_model_card",
    "usage_snippet",
    "write_model_card",
]
