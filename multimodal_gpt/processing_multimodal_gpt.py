"""MultimodalGPTProcessor: tokenizer + image processor + audio feature extractor, with placeholder expansion.

Each `<image>` / `<audio>` in the text becomes exactly as many tokens as the model produces for that medium (for
audio this follows the clip's length), so the model can splice the media in. This is a "Hub file": it imports only
torch, transformers, huggingface_hub, the standard library, its sibling Hub files and, optionally, soundfile (to
decode files) and soxr (to resample).
"""

import io
import os
import re
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoTokenizer,
    BatchFeature,
    ProcessorMixin,
    ViTImageProcessorPil,
    Wav2Vec2FeatureExtractor,
    WhisperFeatureExtractor,
)

from .configuration_multimodal_gpt import (
    AUDIO_TOKEN,
    IMAGE_TOKEN,
    MultimodalGPTConfig,
    _pair,
    add_multimodal_tokens,
    count_audio_tokens,
    count_image_tokens,
    load_text_tokenizer,
)

try:
    import soundfile
except ImportError:  # optional: only needed to decode audio files or bytes
    soundfile = None
try:
    import soxr
except ImportError:  # optional: only needed when a clip's sampling rate differs from the feature extractor's
    soxr = None

# Chat messages in the format of LLaVA's and Qwen2-Audio's processors: `{"role": ..., "content": str or [{"type":
# "image"}, {"type": "audio"}, {"type": "text", "text": ...}]}`. The model is trained on prompts whose media come
# where their items are and whose answer starts with one space (`multimodal_gpt.data.tasks`): a user turn renders as
# its items in order, an assistant turn as " " + its text + eos. The generation prompt adds nothing: the model writes
# the space.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}{{ ' ' }}{%- endif -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}"
    + IMAGE_TOKEN
    + "{%- elif item['type'] == 'audio' -%}"
    + AUDIO_TOKEN
    + "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}"
    "{%- endfor -%}"
)
PLACEHOLDER_PATTERN = re.compile(f"({re.escape(IMAGE_TOKEN)}|{re.escape(AUDIO_TOKEN)})")
SUB_PROCESSORS = ("image_processor", "feature_extractor", "tokenizer")


