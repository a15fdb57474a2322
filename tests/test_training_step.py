"""The standard Trainer: one optimizer step gives the same loss and update for batch 8 x accumulation 1 and batch 2 x
accumulation 4, with uneven label counts per sample (the loss goes through `self.loss_function` with
`num_items_in_batch`; VisionEncoderDecoderModel gets this wrong on transformers 5.24)."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, open_gates, tiny_model

PAD = 0


def make_samples(model) -> list[dict]:
    """8 samples: image, audio and text-only ones, with 1 to 12 labelled tokens each."""
    generator = torch.Generator().manual_seed(0)
    image_tokens = [IMAGE_TOKEN_ID] * model.config.num_image_tokens()
    audio_tokens = [AUDIO_TOKEN_ID] * model.config.num_audio_tokens(800)
    samples = []
    for index, num_labels in enumerate([1, 12, 3, 7, 2, 9, 5, 4]):
        target = torch.randint(1, 90, (num_labels,), generator=generator).tolist()
        media, prompt = {}, [1, 2]
        if index % 3 == 0:
            media, prompt = {"pixel_values": image_input(1, seed=index)}, [1, *image_tokens, 2]
        elif index % 3 == 1:
            media, prompt = audio_input(model, 800, seed=index), [1, *audio_tokens, 2]
        input_ids = prompt + target
        labels = [-100] * len(prompt) + target
        samples.append({"input_ids": input_ids, "labels": labels, **media})
    return samples


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    longest = max(len(sample["input_ids"]) for sample in samples)
    batch = {
        "input_ids": torch.tensor([s["input_ids"] + [PAD] * (longest - len(s["input_ids"])) for s in samples]),
        "labels": torch.tensor([s["labels"] + [-100] * (longest - len(s["labels"])) for s in samples]),
        "attention_mask": torch.tensor(
            [[1] * len(s["input_ids"]) + [0] * (longest - len(s["input_ids"])) for s in samples]
        ),
    }
    for key in ("pixel_values", "input_values", "input_values_mask"):
        media = [s[key] for s in samples if key in s]
        if media:
            batch[key] = torch.cat(media)
    return batch


def one_step(fusion: str, batch_size: int, accumulation: int, output_dir) -> tuple[float, dict[str, torch.Tensor]]:
    model = tiny_model(fusion=fusion, seed=0).train()
    open_gates(model)
    return one_sgd_step(model, make_samples(model), batch_size, accumulation, output_dir)


def one_sgd_step(
    model: torch.nn.Module, samples: list, batch_size: int, accumulation: int, output_dir, data_collator=collate
) -> tuple[float, dict[str, torch.Tensor]]:
    """One `Trainer` step of plain SGD (learning rate 1, no clipping) over `samples`: the logged loss and each
    parameter's update, to compare micro-batch layouts with the same data."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=1.0,
        optim="sgd",
        lr_scheduler_type="constant",
        max_grad_norm=0.0,  # no clipping: compare raw gradients
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=samples, data_collator=data_collator)
    trainer.train()
    updates = {name: before[name] - p.detach() for name, p in model.named_parameters()}
    return trainer.state.log_history[0]["loss"], updates


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
def test_gradient_accumulation_gives_the_same_loss_and_update(tmp_path, fusion):
    loss_full, update_full = one_step(fusion, batch_size=8, accumulation=1, output_dir=tmp_path / "full")
    loss_accumulated, update_accumulated = one_step(fusion, batch_size=2, accumulation=4, output_dir=tmp_path / "acc")
    assert loss_accumulated == pytest.approx(loss_full, rel=1e-5)
    assert any(update.abs().max() > 0 for update in update_full.values())
    for name, update in update_full.items():
        torch.testing.assert_close(update_accumulated[name], update, rtol=1e-4, atol=1e-6, msg=name)
