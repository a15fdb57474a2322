"""Pipelines for MultimodalGPT where Transformers' own cannot serve this decoder-only model.

- Speech recognition: Transformers' `AutomaticSpeechRecognitionPipeline` picks CTC decoding for every model whose
  class name is not in its static sequence-to-sequence table, registered custom models included, and it feeds the
  feature extractor's output to `generate()` without a prompt. [`MultimodalGPTSpeechRecognitionPipeline`] runs the
  processor on the ASR prompt (`<audio>`) and the clip, generates, and returns the text after the prompt. Long audio
  is cut into overlapping chunks and the chunks' transcripts merged, as Transformers' ASR pipeline does for
  sequence-to-sequence models (its `chunk_iter`, and its longest-overlap merge as [`merge_chunk_tokens`]).
- Translation: the `translation` pipeline no longer exists in Transformers v5. [`MultimodalGPTTranslationPipeline`]
  fills the translation prompt the model was finetuned with and returns the text after it.

Both batch (`batch_size=8`): the processor pads the prompts on the left, as batched `generate()` needs.
`image-text-to-text`, `any-to-any` and `text-generation` work with Transformers' own pipelines. `save_pretrained`
writes [`CUSTOM_PIPELINES`] into `config.json`'s `custom_pipelines` and ships this file, so that
`pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)` (and `"translation"`) use these
classes without `multimodal_gpt` installed.

This is a "Hub file": it imports only torch, transformers, numpy, the standard library and its sibling Hub files.
"""

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import GenerationConfig
from transformers.pipelines.automatic_speech_recognition import chunk_iter
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines.pt_utils import PipelineChunkIterator, PipelineIterator, PipelinePackIterator

from .configuration_multimodal_gpt import AUDIO_TOKEN
from .media_multimodal_gpt import load_audio

# The prompts a checkpoint is finetuned with: `multimodal_gpt.data.tasks` takes the translation template and the
# language names from here (a Hub file cannot import the library-only `tasks`), and the tests check that the ASR
# task's `"{audio}"` prompt equals ASR_PROMPT.
ASR_PROMPT = AUDIO_TOKEN
TRANSLATION_PROMPT = "Translate {source_language} to {target_language}: {source}\n{target_language}:"
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech"}

# Written into config.json's `custom_pipelines` by `MultimodalGPTPreTrainedModel.save_pretrained`.
CUSTOM_PIPELINES = {
    "automatic-speech-recognition": {
        "impl": "pipeline_multimodal_gpt.MultimodalGPTSpeechRecognitionPipeline",
        "pt": ["AutoModelForSpeechSeq2Seq"],
        "type": "multimodal",
    },
    "translation": {
        "impl": "pipeline_multimodal_gpt.MultimodalGPTTranslationPipeline",
        "pt": ["AutoModelForCausalLM"],
        "type": "text",
    },
}


