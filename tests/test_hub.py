"""Registration with the Auto classes, and the saved folder as a self-contained Hub repo (trust_remote_code)."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForSpeechSeq2Seq,
)

import multimodal_gpt
from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration, MultimodalGPTModel
from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, open_gates, tiny_model

GENERATION_AUTO_CLASSES = [
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForSpeechSeq2Seq,
]
PACKAGE_DIR = Path(multimodal_gpt.__file__).parent
MODEL_HUB_FILES = [
    "configuration_multimodal_gpt.py",
    "modeling_multimodal_gpt.py",
    "checks_multimodal_gpt.py",
    "fusion_multimodal_gpt.py",
    "towers_multimodal_gpt.py",
    "encoders_multimodal_gpt.py",
    "generation_multimodal_gpt.py",
    "cache_multimodal_gpt.py",
    "outputs_multimodal_gpt.py",
    "pretrained_multimodal_gpt.py",
    "objectives_multimodal_gpt.py",
    # the modeling file imports the pipelines (for config.json's `custom_pipelines`), which import the media decoder
    "pipeline_multimodal_gpt.py",
    "media_multimodal_gpt.py",
]
# the processor's files (`processor.save_pretrained`): the processing file, which imports the one media decoder too
HUB_FILES = [*MODEL_HUB_FILES, "processing_multimodal_gpt.py"]


def test_auto_classes_resolve_to_our_classes():
    config = MultimodalGPTConfig.from_dict(tiny_model().config.to_dict())
    assert isinstance(AutoConfig.for_model("multimodal_gpt"), MultimodalGPTConfig)
    assert type(AutoModel.from_config(config)) is MultimodalGPTModel
    for auto_class in GENERATION_AUTO_CLASSES:
        assert type(auto_class.from_config(config)) is MultimodalGPTForConditionalGeneration


def test_save_pretrained_writes_safetensors_auto_map_and_hub_files(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", *MODEL_HUB_FILES} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"] == "configuration_multimodal_gpt.MultimodalGPTConfig"
    assert auto_map["AutoModel"] == "modeling_multimodal_gpt.MultimodalGPTModel"
    for auto_class in GENERATION_AUTO_CLASSES:
        assert auto_map[auto_class.__name__] == "modeling_multimodal_gpt.MultimodalGPTForConditionalGeneration"


@pytest.mark.parametrize(("vision", "audio"), [("vit", "whisper"), ("clip", "wav2vec2"), ("siglip", "hubert")])
def test_loading_keeps_what_the_build_froze(tmp_path, vision, audio):
    """ViT's pooler, CLIP's post-layernorm and SigLIP's pooling head are frozen at build (our features skip them), and
    Whisper freezes its sinusoidal positions; loading must not make them trainable again (DDP without
    find_unused_parameters would wait for the poolers' gradients)."""
    model = tiny_model(vision=vision, audio=audio)
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    assert any(".vision_tower." in name for name in frozen)
    model.save_pretrained(tmp_path)
    reloaded = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path)
    assert {name for name, parameter in reloaded.named_parameters() if not parameter.requires_grad} == frozen
    base, _ = MultimodalGPTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert {f"model.{name}" for name, parameter in base.named_parameters() if not parameter.requires_grad} == frozen


@pytest.mark.parametrize("vision", ["clip", "resnet"])
def test_local_round_trip_keeps_weights_and_tie(tmp_path, vision):
    model = tiny_model(vision=vision, fusion="cross_attention")
    open_gates(model)
    with torch.no_grad():  # a ResNet's batch-norm statistics are buffers, not parameters: moved off their defaults
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
    model.save_pretrained(tmp_path)
    reloaded = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight is reloaded.model.language_model.wte.weight
    for name, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_hub_files_follow_the_import_rule():
    """Hub files import only torch, transformers, huggingface_hub, the standard library and `from .sibling`."""
    # numpy is a hard dependency of transformers, so remote-code users always have it
    allowed = {"torch", "transformers", "huggingface_hub", "numpy"} | set(sys.stdlib_module_names)
    for name in HUB_FILES:
        tree = ast.parse((PACKAGE_DIR / name).read_text())
        # optional packages (soundfile, soxr) are imported under `try: ... except ImportError`
        optional = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Try) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    assert node.level == 1 and node.module and f"{node.module}.py" in HUB_FILES, (name, node.module)
                    continue
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{name} imports {roots}"


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["multimodal_gpt"] = None  # `import multimodal_gpt` now fails: only the folder's own code can run
    import torch, transformers
    from safetensors.torch import load_file, save_file
    folder, inputs_file, outputs_file = sys.argv[1:]
    inputs = load_file(inputs_file)
    results = {}
    for name in ["AutoModelForCausalLM", "AutoModelForImageTextToText", "AutoModelForMultimodalLM",
                 "AutoModelForSpeechSeq2Seq"]:
        model = getattr(transformers, name).from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            results[name] = model(**inputs).logits
    results["generated"] = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
    base = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(base).__name__ == "MultimodalGPTModel"
    save_file(results, outputs_file)
    """
)


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
def test_remote_code_round_trip_in_a_fresh_interpreter(tmp_path, fusion):
    model = tiny_model(fusion=fusion)
    open_gates(model)
    model.save_pretrained(tmp_path / "checkpoint")
    image_tokens = [IMAGE_TOKEN_ID] * model.config.num_image_tokens()
    audio_tokens = [AUDIO_TOKEN_ID] * model.config.num_audio_tokens(1600)
    input_ids = torch.tensor([[3, *image_tokens, 4, *audio_tokens, 5]])
    inputs = dict(input_ids=input_ids, pixel_values=image_input(1), **audio_input(model, 1600))
    save_file({key: value.contiguous() for key, value in inputs.items()}, tmp_path / "inputs.safetensors")
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_SCRIPT)
    args = [str(tmp_path / "checkpoint"), str(tmp_path / "inputs.safetensors"), str(tmp_path / "out.safetensors")]
    completed = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = load_file(tmp_path / "out.safetensors")
    with torch.no_grad():
        expected = model(**inputs).logits
    for auto_class in GENERATION_AUTO_CLASSES:
        torch.testing.assert_close(results[auto_class.__name__], expected, rtol=1e-6, atol=1e-6)
    expected_generation = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
    assert results["generated"].tolist() == expected_generation.tolist()
