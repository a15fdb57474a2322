"""The systems of the peer benchmark: MultimodalGPT, per fusion, and the Transformers models it replaces, built at
one set of shapes from configs (random weights, nothing downloaded), fed the same images, clips and captions.

| system                              | model                                                                      |
| ----------------------------------- | -------------------------------------------------------------------------- |
| `vision_encoder_decoder`            | `VisionEncoderDecoderModel`: CLIP vision encoder, GPT-2 with cross-attention |
| `llava`                             | `LlavaForConditionalGeneration`: CLIP, 2-layer projector, GPT-2 (tied head) |
| `ours_captioning_<fusion>`          | `MultimodalGPTForConditionalGeneration`, CLIP tower, each fusion            |
| `ours_captioning_resampler_frozen`  | the same with `fusion="resampler"` and the vision tower frozen             |
| `ours_captioning_<fusion>_cached`   | resampler / cross_attention, tower frozen, trained from cached features    |
| `speech_encoder_decoder`            | `SpeechEncoderDecoderModel`: wav2vec2 encoder, GPT-2 with cross-attention  |
| `ours_asr_<fusion>`                 | `MultimodalGPTForConditionalGeneration`, wav2vec2 tower, each fusion        |
| `..._feature_encoder_frozen`        | SpeechEncoderDecoder and ours (resampler) with wav2vec2's convolutional    |
|                                     | front end frozen (`freeze_feature_encoder()`), each against the other      |
| `gpt2`                              | `GPT2LMHeadModel` alone on the same text: the ceiling                      |

Our rows get their batches from the package's own processor and collators (`CaptioningCollator`, `ASRCollator`), as
training does: `[bos] <media placeholders> caption <eos>`, the placeholder count from the config, labels -100 on the
bos, the media and the padding. The peers get the same data: their pixels and waveforms are the collator's
`pixel_values` / `input_values`, their labels the collator's labelled tokens (the caption and its eos); LLaVA takes
the linear-fusion batch as is (one `<image>` token per patch, LLaVA's layout), GPT-2 alone the `PretrainCollator`
batch of the captions (`[bos] caption <eos>`). Every row therefore learns the same `text_tokens` labelled tokens.

LLaVA with GPT-2: `LlavaForConditionalGeneration` ties its LM head to `model.language_model.embed_tokens.weight`, a
name GPT-2 lacks (it calls its token table `wte`), so a stock GPT-2 text model fails at construction unless the head
is untied (`tie_word_embeddings=False`), which adds a second 50k x hidden matrix (25.7 M parameters at the default
shapes, AdamW state included in every step). Here the stock model is built untied, then its GPT-2 is replaced by
[`GPT2WithEmbedTokens`] (the same GPT-2 with its table also reachable as `embed_tokens`) and the head is tied again,
so LLaVA has exactly the parameters GPT-2 has, as every other row does.

The tokenizer ([`benchmark_tokenizer`]) has GPT-2's layout and size, built without data: see its docstring.
"""

import functools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from string import ascii_lowercase
from typing import Any

import numpy as np
import torch
from PIL import Image
from tokenizers import pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2Tokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    Wav2Vec2Config,
)

from ..configuration_multimodal_gpt import FUSION_TYPES, MultimodalGPTConfig, add_multimodal_tokens
from ..data.collators import IGNORE_INDEX, ASRCollator, CaptioningCollator, PretrainCollator, TaskCollator
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from ..processing_multimodal_gpt import MultimodalGPTProcessor
from ..training.tokenizer import ENDOFTEXT_TOKEN

