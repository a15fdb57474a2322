"""Next-element prediction for media (`media_loss_weight`) and label smoothing, in the model's own loss path: no
position sees the element it predicts, the targets line up with the towers' patches and frames, the loss is an
average over every text token and media element (gradient accumulation gives the same update), and weight 0 is the
plain text loss."""

import pytest
import torch
import torch.nn.functional as F
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from multimodal_gpt.configuration_multimodal_gpt import audio_tower_convolutions
from multimodal_gpt.objectives_multimodal_gpt import frame_targets, media_lookahead, patch_targets
from tests.test_modeling import assert_every_trainable_parameter_has_a_gradient
from tests.test_training_step import one_sgd_step
from tests.tiny_models import (
    AUDIO_TOKEN_ID,
    IMAGE_TOKEN_ID,
    PATCH_SIZE,
    audio_input,
    image_input,
    tiny_model,
)

WHISPER_FRAMES = 60  # valid mel frames of the test clip (the window is 100)


def media_model(seed: int = 0, weight: float | dict = 1.0, **overrides):
    return tiny_model(seed=seed, vision="vit", audio="whisper", fusion="mlp", media_loss_weight=weight, **overrides)


def image_row(model, text=(5, 6, 7)) -> tuple[list[int], list[int]]:
    """[bos] <image> x n text: every image token but the first is a target, as the pretraining collator labels it."""
    count = model.config.num_image_tokens()
    input_ids = [1, *[IMAGE_TOKEN_ID] * count, *text]
    labels = [-100, -100, *[IMAGE_TOKEN_ID] * (count - 1), *text]
    return input_ids, labels


def audio_row(model, frames: int = WHISPER_FRAMES, text=(5, 6)) -> tuple[list[int], list[int]]:
    count = model.config.num_audio_tokens(frames)
    return [1, *[AUDIO_TOKEN_ID] * count, *text], [-100, -100, *[AUDIO_TOKEN_ID] * (count - 1), *text]


def batch(rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    longest = max(len(ids) for ids, _ in rows)
    return {
        "input_ids": torch.tensor([ids + [0] * (longest - len(ids)) for ids, _ in rows]),
        "labels": torch.tensor([labels + [-100] * (longest - len(labels)) for _, labels in rows]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids, _ in rows]),
    }


def head_inputs(model, inputs: dict, causal: bool) -> torch.Tensor:
    """GPT-2's last states (B, T, D), with the towers causal as media prediction runs them, or bidirectional."""
    towers = ("vision", "audio") if causal else ()
    return model.model(**inputs, causal_towers=towers).last_hidden_state


