"""Chat messages: the processor's chat template (LLaVA / Qwen2-Audio message format), the image-text-to-text and
any-to-any pipelines fed chat messages, and TRL's SFTTrainer on a messages-plus-images data set."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, pipeline

from multimodal_gpt import MultimodalGPTProcessor
from tests.tiny_models import tiny_processor_and_model

CAPTION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Caption:"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "a red square"}]},
]


def an_image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8))


def a_clip(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(1600).astype(np.float32)


def test_every_processor_has_a_chat_template_in_the_training_prompt_format(tmp_path):
    """Media where their items are, then the answer after one space and the end of text (multimodal_gpt.data.tasks)."""
    processor, _ = tiny_processor_and_model(fusion="mlp")
    assert processor.apply_chat_template(CAPTION) == "<image>Caption: a red square<|endoftext|>"
    audio_turn = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "Transcribe"}]}]
    assert processor.apply_chat_template(audio_turn, add_generation_prompt=True) == "<audio>Transcribe"
    assert processor.apply_chat_template([{"role": "user", "content": "plain text"}]) == "plain text"
    processor.save_pretrained(tmp_path)
    assert AutoProcessor.from_pretrained(tmp_path).apply_chat_template(CAPTION) == processor.apply_chat_template(
        CAPTION
    )


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
def test_apply_chat_template_returns_model_ready_inputs_with_media(fusion):
    processor, model = tiny_processor_and_model(fusion=fusion)
    image, clip = an_image(), a_clip()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": image},
                {"type": "audio", "audio": clip},
                {"type": "text", "text": "What is it?"},
            ],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_tensors="pt", add_generation_prompt=True
    )
    expected = processor(
        text="<image><audio>What is it?", images=image, audio=clip, sampling_rate=16000, return_tensors="pt"
    )
    assert inputs.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(inputs[key], value, rtol=0, atol=0, msg=key)
    generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, pad_token_id=0)
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_image_text_to_text_pipeline_takes_chat_messages():
    processor, model = tiny_processor_and_model(fusion="mlp", audio=None)
    chat = pipeline("image-text-to-text", model=model, processor=processor)
    messages = [{"role": "user", "content": [{"type": "image", "image": an_image()}, {"type": "text", "text": "Hi"}]}]
    output = chat(text=messages, max_new_tokens=3, min_new_tokens=3)
    answer = output[0]["generated_text"][-1]
    assert answer["role"] == "assistant" and isinstance(answer["content"], str) and answer["content"]


def test_any_to_any_pipeline_takes_chat_messages_with_audio():
    # a model without a vision tower: transformers' any-to-any pipeline asks for torchvision only for image models
    processor, model = tiny_processor_and_model(fusion="resampler", vision=None)
    chat = pipeline("any-to-any", model=model, processor=processor)
    messages = [{"role": "user", "content": [{"type": "audio", "audio": a_clip()}, {"type": "text", "text": "Hi"}]}]
    output = chat(text=messages, max_new_tokens=3, min_new_tokens=3)
    assert output[0]["generated_text"][-1]["role"] == "assistant"


def test_trl_sft_trainer_trains_on_messages_and_images(tmp_path):
    """TRL's SFTTrainer with the processor as `processing_class`: its vision-language collator renders the messages
    with the chat template and passes the images to the processor."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    processor, model = tiny_processor_and_model(fusion="mlp", audio=None)
    assert isinstance(processor, MultimodalGPTProcessor)
    rows = [
        {
            "images": [an_image(index)],
            "messages": [CAPTION[0], {**CAPTION[1], "content": [{"type": "text", "text": f"picture {index}"}]}],
        }
        for index in range(4)
    ]
    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        max_length=None,
        disable_tqdm=True,
        gradient_checkpointing=None,  # TRL's default (True) uses the name transformers 5 deprecates
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor)
    fusion_before = model.model.vision_fusion.layers[0].weight.clone()
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    assert not torch.equal(model.model.vision_fusion.layers[0].weight, fusion_before)