LEARNING_RATE = 1e-4
# Rows trained from cached vision features (a frozen tower, `train.py --cache_media_features`): the fusions with the
# fewest decoder positions, to compare with GPT-2 alone.
CACHED_FEATURE_FUSIONS = ("resampler", "cross_attention")
PEERS = {"vision": "vision_encoder_decoder", "audio": "speech_encoder_decoder"}
# wav2vec2's convolutional front end frozen, as Transformers' speech examples train by default: SpeechEncoderDecoder
# and our best ASR fusion, compared with each other (the same freeze on both sides).
FROZEN_FRONT_END = "_feature_encoder_frozen"
FROZEN_FRONT_END_FUSIONS = ("resampler",)
TEXT_ONLY = "gpt2"
SYSTEM_NAMES = (
    "vision_encoder_decoder",
    "llava",
    *(f"ours_captioning_{fusion}" for fusion in FUSION_TYPES),
    "ours_captioning_resampler_frozen",
    *(f"ours_captioning_{fusion}_cached" for fusion in CACHED_FEATURE_FUSIONS),
    "speech_encoder_decoder",
    *(f"ours_asr_{fusion}" for fusion in FUSION_TYPES),
    "speech_encoder_decoder" + FROZEN_FRONT_END,
    *(f"ours_asr_{fusion}{FROZEN_FRONT_END}" for fusion in FROZEN_FRONT_END_FUSIONS),
    TEXT_ONLY,
)


@dataclass(frozen=True)
class PeerShapes:
    """The sizes every system is built and fed at. The defaults are the shapes of issue 14's measurements.

    Args:
        text_layers, text_hidden, text_heads: GPT-2's blocks, width and heads (6 x 512, 8 heads).
        vocab_size: the tokenizer's vocabulary before the multimodal tokens (GPT-2's 50,257); the models get
            `len(tokenizer)`, 3 more (`<|pad|>`, `<image>`, `<audio>`).
        vision_layers, vision_hidden, vision_heads, vision_intermediate, image_size, patch_size: the CLIP vision
            encoder (6 x 384 at 224 px, patch 32: 49 patches and a class token).
        audio_layers, audio_hidden, audio_heads, audio_intermediate, audio_conv_dim: the wav2vec2 encoder (6 x 384,
            wav2vec2's 7-layer convolutional front end of 512 channels).
        clip_seconds, sampling_rate: the audio clips (1 s at 16 kHz).
        batch_size: samples per training step and per generation call.
        text_tokens: labelled tokens per sample (the caption's tokens and the eos the collator appends).
        new_tokens: tokens each greedy generation produces per sample.
    """

    text_layers: int = 6
    text_hidden: int = 512
    text_heads: int = 8
    vocab_size: int = 50_257
    vision_layers: int = 6
    vision_hidden: int = 384
    vision_heads: int = 6
    vision_intermediate: int = 1536
    image_size: int = 224
    patch_size: int = 32
    audio_layers: int = 6
    audio_hidden: int = 384
    audio_heads: int = 6
    audio_intermediate: int = 1536
    audio_conv_dim: tuple[int, ...] = (512,) * 7
    clip_seconds: float = 1.0
    sampling_rate: int = 16_000
    batch_size: int = 8
    text_tokens: int = 32
    new_tokens: int = 20


ISSUE_SHAPES = PeerShapes()
# For tests and quick looks at the machinery: every system, seconds in all.
TINY_SHAPES = PeerShapes(
    text_layers=1,
    text_hidden=32,
    text_heads=2,
    vocab_size=400,
    vision_layers=1,
    vision_hidden=32,
    vision_heads=2,
    vision_intermediate=64,
    image_size=32,
    patch_size=8,
    audio_layers=1,
    audio_hidden=32,
    audio_heads=2,
    audio_intermediate=64,
    audio_conv_dim=(32,) * 7,
    clip_seconds=0.25,
    batch_size=2,
    text_tokens=6,
    new_tokens=3,
)