# ----- no leak ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False])
def test_no_image_position_sees_the_patch_it_predicts(causal):
    """Changing patch k (the target of position k - 1) leaves every state up to position k - 1 unchanged, with the
    causal tower; the bidirectional tower leaks it (the trap this guards against)."""
    model = media_model()
    input_ids, _ = image_row(model)
    pixels = image_input(1, seed=3)
    changed = pixels.clone()
    row, column = 1, 2  # patch 1 * (8 / 2) + 2 = 6 of the 4 x 4 grid
    k = row * (pixels.shape[-1] // PATCH_SIZE) + column
    changed[..., row * PATCH_SIZE : (row + 1) * PATCH_SIZE, column * PATCH_SIZE : (column + 1) * PATCH_SIZE] += 1.0
    inputs = {"input_ids": torch.tensor([input_ids])}
    before = head_inputs(model, {**inputs, "pixel_values": pixels}, causal)
    after = head_inputs(model, {**inputs, "pixel_values": changed}, causal)
    position_of_patch = 1 + k  # bos first
    seen = (before - after).abs().amax(-1)[0]
    if causal:
        assert seen[:position_of_patch].max() == 0
        assert seen[position_of_patch] > 0
    else:
        assert seen[:position_of_patch].max() > 0


@pytest.mark.parametrize("causal", [True, False])
def test_no_audio_position_sees_the_frames_it_predicts(causal):
    """The target of audio token k is its mel frames after the lookahead; changing them leaves every state up to
    position k - 1 unchanged with the causal tower, and the bidirectional tower leaks them."""
    model = media_model()
    frames_per_token, lookahead = model._audio_token_span()
    input_ids, _ = audio_row(model)
    audio = audio_input(model, WHISPER_FRAMES, seed=4)
    changed = {key: value.clone() for key, value in audio.items()}
    k = 5
    changed["input_features"][..., k * frames_per_token + lookahead : (k + 1) * frames_per_token] += 1.0
    inputs = {"input_ids": torch.tensor([input_ids])}
    before = head_inputs(model, {**inputs, **audio}, causal)
    after = head_inputs(model, {**inputs, **changed}, causal)
    seen = (before - after).abs().amax(-1)[0]
    position_of_token = 1 + k
    if causal:
        assert seen[:position_of_token].max() == 0
        assert seen[position_of_token] > 0
        # the lookahead frames are seen one token early: that is why the target leaves them out
        changed["input_features"][..., k * frames_per_token : k * frames_per_token + lookahead] += 1.0
        early = (before - head_inputs(model, {**inputs, **changed}, causal)).abs().amax(-1)[0]
        assert early[position_of_token - 1] > 0
    else:
        assert seen[:position_of_token].max() > 0


def test_the_lookahead_is_what_whispers_convolutions_reach():
    """Brute force on a real Whisper encoder front end: the mel frames that reach tower frame f, against the span and
    lookahead `media_lookahead` computes (Whisper: 8 frames a token at reduction 4, 1 frame ahead)."""
    config = WhisperConfig(
        num_mel_bins=4, d_model=8, encoder_layers=1, encoder_attention_heads=1, max_source_positions=32
    )
    encoder = WhisperEncoder(config).eval()
    reduction = 4
    frames_per_token, lookahead = media_lookahead(audio_tower_convolutions(config), reduction)
    assert (frames_per_token, lookahead) == (8, 1)
    mel = torch.randn(1, 4, 64, requires_grad=True)
    front_end = F.gelu(encoder.conv2(F.gelu(encoder.conv1(mel))))  # (1, d_model, 32)
    last_frame_of_token_2 = 3 * reduction - 1
    front_end[0, :, last_frame_of_token_2].sum().backward()
    reached = mel.grad[0].abs().sum(0).nonzero().flatten()
    assert int(reached.max()) == 3 * frames_per_token + lookahead - 1  # one frame into token 3


def test_patch_targets_follow_the_vit_patch_order():
    pixels = image_input(1, seed=5)
    changed = pixels.clone()
    changed[..., 2:4, 6:8] += 1.0  # row 1, column 3 of the 4 x 4 grid: patch 7
    difference = (patch_targets(pixels, (2, 2)) - patch_targets(changed, (2, 2))).abs().amax(-1)[0]
    assert difference.nonzero().flatten().tolist() == [7]
    assert patch_targets(pixels, (2, 2)).shape == (1, 16, 3 * 2 * 2)


def test_frame_targets_are_normalised_chunks_without_the_lookahead():
    features = torch.arange(2 * 3 * 10, dtype=torch.float).reshape(2, 3, 10)
    targets = frame_targets(features, frames_per_token=4, lookahead=1)
    assert targets.shape == (2, 3, 3 * 3)  # 10 frames padded to 12: 3 tokens of 3 kept frames x 3 mel bins
    torch.testing.assert_close(targets.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    # token 1 keeps frames 5, 6, 7 of every mel bin
    raw = features[0, :, 5:8].T.flatten()
    torch.testing.assert_close(targets[0, 1], (raw - raw.mean()) / raw.std(unbiased=False), atol=1e-3, rtol=0)


# ----- the loss --------------------------------------------------------------------------------------------------


def test_zero_weight_adds_no_head_and_keeps_the_text_loss():
    model = media_model(weight=0.0)
    assert len(model.media_prediction_heads) == 0
    assert not any("media_prediction" in name for name in model.state_dict())
    inputs = batch([image_row(model)])
    labels = inputs["labels"].masked_fill(inputs["labels"] == IMAGE_TOKEN_ID, -100)
    loss = model(**{**inputs, "labels": labels}, pixel_values=image_input(1)).loss
    logits = model(input_ids=inputs["input_ids"], pixel_values=image_input(1)).logits
    expected = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


def test_the_loss_averages_text_tokens_and_weighted_media_elements():
    """(sum of text cross-entropies + weight x sum of per-element squared errors) / (text tokens + media targets)."""
    weight = 0.5
    model = media_model(weight=weight)
    inputs = batch([image_row(model)])
    pixels = image_input(1, seed=6)
    loss = model(**inputs, pixel_values=pixels).loss
    hidden = head_inputs(model, {"input_ids": inputs["input_ids"], "pixel_values": pixels}, causal=True)
    count = model.config.num_image_tokens()
    text_logits = model.lm_head(hidden[0, count:-1])  # positions of the last image token and the text
    text_sum = F.cross_entropy(text_logits, inputs["labels"][0, count + 1 :], reduction="sum")
    predictions = model.media_prediction_heads["vision"](hidden[0, 1:count])  # image tokens 0..n-2 predict 1..n-1
    targets = patch_targets(pixels, (PATCH_SIZE, PATCH_SIZE))[0, 1:]
    media_sum = (predictions - targets).pow(2).mean(-1).sum()
    expected = (text_sum + weight * media_sum) / (3 + count - 1)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_a_media_only_batch_and_a_text_only_batch_train():
    """No text target (media-only rows): a finite loss from the media alone; no media (text-only rows): the heads stay
    in the graph, so DDP without find_unused_parameters has every gradient."""
    model = media_model().train()
    input_ids, labels = image_row(model, text=())
    media_only = model(**batch([(input_ids, labels)]), pixel_values=image_input(1))
    assert torch.isfinite(media_only.loss) and media_only.loss > 0
    model(input_ids=torch.tensor([[3, 4, 5, 6]]), labels=torch.tensor([[3, 4, 5, 6]])).loss.backward()
    assert_every_trainable_parameter_has_a_gradient(model)


def test_a_media_label_on_a_text_position_is_an_error():
    model = media_model()
    inputs = batch([image_row(model)])
    inputs["labels"][0, -1] = IMAGE_TOKEN_ID
    with pytest.raises(ValueError, match="not an <image> placeholder"):
        model(**inputs, pixel_values=image_input(1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(fusion="resampler"), "no per-element positions"),
        (
            dict(audio="wav2vec2"),
            "not .wav2vec2. .convolutional towers, wav2vec2 and HuBERT mix neighbouring positions",
        ),
        (dict(media_loss_weight={"vision": -1.0}), ">= 0"),
        (dict(audio=None, media_loss_weight={"audio": 1.0}), "has no tower"),
    ],
)
def test_media_prediction_needs_a_per_element_fusion_and_a_causal_tower(overrides, message):
    kwargs = dict(vision="vit", audio="whisper", fusion="mlp", media_loss_weight=1.0) | overrides
    with pytest.raises(ValueError, match=message):
        tiny_model(**kwargs)


@pytest.mark.parametrize("training", [True, False])
def test_label_smoothing_equals_torch_cross_entropy_with_label_smoothing(training):
    """In training with `labelled_logits_only` (no logits: the Trainer's smoother could not run) and in evaluation."""
    model = tiny_model(fusion="mlp", label_smoothing=0.1).train(training)
    input_ids = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]])
    labels = input_ids.masked_fill(torch.tensor([[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]], dtype=torch.bool), -100)
    loss = model(input_ids=input_ids, labels=labels).loss
    with torch.no_grad():
        model.eval()
        logits = model(input_ids=input_ids).logits
    expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), label_smoothing=0.1)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


