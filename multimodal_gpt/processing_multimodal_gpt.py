"""MultimodalGPTProcessor: tokenizer + image processor + audio feature extractor, with placeholder expansion.

Each `<image>` / `<audio>` in the text becomes exactly as many tokens as the model produces for that medium (for
audio this follows the clip's length), so the model can splice the media in. Media are decoded by
the sibling Hub file `media_multimodal_gpt.py`, the decoder the training collators use, so that serving sees exactly
what training saw. This is a "Hub file": it imports only torch, transformers, huggingface_hub, numpy, the standard
library and its sibling Hub files.
"""

import math
import os
import re
from typing import Any

import numpy as np
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
    count_media_tokens,
    load_text_tokenizer,
)
from .media_multimodal_gpt import load_audio, load_image

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
        image_features: Any = None,
        audio_features: Any = None,
        **text_kwargs: Any,
    ) -> BatchFeature:
        """
        Args:
            text (`str` or `list[str]`):
                One prompt or a batch, with one `<image>` / `<audio>` placeholder per medium.
            images (*optional*):
                Images as file paths, file bytes, PIL images, arrays or tensors (`(H, W)`, `(H, W, C)` or
                `(C, H, W)`; uint8, 16-bit, or floats in [0, 1]) or `{"path", "bytes"}` dicts: one, a flat list in
                placeholder order (row by row), or one list per sample. Decoded by `media_multimodal_gpt.load_image`,
                as in training: every mode becomes RGB, transparent pixels white; an empty, corrupt or truncated
                image, or one over Pillow's decompression-bomb limit, is an error.
            audio (*optional*):
                Clips as file paths, file bytes, 1-D arrays or tensors (integer PCM is scaled to [-1, 1)), or
                `{"array", "sampling_rate"}` / `{"path", "bytes"}` dicts (a `datasets` `Audio` value): one, a flat
                list in placeholder order, or one list per sample. Decoded by `media_multimodal_gpt.load_audio`, as in
                training (see [`~MultimodalGPTProcessor.load_audio_clip`]): mixed down to mono and resampled; a
                corrupt, truncated, empty or non-finite clip is an error.
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
            image_features (*optional*):
                Instead of `images`: each image's features as the model's `encode_images` computed them, arrays of
                shape `(num_features, width)` (a media-feature cache, `multimodal_gpt.data.feature_cache`), laid out
                like `images`. Each placeholder expands to the tokens that many features give.
            audio_features (*optional*):
                Instead of `audio`: each clip's valid features from the model's `encode_audio`, arrays of shape
                `(num_features, width)`, laid out like `audio`; padded to the longest, with `audio_features_mask`.
            text_kwargs:
                Passed to the tokenizer (`padding`, `padding_side`, `truncation`, `max_length`, ...). Truncation
                that would cut through a media span is an error: shorten the text instead (the collators do).

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask`, and `pixel_values` (or `image_features`) and/or
            `input_features` + `input_features_mask` (Whisper) / `input_values` + `input_values_mask` (wav2vec2,
            HuBERT) (or `audio_features` + `audio_features_mask`).
        """
        if text is None:
            raise ValueError("Give `text`, with one <image> / <audio> placeholder for each medium.")
        if videos is not None:
            raise ValueError("This model takes no video: pass images (frames) with <image> placeholders instead.")
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(item, str) for item in texts):
            raise ValueError("`text` must be a string or a list of strings.")
        for raw, features, name in ((images, image_features, "images"), (audio, audio_features, "audio")):
            if raw is not None and features is not None:
                raise ValueError(f"Give {name} or their precomputed features, not both.")
        image_list = self._flatten_media(
            images if image_features is None else image_features, texts, IMAGE_TOKEN, "images"
        )
        audio_list = self._flatten_media(
            audio if audio_features is None else audio_features, texts, AUDIO_TOKEN, "audio"
        )
        media: dict[str, Any] = {}
        image_counts: list[int] = []
        audio_counts: list[int] = []
        if image_list and image_features is not None:
            media["image_features"], image_counts = self._stack_image_features(image_list)
        elif image_list:
            media["pixel_values"], image_counts = self._process_images(image_list)
        if audio_list and audio_features is not None:
            audio_inputs, audio_counts = self._pad_audio_features(audio_list)
            media.update(audio_inputs)
        elif audio_list:
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
        pixel_values = self.image_processor([load_image(image) for image in images], return_tensors="np")
        pixel_values = pixel_values["pixel_values"]
        count = count_image_tokens(self.media_token_spec["image"], *pixel_values.shape[-2:])
        return pixel_values, [count] * len(images)

    def _stack_image_features(self, features: list[Any]) -> tuple[np.ndarray, list[int]]:
        """Precomputed image features (num_features, width) each, stacked: (num_images, num_features, width)."""
        if self.image_processor is None:
            raise ValueError("Image features were given, but this processor has no image processor (no vision tower).")
        arrays = [np.asarray(item, dtype=np.float32) for item in features]
        if len({array.shape for array in arrays}) != 1 or arrays[0].ndim != 2:
            raise ValueError(
                "image_features must all have one shape (num_features, width), got "
                f"{sorted({array.shape for array in arrays})}."
            )
        count = count_media_tokens(self.media_token_spec["image"], arrays[0].shape[0])
        return np.stack(arrays), [count] * len(arrays)

    def _pad_audio_features(self, features: list[Any]) -> tuple[dict[str, np.ndarray], list[int]]:
        """Precomputed audio features (num_features, width) each, right-padded to the longest, with their mask."""
        if self.feature_extractor is None:
            raise ValueError(
                "Audio features were given, but this processor has no feature extractor (no audio tower)."
            )
        arrays = [np.asarray(item, dtype=np.float32) for item in features]
        if any(array.ndim != 2 or array.shape[1] != arrays[0].shape[1] or not len(array) for array in arrays):
            raise ValueError("audio_features must be non-empty (num_features, width) arrays of one width.")
        longest = max(len(array) for array in arrays)
        padded = np.zeros((len(arrays), longest, arrays[0].shape[1]), dtype=np.float32)
        mask = np.zeros((len(arrays), longest), dtype=np.int64)
        for index, array in enumerate(arrays):
            padded[index, : len(array)] = array
            mask[index, : len(array)] = 1
        counts = [count_media_tokens(self.media_token_spec["audio"], len(array)) for array in arrays]
        return {"audio_features": padded, "audio_features_mask": mask}, counts

    def load_audio_clip(self, clip: Any, sampling_rate: int | None = None, *, resample: bool = True) -> np.ndarray:
        """One clip decoded as the audio tower takes it, by the decoder the training collators use.

        Args:
            clip: a file path, file bytes, a 1-D (or 2-D, channels on the shorter axis) array or tensor (integer
                PCM is scaled to [-1, 1)), or a `{"array", "sampling_rate"}` / `{"path", "bytes"}` dict.
            sampling_rate (`int`, *optional*): the rate of an array clip; files and dicts carry their own.
            resample (`bool`, defaults to `True`): resample to the feature extractor's rate; with `False` another
                rate is an error.

        Returns:
            `np.ndarray`: float32 mono samples at the feature extractor's rate.

        Raises:
            `ValueError`: the clip is corrupt, truncated, empty or not finite, its rate is unknown, or it is too
            short for one frame of the audio tower or longer than a Whisper-style tower's window.
            `FileNotFoundError`: the path does not exist.
        """
        if self.feature_extractor is None:
            raise ValueError("Audio was given, but this processor has no feature extractor (no audio tower).")
        target_rate = self.feature_extractor.sampling_rate
        array = load_audio(clip, target_rate, resample=resample, orig_sampling_rate=sampling_rate)
        self._check_clip_length(len(array))
        return array

    def _check_clip_length(self, num_samples: int) -> None:
        """A clip too short to give the audio tower one frame, or longer than a Whisper-style tower's fixed window,
        is an error (the collators skip and count such rows)."""
        extractor = self.feature_extractor
        seconds = num_samples / extractor.sampling_rate
        is_waveform = extractor.model_input_names[0] == "input_values"
        window = None if is_waveform else extractor.n_samples
        if window is not None and num_samples > window:
            raise ValueError(
                f"An audio clip of {seconds:.2f} s is longer than the audio tower's "
                f"{window / extractor.sampling_rate:.0f} s window: split it."
            )
        input_length = num_samples if is_waveform else math.ceil(num_samples / extractor.hop_length)
        if count_audio_tokens(self.media_token_spec["audio"], input_length) == 0:
            raise ValueError(_too_short_message(num_samples, seconds))

    def _process_audio(
        self, clips: list[Any], sampling_rate: int | None, resample: bool
    ) -> tuple[dict[str, np.ndarray], list[int]]:
        arrays = [self.load_audio_clip(clip, sampling_rate, resample=resample) for clip in clips]
        target_rate = self.feature_extractor.sampling_rate
        input_name = self.feature_extractor.model_input_names[0]
        extractor_kwargs: dict[str, Any] = {"sampling_rate": target_rate, "return_attention_mask": True}
        # Whisper: a fixed 30 s window (only the real frames become tokens); waveforms: the longest clip
        extractor_kwargs["padding"] = "max_length" if input_name == "input_features" else "longest"
        features = self.feature_extractor(arrays, return_tensors="np", **extractor_kwargs)
        mask = features["attention_mask"].astype(np.int64)
        counts = [count_audio_tokens(self.media_token_spec["audio"], int(length)) for length in mask.sum(-1)]
        for array, count in zip(arrays, counts):
            if count == 0:
                raise ValueError(_too_short_message(len(array), len(array) / target_rate))
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


def _too_short_message(num_samples: int, seconds: float) -> str:
    return (
        f"An audio clip of {num_samples} samples ({seconds:.3f} s) is too short to give the audio tower a single "
        "frame: drop it, or pad it with silence."
    )


__all__ = ["DEFAULT_CHAT_TEMPLATE", "MultimodalGPTProcessor"]