@dataclass
class System:
    """One row of the benchmark: a model in training mode, its AdamW optimizer, a training batch and the inputs of a
    greedy generation.

    Args:
        name (`str`): the key, one of `SYSTEM_NAMES`.
        label (`str`): how the tables name it.
        group (`str`): `"vision"`, `"audio"` or `"text"`; vision rows compare with `vision_encoder_decoder`, audio
            rows with `speech_encoder_decoder`.
        model ([`PreTrainedModel`]): the model.
        train_batch (`dict[str, torch.Tensor]`): the keyword arguments of one training forward (labels included).
        generation_inputs (`dict[str, torch.Tensor]`): the keyword arguments of `generate()` besides the decoding
            settings.
        is_encoder_decoder (`bool`): `generate()` returns the decoder's tokens only (after the start token), not the
            prompt and the new tokens.
        processor ([`MultimodalGPTProcessor`], *optional*): the processor our rows' collators used.
        rows (`list[dict]`, *optional*): the raw rows our rows' collators read.
        compared_with (`str`, *optional*): the system this row's speed is compared with, instead of its group's
            peer.
    """

    name: str
    label: str
    group: str
    model: PreTrainedModel
    train_batch: dict[str, torch.Tensor]
    generation_inputs: dict[str, torch.Tensor]
    is_encoder_decoder: bool = False
    processor: MultimodalGPTProcessor | None = None
    rows: list[dict[str, Any]] | None = None
    compared_with: str | None = None
    optimizer: torch.optim.Optimizer = field(init=False)

    def __post_init__(self):
        self.model.train()
        self.optimizer = self._adamw()

    def _adamw(self) -> torch.optim.Optimizer:
        trainable = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        return torch.optim.AdamW(trainable, lr=LEARNING_RATE)

    @property
    def peer(self) -> str | None:
        """The system this row's speed is compared with (`None` for GPT-2 alone)."""
        return self.compared_with or PEERS.get(self.group)

    @property
    def decoder_positions(self) -> int:
        """Positions GPT-2 runs over per training sample (media tokens included for the spliced fusions)."""
        batch = self.train_batch
        return int(batch["input_ids" if "input_ids" in batch else "labels"].shape[1])

    def to(self, device: str | torch.device) -> "System":
        """Move the model, the optimizer's parameters and the inputs to `device` (before the first step)."""
        self.model.to(device)
        self.train_batch = {key: value.to(device) for key, value in self.train_batch.items()}
        self.generation_inputs = {key: value.to(device) for key, value in self.generation_inputs.items()}
        self.optimizer = self._adamw()  # on the moved parameters; before the first step there is no state to keep
        return self


# ----- tokenizer and data ---------------------------------------------------------------------------------------