class MultimodalGPTProcessor(ProcessorMixin):
    r"""
    Turns text with `<image>` / `<audio>` placeholders, images and audio clips into the inputs of
    [`MultimodalGPTForConditionalGeneration`].

    Args:
        image_processor ([`BaseImageProcessor`], *optional*):
            The vision tower's image processor; `None` for a model without a vision tower.
        feature_extractor ([`SequenceFeatureExtractor`], *optional*):
            The audio tower's feature extractor (Whisper's log-mel, or wav2vec2's waveform normaliser); `None` for a
            model without an audio tower.
        tokenizer ([`PreTrainedTokenizerBase`]):
            GPT-2's tokenizer, with the `<image>` / `<audio>` special tokens (see `add_multimodal_tokens`).
        media_token_spec (`dict`):
            How many tokens a medium becomes: `MultimodalGPTConfig.media_token_spec()` of the model.
        chat_template (`str`, *optional*):
            A Jinja template for chat messages (`apply_chat_template`); defaults to `DEFAULT_CHAT_TEMPLATE`, which
            takes LLaVA / Qwen2-Audio style messages whose content items are `{"type": "image"}`, `{"type":
            "audio"}` and `{"type": "text", "text": ...}`, in the prompt format the model is trained on.

    Whisper-style towers take exactly 30 s of log-mel frames, so their clips are padded to 30 s (the encoder
    refuses anything else), but only the frames of the real clip become tokens: a 1 s clip gives as few tokens with
    Whisper as with wav2vec2. Waveform towers (wav2vec2, HuBERT) are padded only to the longest clip of the batch.
    """

    def __init__(
        self,
        image_processor: Any = None,
        feature_extractor: Any = None,
        tokenizer: Any = None,
        media_token_spec: dict[str, Any] | None = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ):
        if tokenizer is None:
            raise ValueError("MultimodalGPTProcessor needs a tokenizer.")
        if media_token_spec is None:
            raise ValueError("MultimodalGPTProcessor needs media_token_spec: pass model.config.media_token_spec().")
        given = {"image_processor": image_processor, "feature_extractor": feature_extractor, "tokenizer": tokenizer}
        for modality, name in (("image", "image_processor"), ("audio", "feature_extractor")):
            if (media_token_spec.get(modality) is None) != (given[name] is None):
                raise ValueError(
                    f"media_token_spec {'lacks' if given[name] is not None else 'has'} '{modality}' but "
                    f"{name} is {'set' if given[name] is not None else 'None'}: they must describe the same model."
                )
        present = [name for name in SUB_PROCESSORS if given[name] is not None]
        # A model may lack a tower: ProcessorMixin then handles only the sub-processors it has.
        self.get_attributes = lambda: list(present)
        for name in SUB_PROCESSORS:
            setattr(self, name, given[name])
        self.media_token_spec = media_token_spec
        self.image_token = IMAGE_TOKEN
        self.audio_token = AUDIO_TOKEN
        vocab = tokenizer.get_vocab()
        if IMAGE_TOKEN not in vocab or AUDIO_TOKEN not in vocab:
            raise ValueError("The tokenizer lacks <image> / <audio>: call multimodal_gpt.add_multimodal_tokens on it.")
        self.image_token_id = vocab[IMAGE_TOKEN]
        self.audio_token_id = vocab[AUDIO_TOKEN]
        chat_template = chat_template if chat_template is not None else DEFAULT_CHAT_TEMPLATE
        super().__init__(**{name: given[name] for name in present}, chat_template=chat_template, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Load only the sub-processors that were saved (a model may have no vision or no audio tower)."""
        processor_dict = processor_dict or {}
        kwargs.pop("subfolder", None)
        spec = processor_dict.get("media_token_spec") or {}
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        image_processor = (
            AutoImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs) if spec.get("image") else None
        )
        feature_extractor = (
            AutoFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **kwargs)
            if spec.get("audio")
            else None
        )
        return [image_processor, feature_extractor, tokenizer]

    @classmethod
    def from_pretrained_parts(
        cls,
        text_model: str | os.PathLike,
        vision_model: str | os.PathLike | None = None,
        audio_model: str | os.PathLike | None = None,
        config: MultimodalGPTConfig | None = None,
        tokenizer: Any = None,
        **config_kwargs: Any,
    ) -> "MultimodalGPTProcessor":
        """The processor for a model built by `MultimodalGPTForConditionalGeneration.from_pretrained_parts` from the
        same parts: GPT-2's tokenizer with the same added special tokens, the towers' image processor and feature
        extractor. Pass that model's `config` (or the same `config_kwargs`, e.g. `fusion="resampler"`) so that the
        media token counts agree. `tokenizer` (optional) replaces the one saved with `text_model`, as in the
        model's `from_pretrained_parts`."""
        tokenizer = load_text_tokenizer(text_model, tokenizer)
        add_multimodal_tokens(tokenizer)
        tokenizer.padding_side = "left"  # batched generation continues every prompt at its end
        if config is None:
            config = MultimodalGPTConfig.from_pretrained_parts(
                text_model, vision_model, audio_model, tokenizer=tokenizer, **config_kwargs
            )
        return cls(
            image_processor=AutoImageProcessor.from_pretrained(vision_model) if vision_model is not None else None,
            feature_extractor=AutoFeatureExtractor.from_pretrained(audio_model) if audio_model is not None else None,
            tokenizer=tokenizer,
            media_token_spec=config.media_token_spec(),
        )

    @classmethod
    def from_config(cls, config: MultimodalGPTConfig, tokenizer: Any) -> "MultimodalGPTProcessor":
        """A processor for a model whose towers start from scratch, with no pretrained preprocessing to load.
        Images: resized to the tower's `image_size`, scaled to [-1, 1] (`ViTImageProcessorPil`: ViT's PIL backend,
        which needs no torchvision; a tower trained from scratch has no pretrained statistics to match). Audio:
        Whisper's log-mel extractor with `num_mel_bins` for Whisper-style towers, else wav2vec2's per-clip waveform
        normaliser, both at 16 kHz."""
        image_processor = feature_extractor = None
        if config.vision_config is not None:
            height, width = _pair(config.vision_config.image_size)
            image_processor = ViTImageProcessorPil(size={"height": height, "width": width})
        if config.audio_config is not None:
            if hasattr(config.audio_config, "num_mel_bins"):
                # Whisper's encoder takes exactly 2 * max_source_positions frames of 10 ms: 30 s for real Whisper
                window_seconds = config.audio_config.max_source_positions * 2 // 100
                feature_extractor = WhisperFeatureExtractor(
                    feature_size=config.audio_config.num_mel_bins, chunk_length=window_seconds
                )
            else:
                feature_extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True)
        return cls(image_processor, feature_extractor, tokenizer, media_token_spec=config.media_token_spec())

    @property
    def model_input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"]
        if self.image_processor is not None:
            names.append("pixel_values")
        if self.feature_extractor is not None:
            audio_input = self.feature_extractor.model_input_names[0]
            names += [audio_input, f"{audio_input}_mask"]
        return names

    # ----- call ------------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | list[str] | None = None,
        images: Any = None,
        audio: Any = None,
        sampling_rate: int | None = None,
        *,
        videos: Any = None,
        resample: bool = True,
        return_tensors: str | None = None,
        **text_kwargs: Any,
    ) -> BatchFeature:
        """
        Args:
            text (`str` or `list[str]`):
                One prompt or a batch, with one `<image>` / `<audio>` placeholder per medium.
            images (*optional*):
                PIL images or arrays: one, a flat list in placeholder order (row by row), or one list per sample.
                Grayscale and RGBA images are converted to RGB.
            audio (*optional*):
                Clips as 1-D arrays, `{"array", "sampling_rate"}` dicts (a `datasets` `Audio` value), file paths or
                bytes: one, a flat list in placeholder order, or one list per sample.
            sampling_rate (`int`, *optional*):
                The rate of array clips that do not carry their own.
            resample (`bool`, defaults to `True`):
                Resample clips whose rate differs from the feature extractor's; with `False`, such a clip is an
                error that names both rates.
            return_tensors (`str`, *optional*):
                `"pt"` for PyTorch tensors.
            videos:
                Accepted so that Transformers' `any-to-any` pipeline (which passes `videos=None`) can call the
                processor; the model takes no video, so anything but `None` is an error.
            text_kwargs:
                Passed to the tokenizer (`padding`, `padding_side`, `truncation`, `max_length`, ...). Truncation
                that would cut through a media span is an error: shorten the text instead (the collators do).

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask`, and `pixel_values` and/or `input_features` +
            `input_features_mask` (Whisper) / `input_values` + `input_values_mask` (wav2vec2, HuBERT).
        """
        if text is None:
            raise ValueError("Give `text`, with one <image> / <audio> placeholder for each medium.")
        if videos is not None:
            raise ValueError("This model takes no video: pass images (frames) with <image> placeholders instead.")
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(item, str) for item in texts):
            raise ValueError("`text` must be a string or a list of strings.")
        image_list = self._flatten_media(images, texts, IMAGE_TOKEN, "images")
        audio_list = self._flatten_media(audio, texts, AUDIO_TOKEN, "audio")
        media: dict[str, Any] = {}
        image_counts: list[int] = []
        audio_counts: list[int] = []
        if image_list:
            media["pixel_values"], image_counts = self._process_images(image_list)
        if audio_list:
            audio_inputs, audio_counts = self._process_audio(audio_list, sampling_rate, resample)
            media.update(audio_inputs)
        expanded = self._expand_placeholders(texts, image_counts, audio_counts)
        text_inputs = self.tokenizer(expanded, **text_kwargs)
        if return_tensors is not None:  # as lists, an empty prompt is fine (a collator adds bos to it)
            self._check_no_text_is_empty(text_inputs["input_ids"], texts)
        self._check_no_media_span_was_cut(text_inputs["input_ids"], expanded)
        return BatchFeature(data={**text_inputs, **media}, tensor_type=return_tensors)

    def _flatten_media(self, media: Any, texts: list[str], placeholder: str, name: str) -> list[Any]:
        """Media as one flat list in placeholder order, checked against the placeholder counts."""
        per_text = [item.count(placeholder) for item in texts]
        if media is None:
            items: list[Any] = []
        elif isinstance(media, (list, tuple)) and media and all(isinstance(group, (list, tuple)) for group in media):
            if len(media) != len(texts):
                raise ValueError(f"{len(media)} lists of {name} for {len(texts)} texts: give one list per text.")
            for index, (group, count) in enumerate(zip(media, per_text)):
                if len(group) != count:
                    raise ValueError(
                        f"Text {index} has {count} {placeholder} placeholders but {len(group)} {name} were given."
                    )
            items = [item for group in media for item in group]
        elif isinstance(media, (list, tuple)):
            items = list(media)
        else:
            items = [media]
        if len(items) != sum(per_text):
            raise ValueError(
                f"The text has {sum(per_text)} {placeholder} placeholders but {len(items)} {name} were given: "
                f"put one {placeholder} where each medium goes."
            )
        return items

    def _process_images(self, images: list[Any]) -> tuple[np.ndarray, list[int]]:
        if self.image_processor is None:
            raise ValueError("Images were given, but this processor has no image processor (no vision tower).")
        # numpy until the end: BatchFeature converts once (tiny torch ops here cost more than the work)
        pixel_values = self.image_processor([to_rgb(image) for image in images], return_tensors="np")["pixel_values"]
        count = count_image_tokens(self.media_token_spec["image"], *pixel_values.shape[-2:])
        return pixel_values, [count] * len(images)

    def _process_audio(
        self, clips: list[Any], sampling_rate: int | None, resample: bool
    ) -> tuple[dict[str, np.ndarray], list[int]]:
        if self.feature_extractor is None:
            raise ValueError("Audio was given, but this processor has no feature extractor (no audio tower).")
        target_rate = self.feature_extractor.sampling_rate
        arrays = [load_clip(clip, sampling_rate, target_rate, resample=resample) for clip in clips]
        input_name = self.feature_extractor.model_input_names[0]
        extractor_kwargs: dict[str, Any] = {"sampling_rate": target_rate, "return_attention_mask": True}
        if input_name == "input_features":  # Whisper: a fixed 30 s window; only the real frames become tokens
            window = self.feature_extractor.n_samples
            for index, array in enumerate(arrays):
                if len(array) > window:
                    raise ValueError(
                        f"Clip {index} lasts {len(array) / target_rate:.1f} s, longer than the audio tower's "
                        f"{window / target_rate:.0f} s window: split it."
                    )
            extractor_kwargs["padding"] = "max_length"
        else:
            extractor_kwargs["padding"] = "longest"
        features = self.feature_extractor(arrays, return_tensors="np", **extractor_kwargs)
        mask = features["attention_mask"].astype(np.int64)
        counts = [count_audio_tokens(self.media_token_spec["audio"], int(length)) for length in mask.sum(-1)]
        for index, count in enumerate(counts):
            if count == 0:
                raise ValueError(f"Clip {index} is too short to give the audio tower a single frame.")
        return {input_name: features[input_name], f"{input_name}_mask": mask}, counts

    def _expand_placeholders(self, texts: list[str], image_counts: list[int], audio_counts: list[int]) -> list[str]:
        images, clips = iter(image_counts), iter(audio_counts)
        expanded = []
        for text in texts:
            pieces = PLACEHOLDER_PATTERN.split(text)
            for index, piece in enumerate(pieces):
                if piece == IMAGE_TOKEN:
                    pieces[index] = IMAGE_TOKEN * next(images)
                elif piece == AUDIO_TOKEN:
                    pieces[index] = AUDIO_TOKEN * next(clips)
            expanded.append("".join(pieces))
        return expanded

    @staticmethod
    def _check_no_text_is_empty(input_ids: Any, texts: list[str]) -> None:
        for index, ids in enumerate(input_ids):
            if len(ids) == 0:
                raise ValueError(
                    f"Text {index} ({texts[index]!r}) gives no tokens, so no tensor for the model: it needs at least "
                    "one token to continue from. Give a prompt, or the tokenizer's bos_token to generate from nothing."
                )

    def _check_no_media_span_was_cut(self, input_ids: Any, expanded: list[str]) -> None:
        for index, (ids, text) in enumerate(zip(input_ids, expanded)):
            ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
            for token, token_id in ((IMAGE_TOKEN, self.image_token_id), (AUDIO_TOKEN, self.audio_token_id)):
                expected, found = text.count(token), ids.count(token_id)
                if found != expected:
                    raise ValueError(
                        f"Text {index} should hold {expected} {token} tokens after expansion but has {found}: "
                        "truncation cut through a media span. Raise max_length or shorten the text."
                    )