class _PromptThenGeneratePipeline(ChunkPipeline):
    """A prompt (and media) in, the generated continuation out. `preprocess` yields one item per prompt to run: a
    dict with `"prompt"`, optionally `"audio"` (a waveform at the feature extractor's rate) and `"stride"`, and
    `"is_last"` (the input's last item); a batch of items goes through the processor at once, left-padded, and
    `generate()` continues it; `postprocess` gets the outputs of one input's items, each with its `"generated_ids"`
    (the new tokens only)."""

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=256)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                f"{type(self).__name__} needs the model's MultimodalGPTProcessor: pass `processor=` (or load the "
                "pipeline from a folder where the processor was saved with `processor.save_pretrained`)."
            )

    def _generation_parameters(
        self, max_new_tokens: int | None, generate_kwargs: dict[str, Any] | None
    ) -> dict[str, Any]:
        forward_params = {"generate_kwargs": dict(generate_kwargs or {})}
        if max_new_tokens is not None:
            if "max_new_tokens" in forward_params["generate_kwargs"]:
                raise ValueError("`max_new_tokens` is given twice: directly and in `generate_kwargs`; give it once.")
            forward_params["generate_kwargs"]["max_new_tokens"] = max_new_tokens
        return forward_params

    def get_iterator(
        self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params
    ) -> PipelineIterator:
        # ChunkPipeline's, with this pipeline's collation for every batch size (a batch of one included), so that
        # the processor (not a generic padder) lays out prompts and media. One worker at most, as ChunkPipeline.
        items = PipelineChunkIterator(inputs, self.preprocess, preprocess_params)
        loader = DataLoader(items, num_workers=min(num_workers, 1), batch_size=batch_size, collate_fn=self._collate)
        outputs = PipelinePackIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(outputs, self.postprocess, postprocess_params)

    def _collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """A batch of items as model inputs: prompts left-padded, clips as the processor batches them; the other
        keys (`is_last`, `stride`) as tensors, which the pipeline's iterators split back per item."""
        media: dict[str, Any] = {}
        if "audio" in items[0]:
            media = {
                "audio": [item["audio"] for item in items],
                "sampling_rate": self.processor.feature_extractor.sampling_rate,
            }
        prompts = [item["prompt"] for item in items]
        batch = self.processor(text=prompts, padding=True, padding_side="left", return_tensors="pt", **media)
        if self.dtype is not None:
            batch = batch.to(dtype=self.dtype)  # floating-point tensors only
        bookkeeping = {
            key: torch.tensor([item[key] for item in items]) for key in items[0] if key in ("is_last", "stride")
        }
        return {**batch, **bookkeeping}

    def _forward(self, model_inputs: dict[str, Any], generate_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        bookkeeping = {key: model_inputs.pop(key) for key in ("is_last", "stride") if key in model_inputs}
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs or {}, return_dict_in_generate=False)
        prompt_length = model_inputs["input_ids"].shape[1]  # left-padded: every prompt ends there
        sequences = self.model.generate(**model_inputs, **generate_kwargs)
        # decoder-only: generate() returns prompt + continuation; keep the continuation only
        return {"generated_ids": sequences[:, prompt_length:], **bookkeeping}

    def _decode(self, generated_ids: torch.Tensor | np.ndarray) -> str:
        """The text of one output's new tokens, stripped (as `multimodal_gpt.data.tasks.Task.postprocess`)."""
        return self.processor.tokenizer.decode(generated_ids, skip_special_tokens=True).strip()


