"""MultimodalGPT forward: exact GPT-2 parity, every tower x fusion, mixed batches, efficiency switches, bad input."""

import pytest
import torch
from transformers import GPT2LMHeadModel

from tests.tiny_models import (
    AUDIO_TOKEN_ID,
    FUSIONS,
    IMAGE_TOKEN_ID,
    audio_input,
    image_input,
    open_gates,
    tiny_model,
)

TEXT = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])


def gpt2_twin(model) -> GPT2LMHeadModel:
    """A plain GPT2LMHeadModel holding the multimodal model's GPT-2 weights."""
    gpt2 = GPT2LMHeadModel(model.config.text_config).eval()
    state = {
        name.replace("model.language_model.", "transformer."): value
        for name, value in model.state_dict().items()
        if name.startswith("model.language_model.") and "gated_cross_attention" not in name
    }
    gpt2.load_state_dict(state, strict=False)
    gpt2.tie_weights()
    return gpt2


def sample(model, modality: str, num_media_tokens: int, prefix=(3, 4), suffix=(5, 6, 7)) -> list[int]:
    token_id = IMAGE_TOKEN_ID if modality == "image" else AUDIO_TOKEN_ID
    return [*prefix, *[token_id] * num_media_tokens, *suffix]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_without_media_the_model_is_exactly_gpt2(fusion):
    model = tiny_model(fusion=fusion)
    gpt2 = gpt2_twin(model)
    torch.testing.assert_close(model(input_ids=TEXT).logits, gpt2(input_ids=TEXT).logits, rtol=0, atol=0)


def test_with_closed_gates_cross_attention_is_exactly_gpt2_even_with_media():
    model = tiny_model(fusion="cross_attention")
    gpt2 = gpt2_twin(model)
    input_ids = torch.tensor([sample(model, "image", 1), sample(model, "audio", 1)])
    outputs = model(input_ids=input_ids, pixel_values=image_input(1), **audio_input(model))
    torch.testing.assert_close(outputs.logits, gpt2(input_ids=input_ids).logits, rtol=0, atol=0)
    open_gates(model)
    opened = model(input_ids=input_ids, pixel_values=image_input(1), **audio_input(model))
    assert not torch.allclose(opened.logits, outputs.logits)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("tower", ["clip", "siglip", "vit", "resnet", "convnext"])
def test_vision_towers_times_fusions(tower, fusion):
    """Every tower (patch-based and convolutional) with every fusion: the token count the config promises, and a
    gradient for every trainable parameter (ConvNeXt's final layer norm, which only its pooled output sees, must be
    frozen for that)."""
    model = tiny_model(vision=tower, audio=None, fusion=fusion).train()
    open_gates(model)
    pixel_values = image_input(2, size=model.config.vision_config.image_size)
    count = model.config.num_image_tokens()  # placeholders; cross-attention keeps one marker and attends to patches
    num_features = 16 if fusion == "cross_attention" else count
    assert model.get_image_features(pixel_values).pooler_output.shape[:2] == (2, num_features)
    input_ids = torch.tensor([sample(model, "image", count), sample(model, "image", count)])
    outputs = model(input_ids=input_ids, pixel_values=pixel_values, labels=input_ids)
    outputs.loss.backward()
    assert_every_trainable_parameter_has_a_gradient(model)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("tower", ["wav2vec2", "hubert", "whisper"])
def test_audio_towers_times_fusions_with_variable_lengths(tower, fusion):
    model = tiny_model(vision=None, audio=tower, fusion=fusion).train()
    open_gates(model)
    lengths = [17, 43] if tower == "whisper" else [1200, 2900]  # mel frames / samples
    audio = audio_input(model, lengths)
    counts = [model.config.num_audio_tokens(length) for length in lengths]
    mask = model.get_audio_features(**audio).pooler_output_mask
    if fusion != "cross_attention":
        assert mask.sum(-1).tolist() == counts
    if fusion not in ("resampler", "cross_attention"):
        assert counts[0] < counts[1]  # the token count follows the clip's length
    input_ids = [sample(model, "audio", count) for count in counts]
    longest = max(map(len, input_ids))
    input_ids = torch.tensor([ids + [0] * (longest - len(ids)) for ids in input_ids])
    outputs = model(input_ids=input_ids, labels=input_ids, **audio)
    outputs.loss.backward()
    assert_every_trainable_parameter_has_a_gradient(model)