def benchmark_tokenizer(vocab_size: int = 50_257) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer with GPT-2's layout and exactly `vocab_size` tokens, built without data, then given
    the multimodal tokens by `add_multimodal_tokens` (`<|pad|>`, `<image>`, `<audio>`: 50,260 tokens, as GPT-2's own
    tokenizer gets).

    Speed depends on the vocabulary's size (the embedding, the LM head, the softmax) and on how many tokens a text
    becomes, not on which strings the tokens stand for. So instead of training a BPE (50,000 merges need far more
    distinct text than the offline data holds, and minutes of CPU), the merges are made programmatically: the 256
    byte symbols, then merges that build whole lowercase words after a space, shortest first (`Ġ a`, `Ġa b`, ...),
    then `<|endoftext|>` as the last id (50,256, as in GPT-2). Every such word is one token, so a caption of n words
    is exactly n tokens.
    """
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    num_merges = vocab_size - len(byte_symbols) - 1
    if num_merges < 1:
        raise ValueError(f"vocab_size={vocab_size} leaves no merges after the 256 byte symbols and <|endoftext|>.")
    vocab = {symbol: index for index, symbol in enumerate(byte_symbols)}
    merges = []
    for left, right in _word_merges():
        if len(merges) == num_merges:
            break
        merges.append((left, right))
        vocab[left + right] = len(vocab)
    vocab[ENDOFTEXT_TOKEN] = len(vocab)
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=ENDOFTEXT_TOKEN,
        bos_token=ENDOFTEXT_TOKEN,
        eos_token=ENDOFTEXT_TOKEN,
        clean_up_tokenization_spaces=False,
    )
    add_multimodal_tokens(tokenizer)
    return tokenizer


def _word_merges() -> Iterator[tuple[str, str]]:
    """`("Ġ", "a")`, ..., `("Ġz", "z")`, `("Ġaa", "a")`, ...: every word after a space, one letter longer at a time."""
    words = ["Ġ"]  # GPT-2's byte symbol for the space
    while True:
        longer = []
        for word in words:
            for letter in ascii_lowercase:
                yield word, letter
                longer.append(word + letter)
        words = longer


@dataclass
class BenchmarkData:
    """The same inputs for every system: random RGB images, 16 kHz noise clips and captions of random words that
    are `text_tokens - 1` tokens long (the collator appends the eos)."""

    images: list[Image.Image]
    clips: list[np.ndarray]
    captions: list[str]
    sampling_rate: int

    @classmethod
    def make(cls, tokenizer: PreTrainedTokenizerBase, shapes: PeerShapes, seed: int) -> "BenchmarkData":
        generator = np.random.default_rng(seed)
        size = (shapes.batch_size, shapes.image_size, shapes.image_size, 3)
        images = [Image.fromarray(pixels) for pixels in generator.integers(0, 256, size, dtype=np.uint8)]
        samples = round(shapes.clip_seconds * shapes.sampling_rate)
        clips = list((0.1 * generator.standard_normal((shapes.batch_size, samples))).astype(np.float32))
        words = sorted(token for token in tokenizer.get_vocab() if token.startswith("Ġ") and token[1:].isalpha())
        picker = random.Random(seed)
        captions = []
        for _ in range(shapes.batch_size):
            caption = tokenizer.convert_tokens_to_string(picker.choices(words, k=shapes.text_tokens - 1))
            length = len(tokenizer(caption, add_special_tokens=False)["input_ids"])
            if length != shapes.text_tokens - 1:
                raise RuntimeError(f"A benchmark caption became {length} tokens, not {shapes.text_tokens - 1}.")
            captions.append(caption.strip())
        return cls(images, clips, captions, shapes.sampling_rate)

    def rows(self, task: str) -> list[dict[str, Any]]:
        """The data as raw dataset rows of `task` ("captioning", "asr" or "pretrain"), as the collators read them."""
        if task == "captioning":
            return [{"image": image, "captions": [caption]} for image, caption in zip(self.images, self.captions)]
        if task == "asr":
            return [
                {"audio": {"array": clip, "sampling_rate": self.sampling_rate}, "text": caption}
                for clip, caption in zip(self.clips, self.captions)
            ]
        return [{"text": caption} for caption in self.captions]


# ----- configs --------------------------------------------------------------------------------------------------


def gpt2_config(shapes: PeerShapes, tokenizer: PreTrainedTokenizerBase, **overrides: Any) -> GPT2Config:
    return GPT2Config(
        n_layer=shapes.text_layers,
        n_embd=shapes.text_hidden,
        n_head=shapes.text_heads,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **overrides,
    )


def clip_config(shapes: PeerShapes) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=shapes.vision_hidden,
        intermediate_size=shapes.vision_intermediate,
        num_hidden_layers=shapes.vision_layers,
        num_attention_heads=shapes.vision_heads,
        image_size=shapes.image_size,
        patch_size=shapes.patch_size,
    )


def wav2vec2_config(shapes: PeerShapes) -> Wav2Vec2Config:
    # LayerDrop off: with wav2vec2's default 0.1 each step skips a random subset of layers, and step times (ours
    # and SpeechEncoderDecoder's alike) would vary with the draws.
    return Wav2Vec2Config(
        hidden_size=shapes.audio_hidden,
        intermediate_size=shapes.audio_intermediate,
        num_hidden_layers=shapes.audio_layers,
        num_attention_heads=shapes.audio_heads,
        conv_dim=shapes.audio_conv_dim,
        layerdrop=0.0,
    )


def ours_config(
    task: str, fusion: str, shapes: PeerShapes, tokenizer: PreTrainedTokenizerBase, **overrides: Any
) -> MultimodalGPTConfig:
    """Our model for `task` ("captioning": CLIP tower; "asr": wav2vec2 tower) with `fusion`, every other setting
    the library's default unless `overrides` (config fields, e.g. `vision_token_merge=2`) say otherwise."""
    token_ids = add_multimodal_tokens(tokenizer)
    tower = (
        {"vision_config": clip_config(shapes)} if task == "captioning" else {"audio_config": wav2vec2_config(shapes)}
    )
    token_id = "image_token_id" if task == "captioning" else "audio_token_id"
    return MultimodalGPTConfig(
        text_config=gpt2_config(shapes, tokenizer),
        fusion=fusion,
        **tower,
        **{token_id: token_ids[token_id]},
        **overrides,
    )