class MultimodalGPTSpeechRecognitionPipeline(_PromptThenGeneratePipeline):
    """
    Speech recognition with a MultimodalGPT model: the ASR prompt (`<audio>`, expanded by the processor to the
    clip's token count), then generation.

    ```python
    >>> asr = pipeline("automatic-speech-recognition", model="path/to/asr_checkpoint", trust_remote_code=True)
    >>> asr("clip.wav")
    {'text': 'seven'}
    >>> asr(["a.wav", "b.wav", "c.wav"], batch_size=8)                     # batched, left-padded generation
    >>> asr("lecture.flac", chunk_length_s=4, stride_length_s=1, return_timestamps=True)
    {'text': '...', 'chunks': [{'text': '...', 'timestamp': (0.0, 4.0)}, {'text': '...', 'timestamp': (2.0, 6.0)}]}
    ```

    Inputs, like Transformers' ASR pipeline: a 1-D numpy array or tensor at the feature extractor's sampling rate
    (integer PCM is scaled to [-1, 1)), a `{"raw" or "array": array, "sampling_rate": int}` dict (resampled when the
    rate differs), a file path or the bytes of an audio file (decoded with soundfile: WAV, FLAC, OGG, MP3), or a list
    of these; all decoded by the package's one decoder (`media_multimodal_gpt`), as in training. Clips that are
    corrupt, truncated, empty, not finite or too short for one audio frame are errors.

    Long audio, as Transformers' ASR pipeline does it for sequence-to-sequence models: with `chunk_length_s` the clip
    is cut into chunks of that length that overlap by `stride_length_s` on each side (default: a sixth of the chunk),
    each chunk is transcribed, and consecutive transcripts are merged where their tokens overlap
    ([`merge_chunk_tokens`]). A Whisper-style tower takes a fixed window (the feature extractor's
    `chunk_length`, 30 s for Whisper, 4 s for the small preset): a clip longer than the window is chunked at the
    window's length even without `chunk_length_s` (as Whisper's own pipeline transcribes long-form audio), and
    `chunk_length_s` may not exceed it. Waveform towers (wav2vec2, HuBERT) take any length and chunk only when asked.
    Chunks of all inputs are batched together with `batch_size`.

    Call parameters: `prompt` (defaults to the ASR task's `"<audio>"`: change it only for a model finetuned with
    another prompt; it must contain `<audio>` once), `chunk_length_s`, `stride_length_s` (seconds, one number or a
    `(left, right)` pair), `return_timestamps` (`True`: also return each chunk's own transcript with its
    `(start, end)` in seconds, overlaps included, under `"chunks"`; word and character timestamps are not
    available: the model predicts no times), `max_new_tokens` (per chunk), `generate_kwargs` and any generation
    parameter (`num_beams=4`, ...). Returns `{"text": str}` per input (and `"chunks"` with timestamps).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if getattr(self.model.config, "audio_config", None) is None:
            raise ValueError(
                f"This {type(self.model).__name__} has no audio tower, so it cannot transcribe speech: use a "
                "checkpoint built with an `audio_config` (and finetuned for ASR)."
            )
        if getattr(self.processor, "feature_extractor", None) is None:
            raise ValueError(
                "The processor has no feature extractor: pass the processor saved with this ASR model (built with "
                "`MultimodalGPTProcessor.from_config` or `from_pretrained_parts` for a model with an audio tower)."
            )

    @property
    def window_seconds(self) -> float | None:
        """The audio tower's fixed input window in seconds (Whisper-style towers), or `None` (any length)."""
        feature_extractor = self.processor.feature_extractor
        if feature_extractor.model_input_names[0] != "input_features":
            return None
        return feature_extractor.n_samples / feature_extractor.sampling_rate

    def _sanitize_parameters(
        self,
        prompt: str | None = None,
        chunk_length_s: float | None = None,
        stride_length_s: float | tuple[float, float] | None = None,
        return_timestamps: bool | str | None = None,
        max_new_tokens: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess_params: dict[str, Any] = {}
        if prompt is not None:
            if prompt.count(AUDIO_TOKEN) != 1:
                raise ValueError(f"The ASR prompt must contain {AUDIO_TOKEN} exactly once, got {prompt!r}.")
            preprocess_params["prompt"] = prompt
        if chunk_length_s is not None:
            preprocess_params["chunk_length_s"] = self._check_chunk_length(chunk_length_s)
        if stride_length_s is not None:
            preprocess_params["stride_length_s"] = self._check_stride_length(stride_length_s, chunk_length_s)
        postprocess_params = {}
        if return_timestamps not in (None, False, True):
            raise ValueError(
                f"return_timestamps={return_timestamps!r} is not supported: this model predicts no times, so only "
                "chunk-level timestamps are available (return_timestamps=True: each chunk's transcript with its "
                "start and end in seconds; use chunk_length_s to set the chunks)."
            )
        if return_timestamps is not None:
            postprocess_params["return_timestamps"] = return_timestamps
        return preprocess_params, self._generation_parameters(max_new_tokens, generate_kwargs), postprocess_params

    def _check_chunk_length(self, chunk_length_s: float) -> float:
        if not chunk_length_s > 0:
            raise ValueError(f"chunk_length_s must be a positive number of seconds, got {chunk_length_s!r}.")
        window = self.window_seconds
        if window is not None and chunk_length_s > window:
            raise ValueError(
                f"chunk_length_s={chunk_length_s} is longer than the audio tower's {window:g} s window: use "
                f"chunk_length_s <= {window:g}."
            )
        return chunk_length_s

    def _check_stride_length(
        self, stride_length_s: float | tuple[float, float], chunk_length_s: float | None
    ) -> tuple[float, float]:
        strides = (stride_length_s,) * 2 if isinstance(stride_length_s, (int, float)) else tuple(stride_length_s)
        if len(strides) != 2 or any(stride < 0 for stride in strides):
            raise ValueError(
                f"stride_length_s must be a number of seconds >= 0 or a (left, right) pair of them, got "
                f"{stride_length_s!r}."
            )
        chunk_length_s = chunk_length_s or self.window_seconds
        if chunk_length_s is not None and sum(strides) >= chunk_length_s:
            raise ValueError(
                f"The strides ({strides[0]:g} s + {strides[1]:g} s) must be shorter than the chunks "
                f"({chunk_length_s:g} s): each chunk must move the transcription forward."
            )
        return strides

    def __call__(self, inputs: Any, **kwargs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Transcribe one clip or a list of clips (see the class docstring for the accepted forms and options)."""
        return super().__call__(inputs, **kwargs)

    def preprocess(
        self,
        inputs: Any,
        prompt: str = ASR_PROMPT,
        chunk_length_s: float | None = None,
        stride_length_s: tuple[float, float] | None = None,
    ) -> Iterator[dict[str, Any]]:
        rate = self.processor.feature_extractor.sampling_rate
        # a bare array is taken to be at the feature extractor's rate, as in Transformers' ASR pipeline
        waveform = load_audio(as_clip(inputs), rate, orig_sampling_rate=rate)
        window = self.window_seconds
        if chunk_length_s is None and window is not None and len(waveform) > window * rate:
            chunk_length_s = window  # long-form audio: chunk at the window, as Whisper's pipeline transcribes it
        if chunk_length_s is None:
            yield {"prompt": prompt, "audio": waveform, "stride": (len(waveform), 0, 0), "is_last": True}
            return
        if stride_length_s is None:
            stride_length_s = (chunk_length_s / 6,) * 2  # Transformers' ASR pipeline's default
        chunk_length = int(round(chunk_length_s * rate))
        stride_left, stride_right = (int(round(stride * rate)) for stride in stride_length_s)
        # Transformers' chunking: chunks of `chunk_length` samples, each starting `chunk_length - stride_left -
        # stride_right` after the previous; `_RawChunks` hands each chunk back as it is, for the processor
        for chunk in chunk_iter(waveform, _RawChunks(rate), chunk_length, stride_left, stride_right):
            yield {"prompt": prompt, "audio": chunk["audio"], "stride": chunk["stride"], "is_last": chunk["is_last"]}

    def postprocess(self, model_outputs: list[dict[str, Any]], return_timestamps: bool = False) -> dict[str, Any]:
        if len(model_outputs) == 1:
            text = self._decode(model_outputs[0]["generated_ids"][0])
        else:
            # Transformers' merge for chunked sequence-to-sequence ASR: each chunk's tokens are appended after the
            # longest run that overlaps the end of what came before (special tokens left out)
            tokens = merge_chunk_tokens(
                [output["generated_ids"][0].tolist() for output in model_outputs],
                set(self.processor.tokenizer.all_special_ids),
            )
            text = self._decode(tokens)
        if not return_timestamps:
            return {"text": text}
        return {"text": text, "chunks": self._chunk_timestamps(model_outputs)}

    def _chunk_timestamps(self, model_outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each chunk's own transcript and its span in the input, in seconds. A chunk starts where the previous one
        ended, less the overlap: the previous chunk's right stride and its own left stride."""
        rate = self.processor.feature_extractor.sampling_rate
        chunks: list[dict[str, Any]] = []
        start = end = previous_stride_right = 0
        for output in model_outputs:
            length, stride_left, stride_right = (int(value) for value in output["stride"][0])
            start = end - previous_stride_right - stride_left if chunks else 0
            end, previous_stride_right = start + length, stride_right
            text = self._decode(output["generated_ids"][0])
            chunks.append({"text": text, "timestamp": (start / rate, end / rate)})
        return chunks


class _RawChunks:
    """A stand-in for the feature extractor that Transformers' `chunk_iter` runs on every chunk: it hands the chunk
    back unprocessed, so that the pipeline's processor turns it into features together with the prompt."""

    def __init__(self, sampling_rate: int):
        self.sampling_rate = sampling_rate

    def __call__(self, chunk: np.ndarray, **kwargs: Any) -> dict[str, np.ndarray]:
        return {"audio": chunk}


class MultimodalGPTTranslationPipeline(_PromptThenGeneratePipeline):
    """
    Translation with a MultimodalGPT model finetuned on the `translation` task: the task's prompt
    (`"Translate English to German: {source}\\nGerman:"`), then generation.

    ```python
    >>> translator = pipeline("translation", model="path/to/translation_checkpoint", trust_remote_code=True)
    >>> translator("A dog runs.", src_lang="en", tgt_lang="de")
    {'translation_text': 'Ein Hund rennt.'}
    ```

    Transformers v5 removed its own `translation` task; a checkpoint's `custom_pipelines` brings it back for this
    model. Call parameters: `src_lang` / `tgt_lang` (language codes, defaults `"en"` / `"de"`; `en`, `de`, `fr` and
    `cs` are named in the prompt as in training, other codes are used as they are), `max_new_tokens`,
    `generate_kwargs` and any generation parameter. Returns `{"translation_text": str}` per input.
    """

    def _sanitize_parameters(
        self,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        max_new_tokens: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess_params = {}
        if src_lang is not None:
            preprocess_params["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess_params["tgt_lang"] = tgt_lang
        return preprocess_params, self._generation_parameters(max_new_tokens, generate_kwargs), {}

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> dict[str, str] | list[dict[str, str]]:
        """Translate one sentence or a list of sentences."""
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs: str, src_lang: str = "en", tgt_lang: str = "de") -> Iterator[dict[str, Any]]:
        if not isinstance(inputs, str) or not inputs.strip():
            raise ValueError(f"The translation pipeline takes non-empty strings, got {inputs!r}.")
        yield {"prompt": translation_prompt(inputs, src_lang, tgt_lang), "is_last": True}

    def postprocess(self, model_outputs: list[dict[str, Any]]) -> dict[str, str]:
        return {"translation_text": self._decode(model_outputs[0]["generated_ids"][0])}


def translation_prompt(source: str, src_lang: str, tgt_lang: str) -> str:
    """The translation task's prompt for `source` (stripped, as in training)."""
    return TRANSLATION_PROMPT.format(
        source=source.strip(),
        source_language=LANGUAGE_NAMES.get(src_lang, src_lang),
        target_language=LANGUAGE_NAMES.get(tgt_lang, tgt_lang),
    )


def as_clip(inputs: Any) -> Any:
    """An ASR pipeline input in a form the processor reads: `{"raw": ...}` dicts become `{"array": ...}` dicts; paths,
    bytes, arrays and `{"array", "sampling_rate"}` dicts pass through."""
    if isinstance(inputs, dict):
        if "stride" in inputs:
            raise ValueError("`stride` is for chunked CTC decoding; this pipeline transcribes whole clips.")
        array = inputs.get("raw", inputs.get("array"))
        if array is None or "sampling_rate" not in inputs:
            raise ValueError(
                'An audio dict needs the waveform under "raw" or "array" and its "sampling_rate", got keys '
                f"{sorted(inputs)}."
            )
        return {"array": array, "sampling_rate": inputs["sampling_rate"]}
    if isinstance(inputs, str) and inputs.startswith(("http://", "https://")):
        raise ValueError(f"Download {inputs} first and pass the file path or its bytes: this pipeline reads no URLs.")
    return inputs


def merge_chunk_tokens(sequences: list[list[int]], special_ids: set[int]) -> list[int]:
    """The tokens of consecutive chunk transcripts merged into one: each chunk's tokens (special tokens left out)
    are appended after the overlap with what came before that matches best (the most matching tokens for its
    length, at least two; a longer overlap wins a tie). Transformers' seq2seq merge
    (`_find_longest_common_sequence`), which fails with a shape error when a chunk's transcript is longer than all
    that came before it (its comparison takes more tokens from the past than there are); here an overlap is at most
    as long as both sides."""
    merged = [token for token in sequences[0] if token not in special_ids]
    for sequence in sequences[1:]:
        tokens = [token for token in sequence if token not in special_ids]
        start, best = 0, 0.0
        for length in range(1, min(len(merged), len(tokens)) + 1):
            matches = sum(left == right for left, right in zip(merged[-length:], tokens[:length]))
            score = matches / length + length / 10000  # the epsilon favours long perfect matches
            if matches > 1 and score > best:
                start, best = length, score
        merged.extend(tokens[start:])
    return merged


__all__ = ["MultimodalGPTSpeechRecognitionPipeline", "MultimodalGPTTranslationPipeline", "merge_chunk_tokens"]
