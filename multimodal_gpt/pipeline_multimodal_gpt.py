"""Pipelines for MultimodalGPT where Transformers' own cannot serve this decoder-only model.

- Speech recognition: Transformers' `AutomaticSpeechRecognitionPipeline` picks CTC decoding for every model whose
  class name is not in its static sequence-to-sequence table, registered custom models included, and it feeds the
  feature extractor's output to `generate()` without a prompt. [`MultimodalGPTSpeechRecognitionPipeline`] runs the
  processor on the ASR prompt (`<audio>`) and the clip, generates, and returns the text after the prompt.
- Translation: the `translation` pipeline no longer exists in Transformers v5. [`MultimodalGPTTranslationPipeline`]
  fills the translation prompt the model was finetuned with and returns the text after it.

`image-text-to-text`, `any-to-any` and `text-generation` work with Transformers' own pipelines. `save_pretrained`
writes [`CUSTOM_PIPELINES`] into `config.json`'s `custom_pipelines` and ships this file, so that
`pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)` (and `"translation"`) use these
classes without `multimodal_gpt` installed.

This is a "Hub file": it imports only torch, transformers, numpy, the standard library and its sibling Hub files.
"""

from typing import Any

import torch
from transformers import GenerationConfig, Pipeline

from .configuration_multimodal_gpt import AUDIO_TOKEN

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


class _PromptThenGeneratePipeline(Pipeline):
    """One input at a time: the processor turns a prompt (and media) into model inputs, `generate()` continues it,
    and the output is the decoded text after the prompt, stripped (as `multimodal_gpt.data.tasks.Task.postprocess`)."""

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

    def get_iterator(self, inputs, num_workers: int, batch_size: int, *params: Any):
        if batch_size > 1:
            raise ValueError(
                f"{type(self).__name__} runs one input at a time; drop `batch_size` (a list of inputs still works). "
                "For batched generation call the processor with `padding=True, padding_side='left'` and "
                "`model.generate` directly."
            )
        return super().get_iterator(inputs, num_workers, batch_size, *params)

    def _forward(self, model_inputs: dict[str, Any], generate_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs or {}, return_dict_in_generate=False)
        prompt_length = model_inputs["input_ids"].shape[1]
        sequences = self.model.generate(**model_inputs, **generate_kwargs)
        # decoder-only: generate() returns prompt + continuation; keep the continuation only
        return {"generated_ids": sequences[:, prompt_length:]}

    def _decode(self, model_outputs: dict[str, Any]) -> list[str]:
        texts = self.processor.tokenizer.batch_decode(model_outputs["generated_ids"], skip_special_tokens=True)
        return [text.strip() for text in texts]


class MultimodalGPTSpeechRecognitionPipeline(_PromptThenGeneratePipeline):
    """
    Speech recognition with a MultimodalGPT model: the ASR prompt (`<audio>`, expanded by the processor to the
    clip's token count), then generation.

    ```python
    >>> asr = pipeline("automatic-speech-recognition", model="path/to/asr_checkpoint", trust_remote_code=True)
    >>> asr("clip.wav")
    {'text': 'seven'}
    ```

    Inputs, like Transformers' ASR pipeline: a 1-D numpy array or tensor at the feature extractor's sampling rate
    (integer PCM is scaled to [-1, 1)), a `{"raw" or "array": array, "sampling_rate": int}` dict (resampled when the
    rate differs), a file path or the bytes of an audio file (decoded with soundfile: WAV, FLAC, OGG, MP3), or a list
    of these; all decoded by the processor as in training. Clips that are corrupt, truncated, empty, not finite, too
    short for one audio frame or longer than a Whisper-style tower's window are errors.

    Call parameters: `prompt` (defaults to the ASR task's `"<audio>"`: change it only for a model finetuned with
    another prompt; it must contain `<audio>` once), `max_new_tokens`, `generate_kwargs` and any generation
    parameter (`num_beams=4`, ...). Returns `{"text": str}` per input.
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

    def _sanitize_parameters(
        self,
        prompt: str | None = None,
        max_new_tokens: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess_params = {}
        if prompt is not None:
            if prompt.count(AUDIO_TOKEN) != 1:
                raise ValueError(f"The ASR prompt must contain {AUDIO_TOKEN} exactly once, got {prompt!r}.")
            preprocess_params["prompt"] = prompt
        return preprocess_params, self._generation_parameters(max_new_tokens, generate_kwargs), {}

    def __call__(self, inputs: Any, **kwargs: Any) -> dict[str, str] | list[dict[str, str]]:
        """Transcribe one clip or a list of clips (see the class docstring for the accepted forms)."""
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs: Any, prompt: str = ASR_PROMPT) -> dict[str, torch.Tensor]:
        # The processor decodes the clip as training did; a bare array is taken to be at the feature extractor's
        # rate, as in Transformers' ASR pipeline.
        target_rate = self.processor.feature_extractor.sampling_rate
        model_inputs = self.processor(
            text=prompt, audio=as_clip(inputs), sampling_rate=target_rate, return_tensors="pt"
        )
        return model_inputs.to(dtype=self.dtype) if self.dtype is not None else model_inputs

    def postprocess(self, model_outputs: dict[str, Any]) -> dict[str, str]:
        return {"text": self._decode(model_outputs)[0]}


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

    def preprocess(self, inputs: str, src_lang: str = "en", tgt_lang: str = "de") -> dict[str, torch.Tensor]:
        if not isinstance(inputs, str) or not inputs.strip():
            raise ValueError(f"The translation pipeline takes non-empty strings, got {inputs!r}.")
        prompt = translation_prompt(inputs, src_lang, tgt_lang)
        return self.processor(text=prompt, return_tensors="pt")

    def postprocess(self, model_outputs: dict[str, Any]) -> dict[str, str]:
        return {"translation_text": self._decode(model_outputs)[0]}


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


__all__ = ["MultimodalGPTSpeechRecognitionPipeline", "MultimodalGPTTranslationPipeline"]