def assert_every_trainable_parameter_has_a_gradient(model):
    """What DDP without `find_unused_parameters` needs: no trainable parameter left out of the graph."""
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_text_only_batch_still_reaches_every_parameter(fusion):
    model = tiny_model(fusion=fusion).train()
    model(input_ids=TEXT, labels=TEXT).loss.backward()
    assert_every_trainable_parameter_has_a_gradient(model)


@pytest.mark.parametrize("fusion", ["mlp", "resampler", "cross_attention"])
def test_mixed_batch_rows_equal_each_sample_alone(fusion):
    """One batch: an image sample, an audio sample, a text-only sample; each row equals that sample run alone."""
    model = tiny_model(fusion=fusion)
    open_gates(model)
    image_sample = sample(model, "image", model.config.num_image_tokens())
    audio_sample = sample(model, "audio", model.config.num_audio_tokens(1600))
    text_sample = [3, 4, 5, 6, 7]
    rows = [image_sample, audio_sample, text_sample]
    longest = max(map(len, rows))
    input_ids = torch.tensor([row + [0] * (longest - len(row)) for row in rows])
    attention_mask = torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in rows])
    pixel_values, audio = image_input(1), audio_input(model, 1600)
    batch_logits = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, **audio).logits
    alone = [
        model(input_ids=torch.tensor([image_sample]), pixel_values=pixel_values).logits,
        model(input_ids=torch.tensor([audio_sample]), **audio).logits,
        model(input_ids=torch.tensor([text_sample])).logits,
    ]
    for row, logits in enumerate(alone):
        torch.testing.assert_close(batch_logits[row, : logits.shape[1]], logits[0], rtol=1e-5, atol=1e-5)


def test_labelled_logits_only_gives_the_same_loss_and_gradients():
    model = tiny_model(fusion="mlp").train()
    input_ids = torch.tensor([sample(model, "image", 16), sample(model, "image", 16)])
    labels = input_ids.clone()
    labels[:, :18] = -100
    labels[1, -1] = -100
    pixel_values = image_input(2)
    sparse = model(input_ids=input_ids, pixel_values=pixel_values, labels=labels)
    assert sparse.logits is None
    sparse.loss.backward()
    sparse_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.config.labelled_logits_only = False
    full = model(input_ids=input_ids, pixel_values=pixel_values, labels=labels)
    full.loss.backward()
    torch.testing.assert_close(sparse.loss, full.loss)
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            torch.testing.assert_close(sparse_grads[name], parameter.grad, rtol=1e-5, atol=1e-6)