# ----- gradient accumulation -------------------------------------------------------------------------------------


def media_samples(model) -> list[dict]:
    """8 rows: image and audio rows (with and without text) and text-only rows, uneven counts of both kinds."""
    generator = torch.Generator().manual_seed(0)
    samples = []
    for index in range(8):
        text = torch.randint(1, 90, (index % 4 * 3,), generator=generator).tolist()
        if index % 3 == 0:
            ids, labels = image_row(model, text=text)
            media = {"pixel_values": image_input(1, seed=index)}
        elif index % 3 == 1:
            ids, labels = audio_row(model, frames=20 + 10 * index, text=text)
            media = audio_input(model, 20 + 10 * index, seed=index)
        else:
            ids, labels, media = [1, *text, 2], [-100, *text, 2], {}
        samples.append({"input_ids": ids, "labels": labels, **media})
    return samples


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    inputs = batch([(sample["input_ids"], sample["labels"]) for sample in samples])
    for key in ("pixel_values", "input_features", "input_features_mask"):
        media = [sample[key] for sample in samples if key in sample]
        if media:
            inputs[key] = torch.cat(media)
    return inputs


def one_step(batch_size: int, accumulation: int, output_dir) -> tuple[float, dict[str, torch.Tensor]]:
    model = media_model(weight={"vision": 0.7, "audio": 1.3}).train()
    return one_sgd_step(model, media_samples(model), batch_size, accumulation, output_dir, data_collator=collate)


