"""The model's speed levers (issue 14): fewer image tokens by merging neighbouring patches, a cheaper gated
cross-attention block, precomputed media features, and rows that pack several samples. Each must compute what the
model computed without it (or what it says it computes), and old configs must keep their old behaviour."""

import json
import math

import pytest
import torch
from transformers import CLIPVisionConfig, Trainer, TrainingArguments

from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration
from multimodal_gpt.configuration_multimodal_gpt import count_image_tokens
from multimodal_gpt.fusion_multimodal_gpt import VisionTokenMerger
from tests.test_training_step import collate, make_samples
from tests.tiny_models import (
    AUDIO_TOKEN_ID,
    FUSIONS,
    IMAGE_TOKEN_ID,
    audio_input,
    image_input,
    open_gates,
    text_config,
    tiny_config,
    tiny_model,
    tiny_processor_and_model,
)

ODD_GRID_VISION = CLIPVisionConfig(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=6, patch_size=2
)  # a 3 x 3 grid of patches: a 2 x 2 merge pads it to 4 x 4


def image_sample(config: MultimodalGPTConfig, prefix=(3, 4), suffix=(5, 6)) -> list[int]:
    return [*prefix, *[IMAGE_TOKEN_ID] * config.num_image_tokens(), *suffix]


# ----- merging neighbouring patches (pixel shuffle / pooling) ---------------------------------------------------