# ----- batches --------------------------------------------------------------------------------------------------


def collated(
    collator_class: type[TaskCollator], processor: MultimodalGPTProcessor, rows: list[dict]
) -> tuple[dict, dict]:
    """The training batch and the generation inputs (references and row bookkeeping dropped) that `collator_class`
    makes of `rows`."""
    train_batch = dict(collator_class(processor)(rows))
    generation_inputs = dict(collator_class(processor, for_generation=True)(rows))
    for key in ("references", "row_indices", "skipped_rows"):
        generation_inputs.pop(key)
    return train_batch, generation_inputs


@torch.no_grad()
def with_media_features(model: MultimodalGPTForConditionalGeneration, batch: dict) -> dict:
    """`batch` with its media replaced by the features the model's (frozen) tower computes for them: what the
    collators give for the rows of a media-feature cache."""
    batch = dict(batch)
    if "pixel_values" in batch:
        batch["image_features"] = model.model.encode_images(batch.pop("pixel_values"))
    audio_keys = ("input_features", "input_features_mask", "input_values", "input_values_mask")
    audio = {key: batch.pop(key) for key in audio_keys if key in batch}
    if audio:
        batch["audio_features"], batch["audio_features_mask"] = model.model.encode_audio(**audio)
    return batch


def labelled_tokens(labels: torch.Tensor) -> torch.Tensor:
    """`(batch, text_tokens)`: the labelled tokens of each row of a collator's `labels` (all rows hold as many)."""
    labelled = labels != IGNORE_INDEX
    counts = labelled.sum(-1).unique()
    if len(counts) != 1:
        raise ValueError(f"The rows of the batch have different numbers of labelled tokens: {counts.tolist()}.")
    return labels[labelled].view(len(labels), -1)


def _linear_fusion_batches(task: str, shapes: PeerShapes, tokenizer, data: BenchmarkData) -> tuple[dict, dict]:
    """Our collator's batches with one token per patch / frame group: the peers' pixels, waveforms and labels, and
    LLaVA's whole input."""
    processor = MultimodalGPTProcessor.from_config(ours_config(task, "linear", shapes, tokenizer), tokenizer)
    collator_class = CaptioningCollator if task == "captioning" else ASRCollator
    return collated(collator_class, processor, data.rows(task))


# ----- systems --------------------------------------------------------------------------------------------------


