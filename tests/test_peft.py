"""LoRA with PEFT: which parameters train (LoRA on GPT-2's layers, the fusion in full, towers and GPT-2 frozen), a few
steps through the real `Trainer`, the adapter saved, loaded onto a fresh base (same logits), merged into a plain model
(same logits after a save and reload), `generate()` through the PeftModel, and `scripts/train.py --lora_r`."""

import json
import re

import pytest
import torch
from safetensors import safe_open
from transformers import Trainer, TrainingArguments

from multimodal_gpt import MultimodalGPTForConditionalGeneration
from multimodal_gpt.training.lora import (
    apply_lora,
    is_peft_model,
    load_lora,
    lora_base_model,
    lora_config_for,
    merge_lora,
    new_token_ids,
)
from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, open_gates, tiny_model

GPT2_LORA = re.compile(
    r"model\.language_model\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.lora_[AB]\."
)
FUSION_COPY = re.compile(
    r"model\.(vision_fusion|audio_fusion|cross_attention_key_values|language_model\.h\.\d+\.gated_cross_attention)\."
)
TOKEN_ROWS = "model.language_model.wte.token_adapter.trainable_tokens_delta"


def trainable_names(peft_model) -> list[str]:
    return [
        name.removeprefix("base_model.model.")
        for name, parameter in peft_model.named_parameters()
        if parameter.requires_grad
    ]


def make_samples(model) -> list[dict]:
    """8 short captioning-like samples: image, audio and text-only rows, each kind with its own 4-token answer."""
    image_tokens = [IMAGE_TOKEN_ID] * model.config.num_image_tokens()
    audio_tokens = [AUDIO_TOKEN_ID] * model.config.num_audio_tokens(800)
    samples = []
    for index in range(8):
        media, prompt, target = {}, [1, 2], [30, 31, 32, 33]
        if index % 3 == 0:
            media, prompt, target = (
                {"pixel_values": image_input(1, seed=index)},
                [1, *image_tokens, 2],
                [10, 11, 12, 13],
            )
        elif index % 3 == 1:
            media, prompt, target = audio_input(model, 800, seed=index), [1, *audio_tokens, 2], [20, 21, 22, 23]
        samples.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target, **media})
    return samples


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    longest = max(len(sample["input_ids"]) for sample in samples)
    padding = [longest - len(sample["input_ids"]) for sample in samples]
    batch = {
        "input_ids": torch.tensor([s["input_ids"] + [0] * pad for s, pad in zip(samples, padding)]),
        "labels": torch.tensor([s["labels"] + [-100] * pad for s, pad in zip(samples, padding)]),
        "attention_mask": torch.tensor([[1] * len(s["input_ids"]) + [0] * pad for s, pad in zip(samples, padding)]),
    }
    for key in ("pixel_values", "input_values", "input_values_mask"):
        media = [sample[key] for sample in samples if key in sample]
        if media:
            batch[key] = torch.cat(media)
    return batch


def image_prompt(model) -> dict[str, torch.Tensor]:
    """One image prompt, with text tokens whose embedding rows LoRA's token training touches."""
    image_tokens = [IMAGE_TOKEN_ID] * model.config.num_image_tokens()
    return {"input_ids": torch.tensor([[1, *image_tokens, 2, 5, 7]]), "pixel_values": image_input(1, seed=42)}


@pytest.mark.parametrize("fusion", ["mlp", "resampler", "cross_attention"])
def test_lora_trains_gpt2_adapters_and_the_fusion_only(fusion):
    model = tiny_model(fusion=fusion)
    peft_model = apply_lora(model, r=4, alpha=8)
    names = trainable_names(peft_model)
    lora = [name for name in names if "lora_" in name]
    fusion_copies = [name for name in names if "lora_" not in name]
    # LoRA A and B on c_attn, attn.c_proj, c_fc and mlp.c_proj of each of the 2 GPT-2 blocks, nowhere else
    assert len(lora) == 2 * 4 * 2 and all(GPT2_LORA.match(name) for name in lora)
    # the fusion trains in full, as PEFT's saved copy (`modules_to_save`): every fusion parameter, none other
    assert all(FUSION_COPY.match(name) and ".modules_to_save.default." in name for name in fusion_copies)
    fusion_parameters = {
        name for name, _ in model.named_parameters() if FUSION_COPY.match(name) and "original_module" in name
    }
    assert len(fusion_copies) == len(fusion_parameters) > 0
    if fusion == "cross_attention":  # the gated layers inside GPT-2's blocks are fusion, not LoRA targets
        assert any("gated_cross_attention" in name for name in fusion_copies)
        assert not any("gated_cross_attention" in name for name in lora)
    # towers and GPT-2's own weights stay frozen
    assert not any("tower" in name or name.endswith(("wte.weight", "wpe.weight")) for name in names)
    assert peft_model(**image_prompt(model)).logits.shape[-1] == model.config.text_config.vocab_size