def to_rgb(image: Any) -> Any:
    """PIL images and HWC / HW arrays as 3-channel RGB (grayscale repeated, alpha dropped)."""
    if hasattr(image, "convert"):  # PIL
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=-1)
    if array.ndim == 3 and array.shape[-1] in (1, 4):
        return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
    return array


def load_clip(clip: Any, sampling_rate: int | None, target_rate: int, *, resample: bool = True) -> np.ndarray:
    """One clip as float32 mono at `target_rate`. `clip`: a 1-D (or channels-first 2-D) array or tensor, a
    `{"array", "sampling_rate"}` dict, a `{"path", "bytes"}` dict, a file path or raw bytes."""
    if isinstance(clip, dict) and clip.get("array") is not None:
        array, rate = np.asarray(clip["array"]), clip.get("sampling_rate", sampling_rate)
    elif isinstance(clip, (dict, str, os.PathLike, bytes)):
        array, rate = decode_audio_file(clip)
    else:
        array = clip.numpy() if isinstance(clip, torch.Tensor) else np.asarray(clip)
        rate = sampling_rate
    if rate is None:
        raise ValueError("Audio arrays need their sampling rate: pass `sampling_rate=` (e.g. 16000).")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array.mean(axis=0 if array.shape[0] < array.shape[1] else 1)  # down-mix, channels first or last
    if array.ndim != 1:
        raise ValueError(f"An audio clip must be 1-D (samples) or 2-D (channels x samples), got {array.shape}.")
    if array.size == 0:
        raise ValueError("An audio clip is empty (zero samples).")
    if rate != target_rate:
        if not resample:
            raise ValueError(
                f"A clip is sampled at {rate} Hz but the feature extractor expects {target_rate} Hz: resample it, "
                "or call the processor with resample=True."
            )
        array = resample_audio(array, rate, target_rate)
    return array


def resample_audio(array: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality)."""
    if soxr is None:
        raise ImportError(f"Resampling {orig_rate} Hz audio to {target_rate} Hz needs soxr: pip install soxr.")
    return soxr.resample(array, orig_rate, target_rate, quality="HQ").astype(np.float32)


def decode_audio_file(source: Any) -> tuple[np.ndarray, int]:
    """Decode a file path, raw bytes or a `{"path", "bytes"}` dict with soundfile (WAV, FLAC, OGG, MP3; no FFmpeg)."""
    if soundfile is None:
        raise ImportError("Decoding audio files needs soundfile: pip install soundfile.")
    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        array, rate = soundfile.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32")
    except Exception as error:  # soundfile raises several types for unreadable files
        raise ValueError(f"Cannot decode audio {name}: {error}") from error
    return array.T if array.ndim == 2 else array, rate


__all__ = ["DEFAULT_CHAT_TEMPLATE", "MultimodalGPTProcessor"]
