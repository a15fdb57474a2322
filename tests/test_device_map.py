"""`device_map` loading: `device_map="auto"` and a CPU + disk offload load generate exactly like a normal load, and
the planner that `from_pretrained` uses never splits one of `model._no_split_modules` blocks (GPT-2 or
cross-attention blocks, the towers' layers, the resampler) across devices, planned here for fake GPUs."""

import pytest
import torch
from accelerate import infer_auto_device_map
from transformers.integrations.accelerate import _get_device_map, compute_module_sizes

from multimodal_gpt import MultimodalGPTForConditionalGeneration
from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, open_gates, tiny_model

GENERATION = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
# (fusion, audio tower): every fusion, and the three audio towers with their different layer classes
VARIANTS = [("mlp", "whisper"), ("resampler", "wav2vec2"), ("cross_attention", "hubert")]


def generation_inputs(model: MultimodalGPTForConditionalGeneration) -> list[dict[str, torch.Tensor]]:
    config = model.config
    audio_length = 60 if config.audio_config.model_type == "whisper" else 1600  # mel frames, or samples
    image_ids = [3, 4, *[IMAGE_TOKEN_ID] * config.num_image_tokens(), 5]
    audio_ids = [3, *[AUDIO_TOKEN_ID] * config.num_audio_tokens(audio_length), 6, 7]
    return [
        {"input_ids": torch.tensor([image_ids]), "pixel_values": image_input(1)},
        {"input_ids": torch.tensor([audio_ids]), **audio_input(model, audio_length)},
        {"input_ids": torch.tensor([[3, 4, 5, 6]])},
    ]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda variant: "-".join(variant))
def saved(request, tmp_path_factory) -> tuple[MultimodalGPTForConditionalGeneration, str]:
    fusion, audio = request.param
    model = tiny_model(fusion=fusion, audio=audio, seed=1)
    open_gates(model)  # so that the media change the output under cross-attention too
    folder = tmp_path_factory.mktemp(f"{fusion}-{audio}")
    model.save_pretrained(folder)
    return model, str(folder)


def assert_generates_like(model, loaded) -> None:
    for inputs in generation_inputs(model):
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
        torch.testing.assert_close(loaded.generate(**inputs, **GENERATION), model.generate(**inputs, **GENERATION))


def test_device_map_auto_loads_and_generates_like_a_normal_load(saved):
    model, folder = saved
    loaded = MultimodalGPTForConditionalGeneration.from_pretrained(folder, device_map="auto")
    assert {parameter.device.type for parameter in loaded.parameters()} == {"cpu"}
    assert loaded.lm_head.weight is loaded.model.language_model.wte.weight  # the head stays tied
    assert_generates_like(model, loaded)


def test_cpu_and_disk_offload_generates_like_a_normal_load(saved, tmp_path):
    model, folder = saved
    half = compute_module_sizes(model)[0][""] // 2
    loaded = MultimodalGPTForConditionalGeneration.from_pretrained(
        folder, device_map="auto", max_memory={"cpu": half}, offload_folder=tmp_path
    )
    assert set(loaded.hf_device_map.values()) == {"cpu", "disk"}
    assert any(parameter.device.type == "meta" for parameter in loaded.parameters())  # really offloaded
    assert_generates_like(model, loaded)


def device_of(parameter_name: str, device_map: dict[str, int | str]) -> int | str:
    """The device `device_map` gives a parameter: its own entry, else the one of its longest enclosing module."""
    enclosing = [name for name in device_map if name in ("", parameter_name) or parameter_name.startswith(name + ".")]
    return device_map[max(enclosing, key=len)]


def block_devices(model, device_map) -> dict[str, set[int | str]]:
    """Every `_no_split_modules` block of the model, with the devices its parameters are placed on."""
    return {
        name: {device_of(f"{name}.{parameter_name}", device_map) for parameter_name, _ in module.named_parameters()}
        for name, module in model.named_modules()
        if type(module).__name__ in model._no_split_modules
    }


@pytest.mark.parametrize(("fusion", "audio"), VARIANTS)
def test_auto_device_map_never_splits_a_block_across_devices(fusion, audio):
    model = tiny_model(fusion=fusion, audio=audio)
    size = compute_module_sizes(model)[0][""]
    max_memory = {0: size // 4, 1: size // 4, 2: size // 4, "cpu": size}  # three small fake GPUs, then the CPU
    # What from_pretrained(device_map="auto", max_memory=max_memory) plans:
    device_map = _get_device_map(model, "auto", dict(max_memory), None)
    assert len(set(device_map.values())) >= 3, f"the model was not spread over several devices: {device_map}"
    assert device_of("lm_head.weight", device_map) == device_of("model.language_model.wte.weight", device_map)

    blocks = block_devices(model, device_map)
    language_block = "MultimodalGPT2Block" if fusion == "cross_attention" else "GPT2Block"
    tower_layer = {
        "whisper": "WhisperEncoderLayer",
        "wav2vec2": "Wav2Vec2EncoderLayerStableLayerNorm",
        "hubert": "HubertEncoderLayerStableLayerNorm",
    }[audio]
    assert {language_block, "CLIPEncoderLayer", tower_layer} <= set(model._no_split_modules)
    assert ("PerceiverResampler" in model._no_split_modules) == (fusion == "resampler")
    split = {name: devices for name, devices in blocks.items() if len(devices) > 1}
    assert not split, f"blocks split across devices: {split}"

    # The control: without the no-split list the same memory budget does cut blocks in two.
    unconstrained = infer_auto_device_map(model, max_memory=dict(max_memory), no_split_module_classes=[])
    assert any(len(devices) > 1 for devices in block_devices(model, unconstrained).values())