def build_ours(
    task: str,
    fusion: str,
    shapes: PeerShapes,
    tokenizer: PreTrainedTokenizerBase,
    data: BenchmarkData,
    frozen_tower: bool = False,
    cached_features: bool = False,
    frozen_front_end: bool = False,
    **config_overrides: Any,
) -> System:
    """Ours for `task` with `fusion` (optionally its tower frozen), its batches from the package's collators. With
    `cached_features` (a frozen tower), the batches carry the tower's features instead of the media, as they come
    from a media-feature cache (`train.py --cache_media_features`): the tower runs once, here, untimed. With
    `frozen_front_end` (ASR), wav2vec2's convolutional feature encoder is frozen (`freeze_feature_encoder()`) and the
    row is compared with SpeechEncoderDecoder frozen alike."""
    config = ours_config(task, fusion, shapes, tokenizer, **config_overrides)
    model = MultimodalGPTForConditionalGeneration(config)
    if frozen_tower or cached_features:
        model.freeze_towers("vision" if task == "captioning" else "audio")
    if frozen_front_end:
        model.freeze_feature_encoder()
    processor = MultimodalGPTProcessor.from_config(config, tokenizer)
    rows = data.rows(task)
    collator_class = CaptioningCollator if task == "captioning" else ASRCollator
    train_batch, generation_inputs = collated(collator_class, processor, rows)
    if cached_features:
        train_batch, generation_inputs = (
            with_media_features(model, batch) for batch in (train_batch, generation_inputs)
        )
    label = f"ours, {'captioning' if task == 'captioning' else 'ASR'}, {fusion}"
    tower = "vision" if task == "captioning" else "audio"
    name_suffix = "_cached" if cached_features else "_frozen" if frozen_tower else ""
    label_suffix = (
        f", cached {tower} features" if cached_features else f", {tower} tower frozen" if frozen_tower else ""
    )
    if frozen_front_end:
        name_suffix, label_suffix = FROZEN_FRONT_END, ", feature encoder frozen"
    return System(
        name=f"ours_{task}_{fusion}" + name_suffix,
        label=label + label_suffix,
        group="vision" if task == "captioning" else "audio",
        model=model,
        train_batch=train_batch,
        generation_inputs=generation_inputs,
        processor=processor,
        rows=rows,
        compared_with="speech_encoder_decoder" + FROZEN_FRONT_END if frozen_front_end else None,
    )


def build_encoder_decoder(
    task: str, shapes: PeerShapes, tokenizer, data: BenchmarkData, frozen_front_end: bool = False
) -> System:
    """VisionEncoderDecoder (`task="captioning"`, CLIP) or SpeechEncoderDecoder (`task="asr"`, wav2vec2): GPT-2
    cross-attends to the encoder's output in every block, and its decoder sees only the text. `frozen_front_end`
    (ASR): wav2vec2's convolutional feature encoder frozen (`freeze_feature_encoder()`)."""
    if task == "captioning":
        config_class, model_class, encoder_config = VisionEncoderDecoderConfig, VisionEncoderDecoderModel, clip_config
        name, label, group, media = "vision_encoder_decoder", "VisionEncoderDecoder (CLIP", "vision", "pixel_values"
    else:
        config_class, model_class, encoder_config = (
            SpeechEncoderDecoderConfig,
            SpeechEncoderDecoderModel,
            wav2vec2_config,
        )
        name, label, group, media = "speech_encoder_decoder", "SpeechEncoderDecoder (wav2vec2", "audio", "input_values"
    config = config_class.from_encoder_decoder_configs(encoder_config(shapes), gpt2_config(shapes, tokenizer))
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    train_batch, generation_inputs = _linear_fusion_batches(task, shapes, tokenizer, data)
    model = model_class(config=config)
    if frozen_front_end:
        model.freeze_feature_encoder()
        name = name + FROZEN_FRONT_END
    label = f"{label} + GPT-2 cross-attention)" + (", feature encoder frozen" if frozen_front_end else "")
    # Clips all have the same length, so SpeechEncoderDecoder gets no attention mask (wav2vec2 with group norm is
    # meant to run without one).
    return System(
        name=name,
        label=label,
        group=group,
        model=model,
        train_batch={media: train_batch[media], "labels": labelled_tokens(train_batch["labels"])},
        generation_inputs={media: generation_inputs[media]},
        is_encoder_decoder=True,
        compared_with=name if frozen_front_end else None,
    )