def test_sdpa_is_the_default_and_matches_eager():
    torch.manual_seed(0)
    model = tiny_model(fusion="cross_attention")
    open_gates(model)
    assert model.config._attn_implementation == "sdpa"
    assert model.model.language_model.config._attn_implementation == "sdpa"
    eager = type(model)._from_config(model.config, attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    assert eager.model.language_model.config._attn_implementation == "eager"
    input_ids = torch.tensor([sample(model, "image", 1), sample(model, "audio", 1)])
    inputs = dict(input_ids=input_ids, pixel_values=image_input(1), **audio_input(model))
    torch.testing.assert_close(model(**inputs).logits, eager(**inputs).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
def test_gradient_checkpointing_with_frozen_towers(fusion):
    model = tiny_model(fusion=fusion).train()
    open_gates(model)
    model.freeze_towers()
    input_ids = torch.tensor([sample(model, "image", model.config.num_image_tokens())] * 2)
    inputs = dict(input_ids=input_ids, pixel_values=image_input(2), labels=input_ids)
    model(**inputs).loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    model.activation_checkpointing_enable()
    assert model.model.language_model.h[0].gradient_checkpointing
    model(**inputs).loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-5, atol=1e-6)


def test_frozen_tower_builds_no_graph():
    model = tiny_model(fusion="mlp").train()
    captured = {}
    model.vision_tower.register_forward_hook(lambda module, args, output: captured.update(out=output))
    model.get_image_features(image_input(1))
    assert captured["out"].last_hidden_state.requires_grad
    model.freeze_towers("vision")
    features = model.get_image_features(image_input(1)).pooler_output
    assert not captured["out"].last_hidden_state.requires_grad  # the tower ran under no_grad
    assert features.requires_grad  # the projector still trains


def test_a_frozen_batch_norm_tower_gives_an_image_the_same_features_in_any_batch():
    """A frozen ResNet in a model in training mode: its batch norms use and keep their running statistics, so an
    image's features do not depend on the other images of its batch (fails if the frozen tower trains: batch
    statistics, and running statistics that move)."""
    model = tiny_model(vision="resnet", audio=None, fusion="mlp")
    model.freeze_towers("vision")
    model.train()
    assert model.training and model.language_model.training and not model.vision_tower.training
    statistics = {name: buffer.clone() for name, buffer in model.vision_tower.named_buffers()}
    images = image_input(4, size=32)
    alone = model.model.encode_images(images[:1])
    in_a_batch = model.model.encode_images(images)[:1]
    torch.testing.assert_close(alone, in_a_batch)
    for name, buffer in model.vision_tower.named_buffers():
        torch.testing.assert_close(buffer, statistics[name], rtol=0, atol=0, msg=name)
    model.vision_tower.requires_grad_(True)  # trainable again: the next train() trains it
    model.train()
    assert model.vision_tower.training


def test_freeze_methods():
    model = tiny_model(fusion={"vision": "resampler", "audio": "cross_attention"})
    model.freeze_all_but_fusion()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable
    fusion_parts = ("fusion", "gated_cross_attention", "cross_attention_key_values")
    assert all(any(part in name for part in fusion_parts) for name in trainable), trainable
    assert any("gated_cross_attention" in name for name in trainable)
    model.requires_grad_(True)
    model.freeze_language_model()
    assert not model.lm_head.weight.requires_grad and not model.model.language_model.wte.weight.requires_grad
    assert any(p.requires_grad for p in model.model.vision_tower.parameters())


@pytest.mark.parametrize("tower", ["wav2vec2", "hubert", "whisper"])
def test_freeze_feature_encoder_freezes_only_the_convolutional_front_end(tower):
    model = tiny_model(vision=None, audio=tower, fusion="mlp").train()
    front_end = {
        f"model.audio_tower.{name}"
        for name, _ in model.model.audio_tower.named_parameters()
        if name.startswith(("conv1.", "conv2.") if tower == "whisper" else "feature_extractor.")
    }
    frozen_before = {name for name, p in model.named_parameters() if not p.requires_grad}
    model.freeze_feature_encoder()
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert front_end and frozen - frozen_before == front_end - frozen_before and front_end <= frozen
    audio = audio_input(model, [43, 43] if tower == "whisper" else [2900, 2900])
    count = model.config.num_audio_tokens(43 if tower == "whisper" else 2900)
    input_ids = torch.tensor([sample(model, "audio", count)] * 2)
    model(input_ids=input_ids, labels=input_ids, **audio).loss.backward()
    assert_every_trainable_parameter_has_a_gradient(model)  # the tower's transformer layers still learn
    assert all(p.grad is None for name, p in model.named_parameters() if name in front_end)


def test_freeze_feature_encoder_needs_an_audio_tower():
    with pytest.raises(ValueError, match="has none"):
        tiny_model(audio=None, fusion="mlp").freeze_feature_encoder()


def test_head_stays_tied_after_resizing_for_new_tokens():
    model = tiny_model(fusion="mlp")
    model.resize_token_embeddings(120)
    assert model.lm_head.weight is model.model.language_model.wte.weight
    assert model.config.text_config.vocab_size == 120
    assert model(input_ids=TEXT).logits.shape[-1] == 120


def test_no_split_modules_keep_blocks_whole():
    model = tiny_model(fusion="cross_attention")
    # post_init collects the towers' own `_no_split_modules` too, and keeps only the classes the model has (FSDP's
    # auto-wrap stops on a name it cannot find): cross-attention fusion has no resampler, no plain GPT2Block
    blocks = model._no_split_modules
    assert {"MultimodalGPT2Block", "CLIPEncoderLayer", "Wav2Vec2EncoderLayerStableLayerNorm"} <= blocks
    assert not {"PerceiverResampler", "GPT2Block"} & blocks


class TestBadInput:
    def test_placeholder_count_differs_from_feature_count(self):
        model = tiny_model(fusion="mlp")
        input_ids = torch.tensor([sample(model, "image", 15)])
        with pytest.raises(ValueError, match="tokens: 15, features: 16"):
            model(input_ids=input_ids, pixel_values=image_input(1))

    def test_cross_attention_marker_count(self):
        model = tiny_model(fusion="cross_attention")
        input_ids = torch.tensor([sample(model, "image", 1)])
        with pytest.raises(ValueError, match="tokens: 1, features: 2"):
            model(input_ids=input_ids, pixel_values=image_input(2))

    def test_placeholders_without_media(self):
        model = tiny_model(fusion="mlp")
        with pytest.raises(ValueError, match="16 <image> tokens but no pixel_values"):
            model(input_ids=torch.tensor([sample(model, "image", 16)]))

    def test_media_for_a_modality_without_tower(self):
        model = tiny_model(vision=None, audio="wav2vec2")
        with pytest.raises(ValueError, match="no vision tower"):
            model(input_ids=torch.tensor([[1, 2]]), pixel_values=image_input(1))
        model = tiny_model(vision="clip", audio=None)
        with pytest.raises(ValueError, match="no audio tower"):
            model(input_ids=torch.tensor([[1, 2]]), input_values=torch.randn(1, 1600))

    def test_wrong_audio_input_kind(self):
        model = tiny_model(vision=None, audio="whisper")
        with pytest.raises(ValueError, match="takes `input_features`"):
            model(input_ids=torch.tensor([[1, 2]]), input_values=torch.randn(1, 1600))

    @pytest.mark.parametrize(
        ("shape", "message"),
        [
            ((1, 1, 8, 8), "1 channels, the vision tower expects 3"),
            ((1, 3, 16, 16), "16x16 pixels"),
            ((3, 8, 8), "shape"),
        ],
    )
    def test_wrong_image_size_or_channels(self, shape, message):
        model = tiny_model(fusion="mlp")
        with pytest.raises(ValueError, match=message):
            model(input_ids=torch.tensor([sample(model, "image", 16)]), pixel_values=torch.randn(*shape))

    def test_sequence_longer_than_gpt2_positions(self):
        model = tiny_model(fusion="mlp")
        with pytest.raises(ValueError, match="300 tokens .* more than GPT-2's 256 positions"):
            model(input_ids=torch.ones(1, 300, dtype=torch.long))

    def test_attention_mask_of_the_wrong_shape(self):
        model = tiny_model(fusion="mlp")
        with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 3\), expected .* = \(2, 6\)"):
            model(input_ids=TEXT, attention_mask=torch.ones(2, 3, dtype=torch.long))

    @pytest.mark.parametrize(
        ("pixel_values", "message"),
        [
            (
                torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
                "pixel_values must be a floating-point tensor .* torch.uint8",
            ),
            (torch.full((1, 3, 8, 8), float("nan")), "pixel_values hold NaN or infinite values"),
        ],
    )
    def test_integer_or_nan_pixel_values(self, pixel_values, message):
        model = tiny_model(fusion="mlp")
        with pytest.raises(ValueError, match=message):
            model(input_ids=torch.tensor([sample(model, "image", 16)]), pixel_values=pixel_values)

    def test_one_dimensional_input_ids(self):
        model = tiny_model(fusion="mlp")
        with pytest.raises(ValueError, match=r"input_ids must have shape \(batch_size, sequence_length\), got \(6,\)"):
            model(input_ids=TEXT[0])

    def test_half_precision_audio_features_are_cast_to_the_tower(self):
        """fp16 log-mel features (e.g. from a pipeline run in half precision) reach a float32 Whisper tower."""
        model = tiny_model(vision=None, audio="whisper", fusion="mlp")
        audio = audio_input(model, 40)
        input_ids = torch.tensor([sample(model, "audio", model.config.num_audio_tokens(40))])
        expected = model(input_ids=input_ids, **audio).logits
        audio["input_features"] = audio["input_features"].half()
        torch.testing.assert_close(model(input_ids=input_ids, **audio).logits, expected, rtol=1e-2, atol=1e-2)