def test_lora_on_towers_hits_their_encoder_layers_not_their_unused_parts():
    model = tiny_model(vision="vit", fusion="linear")
    config = lora_config_for(model, r=2, target="language_model+towers")
    peft_model = apply_lora(model, config)
    lora_modules = {name.split(".lora_A.")[0] for name in trainable_names(peft_model) if ".lora_A." in name}
    vision = {name for name in lora_modules if name.startswith("model.vision_tower.")}
    audio = {name for name in lora_modules if name.startswith("model.audio_tower.")}
    # ViT: q, k, v and o projections, fc1 and fc2, in each of its 2 layers
    assert len(vision) == 2 * 6 and all(name.startswith("model.vision_tower.layers.") for name in vision)
    assert "model.vision_tower.pooler.dense" not in lora_modules  # the pooler's output is never used
    assert any("attention.q_proj" in name for name in audio) and any("feed_forward" in name for name in audio)
    tower_base = [n for n, p in peft_model.named_parameters() if "tower" in n and p.requires_grad and "lora_" not in n]
    assert tower_base == []
    with pytest.raises(ValueError, match="no vision or audio tower"):
        lora_config_for(tiny_model(vision=None, audio=None), target="language_model+towers")
    with pytest.raises(ValueError, match="target must be one of"):
        lora_config_for(tiny_model(), target="towers")
    with pytest.raises(ValueError, match=r"The vision tower \(resnet\) has no linear layers to put LoRA on"):
        lora_config_for(tiny_model(vision="resnet"), target="language_model+towers")  # not the audio tower's alone