class GPT2WithEmbedTokens(GPT2Model):
    """GPT-2 as LLaVA's text model: the token table is `wte`, and also `embed_tokens`, the name under which
    `LlavaForConditionalGeneration` ties its LM head (see the module docstring)."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.embed_tokens = self.wte


def build_llava(shapes: PeerShapes, tokenizer, data: BenchmarkData) -> System:
    image_token_id = add_multimodal_tokens(tokenizer)["image_token_id"]
    # Built untied (the stock GPT-2 text model has no `embed_tokens` to tie to), then tied through the adapter.
    text_config = gpt2_config(shapes, tokenizer, tie_word_embeddings=False)
    config = LlavaConfig(
        vision_config=clip_config(shapes),
        text_config=text_config,
        image_token_id=image_token_id,
        # The features ours uses: the last layer's patch tokens (the class token dropped), hence the same 49 tokens.
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = LlavaForConditionalGeneration(config)
    model.model.language_model = GPT2WithEmbedTokens(text_config)
    config.tie_word_embeddings = True
    model.tie_weights()
    train_batch, generation_inputs = _linear_fusion_batches("captioning", shapes, tokenizer, data)
    return System(
        name="llava",
        label="LLaVA-HF (CLIP + MLP projector + GPT-2, tied head)",
        group="vision",
        model=model,
        train_batch=train_batch,
        generation_inputs=generation_inputs,
    )


def build_gpt2(shapes: PeerShapes, tokenizer, data: BenchmarkData) -> System:
    train_batch, generation_inputs = collated(PretrainCollator, _text_processor(tokenizer), data.rows("pretrain"))
    return System(
        name=TEXT_ONLY,
        label="GPT-2 alone on the same text",
        group="text",
        model=GPT2LMHeadModel(gpt2_config(shapes, tokenizer)),
        train_batch=train_batch,
        generation_inputs=generation_inputs,
    )


def _text_processor(tokenizer: PreTrainedTokenizerBase) -> MultimodalGPTProcessor:
    return MultimodalGPTProcessor(tokenizer=tokenizer, media_token_spec={"image": None, "audio": None})


def _builders() -> dict[str, Callable[[PeerShapes, PreTrainedTokenizerBase, BenchmarkData], System]]:
    builders: dict[str, Callable] = {
        "vision_encoder_decoder": functools.partial(build_encoder_decoder, "captioning"),
        "llava": build_llava,
        "speech_encoder_decoder": functools.partial(build_encoder_decoder, "asr"),
        TEXT_ONLY: build_gpt2,
        "ours_captioning_resampler_frozen": functools.partial(
            build_ours, "captioning", "resampler", frozen_tower=True
        ),
    }
    for fusion in CACHED_FEATURE_FUSIONS:
        builders[f"ours_captioning_{fusion}_cached"] = functools.partial(
            build_ours, "captioning", fusion, cached_features=True
        )
    for task in ("captioning", "asr"):
        for fusion in FUSION_TYPES:
            builders[f"ours_{task}_{fusion}"] = functools.partial(build_ours, task, fusion)
    builders["speech_encoder_decoder" + FROZEN_FRONT_END] = functools.partial(
        build_encoder_decoder, "asr", frozen_front_end=True
    )
    for fusion in FROZEN_FRONT_END_FUSIONS:
        builders[f"ours_asr_{fusion}{FROZEN_FRONT_END}"] = functools.partial(
            build_ours, "asr", fusion, frozen_front_end=True
        )
    return builders


def build_systems(
    names: list[str] | tuple[str, ...] = SYSTEM_NAMES,
    shapes: PeerShapes = ISSUE_SHAPES,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> list[System]:
    """Build the systems `names` (in the order of `SYSTEM_NAMES`) on `device`, with the same tokenizer and data.

    Each model starts from `torch.manual_seed(seed)`, so a system's weights do not depend on which others are built.
    """
    unknown = [name for name in names if name not in SYSTEM_NAMES]
    if unknown or not names:
        raise ValueError(f"Unknown systems {unknown}: choose among {', '.join(SYSTEM_NAMES)}.")
    tokenizer = benchmark_tokenizer(shapes.vocab_size)
    data = BenchmarkData.make(tokenizer, shapes, seed)
    builders = _builders()
    systems = []
    for name in (name for name in SYSTEM_NAMES if name in names):
        torch.manual_seed(seed)
        systems.append(builders[name](shapes, tokenizer, data).to(device))
    return systems


__all__ = [
    "ISSUE_SHAPES",
    "SYSTEM_NAMES",
    "TINY_SHAPES",
    "BenchmarkData",
    "GPT2WithEmbedTokens",
    "PeerShapes",
    "System",
    "benchmark_tokenizer",
    "build_systems",
    "labelled_tokens",
]