def test_gradient_accumulation_gives_the_same_loss_and_update_with_media_targets(tmp_path):
    """The Trainer counts media targets into `num_items_in_batch` (their labels are not -100), so batch 8 x 1 and
    batch 2 x 4 give one loss and one update, text-only, media-only and mixed micro-batches alike."""
    loss_full, update_full = one_step(batch_size=8, accumulation=1, output_dir=tmp_path / "full")
    loss_accumulated, update_accumulated = one_step(batch_size=2, accumulation=4, output_dir=tmp_path / "acc")
    assert loss_accumulated == pytest.approx(loss_full, rel=1e-5)
    assert update_full["media_prediction_heads.audio.out.weight"].abs().max() > 0
    for name, update in update_full.items():
        torch.testing.assert_close(update_accumulated[name], update, rtol=1e-4, atol=1e-6, msg=name)


def test_the_heads_are_saved_and_a_finetuning_load_can_drop_them(tmp_path):
    """A pretraining checkpoint keeps its heads; finetuning loads it with `media_loss_weight=0` and has none."""
    from multimodal_gpt import MultimodalGPTForConditionalGeneration

    model = media_model(weight={"vision": 1.0})
    model.save_pretrained(tmp_path)
    reloaded = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.config.media_loss_weight == {"vision": 1.0, "audio": 0.0}
    torch.testing.assert_close(
        reloaded.media_prediction_heads["vision"].out.weight, model.media_prediction_heads["vision"].out.weight
    )
    finetuning = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path, media_loss_weight=0.0)
    assert len(finetuning.media_prediction_heads) == 0
    torch.testing.assert_close(finetuning.lm_head.weight, model.lm_head.weight)


@pytest.mark.parametrize("arm", ["leaky", "codes"])
def test_the_benchmark_saves_its_other_arms_as_the_packages_model(arm, tmp_path, monkeypatch):
    """`benchmark media_prediction` pretrains its `leaky` and `codes` arms with subclasses defined in the benchmark
    module. Saved as they were, `save_pretrained` tried to ship that module's code and stopped (its relative imports
    reach outside its folder) after the `codes` arm's pretraining; now the weights go out in the package's class,
    heads dropped, and load as finetuning loads them."""
    from multimodal_gpt import MultimodalGPTForConditionalGeneration
    from multimodal_gpt.benchmarks import media_prediction

    if arm == "codes":
        codebook = torch.randn(8, PATCH_SIZE * PATCH_SIZE * 3)
        monkeypatch.setattr(media_prediction.CodeMediaPrediction, "codebooks", {"vision": codebook})
        model = media_prediction.CodeMediaPrediction(media_model(weight={"vision": 1.0}).config)
    else:
        model = media_prediction.LeakyMediaPrediction(media_model(weight={"vision": 1.0}).config)
    media_prediction.finetuning_start(model).save_pretrained(tmp_path)
    loaded = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path, media_loss_weight=0.0)
    assert len(loaded.media_prediction_heads) == 0
    expected = {name: value for name, value in model.state_dict().items() if "media_prediction_heads" not in name}
    assert loaded.state_dict().keys() == expected.keys()
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)