def test_train_save_load_merge_and_generate(tmp_path):
    base = tiny_model(fusion="cross_attention")
    open_gates(base, 0.3)
    base.save_pretrained(tmp_path / "base")
    base.name_or_path = str(tmp_path / "base")  # the adapter records where its base model is
    token_ids = new_token_ids(base)
    assert token_ids == [IMAGE_TOKEN_ID, AUDIO_TOKEN_ID]  # pad is <|endoftext|> in the tiny config
    peft_model = apply_lora(base, r=4, alpha=8, dropout=0.0, train_new_tokens=True)
    before = {name: parameter.detach().clone() for name, parameter in peft_model.named_parameters()}

    # 1. A few steps through the real Trainer
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        max_steps=16,
        learning_rate=2e-2,
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=peft_model, args=args, train_dataset=make_samples(base), data_collator=collate)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # GPT-2's head is frozen and this random tiny one's logits are small: the loss can fall only so far from
    # ln(99) = 4.6, but it falls steadily
    assert max(losses[-4:]) < losses[0] - 0.3, losses
    changed = {name for name, parameter in peft_model.named_parameters() if not torch.equal(parameter, before[name])}
    assert changed == {name for name, parameter in peft_model.named_parameters() if parameter.requires_grad}
    assert any(TOKEN_ROWS in name for name in changed) and any("gated_cross_attention" in name for name in changed)

    # 2. The adapter on disk: safetensors and adapter_config.json, LoRA + fusion + 2 token rows, far below the model
    adapter_dir = tmp_path / "adapter"
    trainer.save_model(str(adapter_dir))
    files = {path.name for path in adapter_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json"} <= files and "model.safetensors" not in files
    assert lora_base_model(adapter_dir) == str(tmp_path / "base")
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["trainable_token_indices"] == token_ids
    with safe_open(adapter_dir / "adapter_model.safetensors", "pt") as file:
        keys = list(file.keys())
    assert not any("tower" in key for key in keys) and any("lora_B" in key for key in keys)
    adapter_bytes = (adapter_dir / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < 0.35 * (tmp_path / "base" / "model.safetensors").stat().st_size

    # 3. Loaded onto a fresh base model: the same logits, and generate() works through the PeftModel
    peft_model.eval()
    inputs = image_prompt(base)
    with torch.no_grad():
        trained_logits = peft_model(**inputs).logits
        fresh = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path / "base").eval()
        fresh_logits = fresh(**inputs).logits
        loaded = load_lora(fresh, adapter_dir)
        torch.testing.assert_close(loaded(**inputs).logits, trained_logits, rtol=0, atol=0)
    assert not torch.allclose(fresh_logits, trained_logits, atol=1e-3)  # training did change the outputs
    generated = loaded.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 4)

    # 4. Merged into a plain model: the same logits and generations, also after save_pretrained + from_pretrained
    merged = merge_lora(loaded)
    assert type(merged) is MultimodalGPTForConditionalGeneration and not is_peft_model(merged)
    assert merged.lm_head.weight is merged.model.language_model.wte.weight
    assert not any("lora" in key or "modules_to_save" in key for key in merged.state_dict())
    merged.save_pretrained(tmp_path / "merged")
    reloaded = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, trained_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(reloaded(**inputs).logits, trained_logits, rtol=0, atol=1e-5)
    regenerated = reloaded.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(regenerated, generated)

    # 5. transformers' own PEFT integration (what scripts/evaluate_model.py uses) reads the adapter folder as a model
    via_transformers = MultimodalGPTForConditionalGeneration.from_pretrained(adapter_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(via_transformers(**inputs).logits, trained_logits, rtol=0, atol=0)


def test_train_script_with_lora_then_continue_the_adapter(tmp_path, monkeypatch):
    from multimodal_gpt.data import sources as task_data
    from multimodal_gpt.data import synthetic
    from multimodal_gpt.training.cli import train_main

    # Only the captioning rows these runs read: generating the whole demo set would take most of the test's time.
    splits = synthetic.make_demo_splits(seed=0, sizes={"captioning": {"train": 8, "validation": 2}})
    monkeypatch.setattr(task_data, "make_demo_splits", lambda seed: splits)

    def arguments(output_dir, *extra: str) -> list[str]:
        new_model = [] if "--model_name_or_path" in extra else ["--preset", "tiny", "--vocab_size", "300"]
        return ["--task", "captioning", "--dataset_name", "synthetic", "--output_dir", str(output_dir), *new_model,
                "--max_train_samples", "8", "--max_eval_samples", "2", "--max_new_tokens", "2",
                "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "2",
                "--do_train", "--do_eval", "--report_to", "none", "--use_cpu", "--save_strategy", "no",
                "--disable_tqdm", "true", "--logging_steps", "1", *extra]  # fmt: skip

    first = tmp_path / "lora"
    results = train_main(arguments(first, "--lora_r", "4", "--lora_train_new_tokens", "--merge_lora"))
    assert "eval_bleu4" in results and "train_loss" in results
    files = {path.name for path in first.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "processor_config.json"} <= files
    assert "model.safetensors" not in files
    # a model built here from a preset has random weights no adapter can rebuild: they are saved as its base
    assert lora_base_model(first) == str((first / "base_model").resolve())
    assert (first / "base_model" / "model.safetensors").is_file()
    assert {"model.safetensors", "processor_config.json"} <= {path.name for path in (first / "merged").iterdir()}
    config = json.loads((first / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["trainable_token_indices"]

    # continuing the LoRA run's folder trains the same adapter further, on the same base model
    second = tmp_path / "continued"
    results = train_main(arguments(second, "--lora_r", "4", "--model_name_or_path", str(first)))
    assert "eval_bleu4" in results
    assert lora_base_model(second) == lora_base_model(first)
    with (
        safe_open(first / "adapter_model.safetensors", "pt") as old,
        safe_open(second / "adapter_model.safetensors", "pt") as new,
    ):
        assert set(old.keys()) == set(new.keys())
        assert any(not torch.equal(old.get_tensor(key), new.get_tensor(key)) for key in old.keys())