def test_stack_merge_is_space_to_depth_and_pads_an_odd_grid_with_zeros():
    patches = torch.arange(1, 10, dtype=torch.float32).view(1, 9, 1)  # a 3 x 3 grid, one feature per patch
    merged = VisionTokenMerger(factor=2, mode="stack")(patches, (3, 3))
    # blocks in row-major order, each block's patches in row-major order; the grid is padded to 4 x 4 with zeros
    expected = torch.tensor([[1, 2, 4, 5], [3, 0, 6, 0], [7, 8, 0, 0], [9, 0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(merged[0], expected)


def test_mean_merge_averages_the_real_patches_of_each_block_only():
    patches = torch.arange(1, 10, dtype=torch.float32).view(1, 9, 1)
    merged = VisionTokenMerger(factor=2, mode="mean")(patches, (3, 3))
    expected = torch.tensor([[(1 + 2 + 4 + 5) / 4], [(3 + 6) / 2], [(7 + 8) / 2], [9.0]])
    torch.testing.assert_close(merged[0], expected)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("mode", ["stack", "mean"])
def test_processor_and_model_agree_on_merged_image_tokens_of_an_odd_grid(fusion, mode):
    processor, model = tiny_processor_and_model(
        vision_config=ODD_GRID_VISION, audio=None, fusion=fusion, vision_token_merge=2, vision_token_merge_mode=mode
    )
    open_gates(model)
    images = [torch.rand(3, 6, 6)] * 3
    texts = ["<image> a cat", "a dog <image> and <image>"]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    placeholders = {"linear": 4, "mlp": 4, "resampler": 4, "cross_attention": 1}[fusion]  # 3 x 3 -> 2 x 2
    assert model.config.num_image_tokens() == placeholders
    assert int((inputs["input_ids"][0] == processor.image_token_id).sum()) == placeholders
    outputs = model(**inputs)  # the model checks that placeholders and tokens match
    assert outputs.image_outputs.pooler_output.shape[:2] == (3, 4)  # 4 tokens, or 4 media positions to attend to


def test_merging_sends_four_times_fewer_image_tokens_to_gpt2():
    plain, merged = tiny_config(audio=None, fusion="mlp"), tiny_config(audio=None, fusion="mlp", vision_token_merge=2)
    assert plain.num_image_tokens() == 16 and merged.num_image_tokens() == 4  # a 4 x 4 grid of 8 px / 2 px patches
    model = MultimodalGPTForConditionalGeneration(merged).eval()
    assert model.model.vision_fusion.layers[0].in_features == 4 * merged.vision_config.hidden_size  # stacked
    logits = model(input_ids=torch.tensor([image_sample(merged)]), pixel_values=image_input(1)).logits
    assert logits.shape[1] == 4 + 4


def test_a_processor_config_saved_before_the_merge_option_counts_as_before():
    spec = tiny_config(audio=None, fusion="linear").media_token_spec()["image"]
    del spec["token_merge"]
    assert count_image_tokens(spec) == 16


def test_a_config_saved_before_the_lever_fields_builds_the_same_model(tmp_path):
    """A config.json written before the levers existed lacks their fields: they must mean the old behaviour."""
    config = tiny_config(fusion="cross_attention")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for field in ("vision_token_merge", "vision_token_merge_mode", "cross_attention_feed_forward_mult"):
        del saved[field]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    old = MultimodalGPTConfig.from_pretrained(tmp_path)
    assert (old.vision_token_merge, old.vision_token_merge_mode, old.cross_attention_feed_forward_mult) == (
        1,
        "stack",
        4,
    )
    shapes = {name: p.shape for name, p in MultimodalGPTForConditionalGeneration(old).named_parameters()}
    assert shapes == {name: p.shape for name, p in MultimodalGPTForConditionalGeneration(config).named_parameters()}


@pytest.mark.parametrize("mode", ["stack", "mean"])
def test_merged_tokens_export_without_data_dependent_shapes(mode):
    model = tiny_model(
        vision_config=ODD_GRID_VISION, audio=None, fusion="mlp", vision_token_merge=2, vision_token_merge_mode=mode
    )
    inputs = dict(input_ids=torch.tensor([image_sample(model.config)]), pixel_values=torch.randn(1, 3, 6, 6))
    exported = torch.export.export(model, args=(), kwargs=dict(inputs, use_cache=False), strict=False)
    torch.testing.assert_close(
        exported.module()(**inputs, use_cache=False).logits, model(**inputs, use_cache=False).logits
    )


@pytest.mark.parametrize("kwargs", [dict(vision_token_merge=0), dict(cross_attention_feed_forward_mult=-1)])
def test_bad_lever_values_fail_in_the_config(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        tiny_config(**kwargs)


# ----- the cheaper gated cross-attention block -------------------------------------------------------------------


def test_cross_attention_every_second_layer_and_without_feed_forward():
    config = tiny_config(
        text_config=text_config(n_layer=4),
        fusion="cross_attention",
        cross_attention_interval=2,
        cross_attention_feed_forward_mult=0,
    )
    model = MultimodalGPTForConditionalGeneration(config).eval()
    gated = [index for index, block in enumerate(model.language_model.h) if block.gated_cross_attention is not None]
    assert gated == [0, 2]
    assert model.model.cross_attention_key_values.num_layers == 2
    assert all(model.language_model.h[index].gated_cross_attention.feed_forward is None for index in gated)
    assert not [name for name, _ in model.named_parameters() if "feed_forward_gate" in name]
    input_ids = torch.tensor([image_sample(config)])
    closed = model(input_ids=input_ids, pixel_values=image_input(1)).logits
    torch.testing.assert_close(closed, model(input_ids=input_ids, pixel_values=image_input(1, seed=5)).logits)
    open_gates(model)
    assert not torch.allclose(closed, model(input_ids=input_ids, pixel_values=image_input(1)).logits)


def test_feed_forward_multiplier_sets_the_gated_feed_forward_width():
    model = tiny_model(fusion="cross_attention", cross_attention_feed_forward_mult=2)
    feed_forward = model.language_model.h[0].gated_cross_attention.feed_forward.layers
    assert feed_forward[1].out_features == 2 * model.config.text_config.hidden_size


# ----- precomputed media features --------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_precomputed_features_give_the_media_logits(fusion):
    model = tiny_model(fusion=fusion, vision_token_merge=2)
    open_gates(model)
    lengths = [1600, 1200]
    audio = audio_input(model, lengths, seed=3)
    rows = [
        image_sample(model.config) + [AUDIO_TOKEN_ID] * model.config.num_audio_tokens(1600),
        image_sample(model.config) + [AUDIO_TOKEN_ID] * model.config.num_audio_tokens(1200),
    ]
    longest = max(map(len, rows))
    input_ids = torch.tensor([row + [0] * (longest - len(row)) for row in rows])
    pixel_values = image_input(2)
    with torch.no_grad():
        expected = model(input_ids=input_ids, pixel_values=pixel_values, **audio).logits
        audio_features, audio_features_mask = model.model.encode_audio(**audio)
        actual = model(
            input_ids=input_ids,
            image_features=model.model.encode_images(pixel_values),
            audio_features=audio_features,
            audio_features_mask=audio_features_mask,
        ).logits
    torch.testing.assert_close(actual, expected)


def test_generation_from_precomputed_features_equals_generation_from_pixels():
    model = tiny_model(audio=None, fusion="cross_attention")
    open_gates(model)
    input_ids = torch.tensor([image_sample(model.config), image_sample(model.config, prefix=(8, 9))])
    pixel_values = image_input(2)
    settings = dict(max_new_tokens=4, do_sample=False, pad_token_id=0, num_beams=2)
    expected = model.generate(input_ids=input_ids, pixel_values=pixel_values, **settings)
    with torch.no_grad():
        features = model.model.encode_images(pixel_values)
    torch.testing.assert_close(model.generate(input_ids=input_ids, image_features=features, **settings), expected)


def test_precomputed_features_of_a_training_tower_are_refused():
    model = tiny_model(audio=None, fusion="mlp").train()
    input_ids = torch.tensor([image_sample(model.config)])
    features = model.model.encode_images(image_input(1)).detach()
    with pytest.raises(ValueError, match="vision tower, which is trainable"):
        model(input_ids=input_ids, image_features=features, labels=input_ids)
    model.freeze_towers()
    model(input_ids=input_ids, image_features=features, labels=input_ids).loss.backward()


def test_precomputed_features_of_the_wrong_width_are_refused():
    model = tiny_model(audio=None, fusion="mlp")
    with pytest.raises(ValueError, match="image_features must have shape"):
        model(input_ids=torch.tensor([image_sample(model.config)]), image_features=torch.randn(1, 16, 7))


# ----- bf16 autocast through the Trainer ---------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_trainer_bf16_autocast_trains_every_fusion_as_fp32_does(fusion, tmp_path):
    """`--bf16` on CPU: the model runs under bf16 autocast (the LM head computes in bf16) and four steps on a mixed
    image / audio / text batch follow fp32's losses closely and learn. The longer check (100 steps, every fusion,
    seed noise as the yardstick) is `python -m multimodal_gpt.benchmarks.precision`."""
    curves = {}
    for bf16 in (False, True):
        model = tiny_model(fusion=fusion, seed=0).train()
        open_gates(model)
        head_dtypes = set()
        model.lm_head.register_forward_hook(lambda module, inputs, output, seen=head_dtypes: seen.add(output.dtype))
        arguments = TrainingArguments(
            output_dir=str(tmp_path),
            per_device_train_batch_size=8,
            max_steps=4,
            learning_rate=1e-2,
            bf16=bf16,
            use_cpu=True,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=make_samples(model), data_collator=collate)
        trainer.train()
        curves[bf16] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        assert head_dtypes == {torch.bfloat16 if bf16 else torch.float32}
    assert all(math.isfinite(loss) for loss in curves[True]) and curves[True][-1] < curves[True][0]
    torch.testing.assert_close(torch.tensor(curves[True]), torch.tensor(curves[False]), rtol=0.02, atol=0)
