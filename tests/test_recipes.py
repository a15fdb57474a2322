"""Recipes (`--recipe`: defaults that flags override, recorded in recipe.json) and the training options they set:
per-module learning rates, staged training, checkpoint averaging, label smoothing, all with the standard Trainer."""

import json

import pytest
import torch
from transformers import HfArgumentParser, TrainingArguments

from multimodal_gpt.training import DataArguments, ModelArguments
from multimodal_gpt.training.averaging import average_checkpoints, last_checkpoints
from multimodal_gpt.training.cli import train_main
from multimodal_gpt.training.optimization import StagedTrainingCallback, module_group, parameter_groups
from multimodal_gpt.training.outputs import draw_training_curves, plot_training_curves
from multimodal_gpt.training.recipes import (
    available_recipes,
    check_training_options,
    load_recipe,
    media_loss_weight,
    parse_arguments,
    parse_config,
    write_recipe_record,
)
from multimodal_gpt.training.trainer import MultimodalTrainer
from tests.test_training_step import collate, make_samples
from tests.tiny_models import image_input, tiny_model

SHIPPED = ["asr", "captioning", "mmt", "pretrain", "translation"]


def parser() -> HfArgumentParser:
    return HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))


# ----- recipes ---------------------------------------------------------------------------------------------------


def test_every_task_has_a_recipe_and_each_parses_and_checks():
    assert available_recipes() == SHIPPED
    for name in SHIPPED:
        model_args, data_args, training_args = parse_arguments(parser(), ["--recipe", name, "--output_dir", "x"])
        assert model_args.recipe == name and data_args.task == load_recipe(name)["task"]
        check_training_options(model_args, training_args)


def test_flags_given_win_over_the_recipe_and_the_record_says_which():
    recipe = load_recipe("asr")
    arguments = ["--recipe", "asr", "--output_dir", "x", "--learning_rate", "0.123", "--max_steps", "7"]
    model_args, data_args, training_args = parse_arguments(parser(), arguments)
    assert training_args.learning_rate == 0.123 and training_args.max_steps == 7
    assert training_args.warmup_steps == recipe["warmup_steps"]  # not given: the recipe's
    assert data_args.spec_augment_time_masks == recipe["spec_augment_time_masks"]
    record = write_recipe_record("unused", None, model_args)
    assert record is None


def test_the_record_names_the_recipe_its_values_and_the_overrides(tmp_path):
    arguments = ["--recipe", "translation", "--output_dir", str(tmp_path), "--num_beams", "2"]
    parsed = parse_arguments(parser(), arguments)
    write_recipe_record(tmp_path, "translation", *parsed)
    record = json.loads((tmp_path / "recipe.json").read_text())
    assert record["recipe"] == "translation" and record["values"] == load_recipe("translation")
    assert record["overridden"] == {"num_beams": 2}


def test_a_recipe_file_and_a_config_file_naming_a_recipe(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("task: asr\nlearning_rate: 0.002\nmax_new_tokens: 6\n")
    model_args, data_args, training_args = parse_arguments(parser(), ["--recipe", str(recipe), "--output_dir", "x"])
    assert (data_args.task, training_args.learning_rate, data_args.max_new_tokens) == ("asr", 0.002, 6)
    _, data_args, training_args = parse_config(parser(), {"recipe": str(recipe), "output_dir": "x", "max_steps": 3})
    assert (data_args.task, training_args.max_steps, training_args.learning_rate) == ("asr", 3, 0.002)


@pytest.mark.parametrize(
    ("content", "message"), [("task: asr\nlearning_rat: 1.0\n", "not flags"), ("- a\n- b\n", "mapping")]
)
def test_bad_recipes_are_refused(tmp_path, content, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(content)
    with pytest.raises(ValueError, match=message):
        parse_arguments(parser(), ["--recipe", str(recipe), "--output_dir", "x"])
    with pytest.raises(ValueError, match="Unknown recipe"):
        load_recipe("no_such_recipe")


def test_media_loss_weight_flag():
    assert media_loss_weight(ModelArguments(media_loss_weight="0.5")) == 0.5
    assert media_loss_weight(ModelArguments(media_loss_weight="vision=0.5,audio=1")) == {"vision": 0.5, "audio": 1.0}
    with pytest.raises(ValueError, match="one per modality"):
        media_loss_weight(ModelArguments(media_loss_weight="vision:1"))


# ----- the optimizer ---------------------------------------------------------------------------------------------


def training_arguments(tmp_path, **overrides) -> TrainingArguments:
    values = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=4,
        learning_rate=0.1,
        optim="sgd",
        lr_scheduler_type="constant",
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
    )
    return TrainingArguments(**(values | overrides))


def test_module_groups_cover_every_trainable_parameter_once():
    model = tiny_model(vision="vit", audio="whisper", fusion="cross_attention")
    seen = {name: module_group(name) for name, p in model.named_parameters() if p.requires_grad}
    assert seen["model.vision_tower.embeddings.patch_embeddings.projection.weight"] == "towers"
    assert seen["model.language_model.wte.weight"] == "embeddings"  # the LM head is tied to it
    assert seen["model.language_model.h.0.gated_cross_attention.attention_gate"] == "fusion"
    assert seen["model.language_model.h.1.mlp.c_fc.weight"] == "language_model"
    groups = parameter_groups(
        model,
        learning_rate=1.0,
        weight_decay=0.1,
        decay_parameter_names={"model.language_model.h.1.mlp.c_fc.weight"},
        module_learning_rates={"towers": 0.5, "fusion": None},
    )
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    rates = {(group["module"], group["weight_decay"]): group["lr"] for group in groups}
    assert rates[("towers", 0.0)] == 0.5 and rates[("fusion", 0.0)] == 1.0 and rates[("language_model", 0.1)] == 1.0


def test_per_module_learning_rates_reach_the_optimizer(tmp_path):
    """With the towers' learning rate at 0 the towers do not move while the rest trains."""
    model = tiny_model(fusion="mlp").train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = MultimodalTrainer(
        model=model,
        args=training_arguments(tmp_path, max_steps=1),
        train_dataset=make_samples(model),
        data_collator=collate,
        module_learning_rates={"towers": 0.0, "embeddings": 0.01},
    )
    trainer.train()
    modules = [group["module"] for group in trainer.optimizer.param_groups]
    assert modules[0] == "language_model" and set(modules) == {"towers", "fusion", "embeddings", "language_model"}
    assert trainer.state.log_history[0]["learning_rate"] == 0.1  # the logged rate is --learning_rate's
    moved = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert not any(name.startswith("model.vision_tower.") for name in moved)
    assert "model.vision_fusion.layers.0.weight" in moved and "model.language_model.h.0.mlp.c_fc.weight" in moved


# ----- staged training -------------------------------------------------------------------------------------------


def test_staged_training_moves_only_the_fusion_first_then_everything(tmp_path):
    model = tiny_model(fusion="mlp").train()
    snapshots = [{name: p.detach().clone() for name, p in model.named_parameters()}]

    class Snapshot(StagedTrainingCallback.__base__):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append({name: p.detach().clone() for name, p in model.named_parameters()})

    trainer = MultimodalTrainer(
        model=model,
        args=training_arguments(tmp_path, optim="adamw_torch", weight_decay=0.1, learning_rate=0.01),
        train_dataset=make_samples(model),
        data_collator=collate,
        callbacks=[StagedTrainingCallback(2), Snapshot()],
    )
    trainer.train()
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(model.model.vision_tower.embeddings.patch_embedding.weight) in optimized  # frozen at first, yet there

    def moved(step: int, prefix: str) -> bool:
        return any(
            not torch.equal(snapshots[step][n], snapshots[step - 1][n]) for n in snapshots[0] if n.startswith(prefix)
        )

    for step in (1, 2):  # the fusion trains; towers and GPT-2 (weight decay included) do not
        assert moved(step, "model.vision_fusion.")
        assert not moved(step, "model.vision_tower.") and not moved(step, "model.language_model.")
    for step in (3, 4):
        assert moved(step, "model.vision_tower.") and moved(step, "model.language_model.")
    assert all(p.requires_grad for name, p in model.named_parameters() if name not in model._frozen_at_build)


def test_staged_training_flags_are_checked():
    arguments = TrainingArguments(output_dir="x", use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="drop one"):
        check_training_options(ModelArguments(train_only_fusion=True, train_only_fusion_steps=5), arguments)
    with pytest.raises(ValueError, match="at least 2"):
        check_training_options(ModelArguments(average_checkpoints=1), arguments)
    with pytest.raises(ValueError, match="save_strategy"):
        check_training_options(
            ModelArguments(average_checkpoints=2), TrainingArguments(output_dir="x", save_strategy="no", report_to=[])
        )


# ----- checkpoint averaging and label smoothing ------------------------------------------------------------------


def test_the_final_model_is_the_mean_of_the_last_checkpoints(tmp_path):
    model = tiny_model(vision="vit", fusion="mlp").train()  # ViT keys are renamed on disk
    trainer = MultimodalTrainer(
        model=model,
        args=training_arguments(tmp_path, save_strategy="steps", save_steps=1, save_total_limit=3),
        train_dataset=make_samples(model)[:4] * 2,
        data_collator=collate,
    )
    trainer.train()
    folders = last_checkpoints(tmp_path, 3)
    assert [folder.name for folder in folders] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    from multimodal_gpt import MultimodalGPTForConditionalGeneration

    saved = [MultimodalGPTForConditionalGeneration.from_pretrained(folder).state_dict() for folder in folders]
    average_checkpoints(model, folders)
    name = "model.vision_tower.layers.0.attention.q_proj.weight"
    assert not torch.equal(saved[0][name], saved[2][name])
    torch.testing.assert_close(model.state_dict()[name], sum(state[name] for state in saved) / 3)
    with pytest.raises(ValueError, match="completed checkpoint"):
        last_checkpoints(tmp_path, 4)


def test_label_smoothing_factor_goes_into_the_models_loss(tmp_path):
    model = tiny_model(fusion="mlp")
    model.config.label_smoothing = 0.3  # as a checkpoint trained with smoothing would have it
    trainer = MultimodalTrainer(model=model, args=training_arguments(tmp_path, label_smoothing_factor=0.1))
    assert trainer.label_smoother is None and model.config.label_smoothing == 0.1
    MultimodalTrainer(model=model, args=training_arguments(tmp_path))
    assert model.config.label_smoothing == 0.0


# ----- a recipe run end to end -----------------------------------------------------------------------------------


def test_a_run_with_every_recipe_option(tmp_path):
    """Pretraining on synthetic data with media prediction, augmentation, staged training, per-module learning
    rates, label smoothing and checkpoint averaging: the run trains, averages and records its recipe."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps(
            {
                "task": "pretrain",
                "preset": "tiny",
                "media_loss_weight": "1.0",
                "spec_augment_time_masks": 1,
                "image_crop_scale": 0.7,
                "image_horizontal_flip": True,
                "train_only_fusion_steps": 1,
                "tower_learning_rate": 0.0005,
                "label_smoothing_factor": 0.1,
                "average_checkpoints": 2,
                "save_strategy": "steps",
                "save_steps": 1,
            }
        )
    )
    output_dir = tmp_path / "run"
    results = train_main(
        ["--recipe", str(recipe), "--output_dir", str(output_dir), "--dataset_name", "synthetic",
         "--max_train_samples", "16", "--max_steps", "3", "--per_device_train_batch_size", "4",
         "--per_device_eval_batch_size", "4", "--max_eval_samples", "4", "--vocab_size", "300", "--use_cpu",
         "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1"]
    )  # fmt: skip
    assert results["train_loss"] > 0 and "eval_loss" in results
    record = json.loads((output_dir / "recipe.json").read_text())
    assert record["values"]["average_checkpoints"] == 2 and "max_steps" not in record["overridden"]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["media_loss_weight"] == {"vision": 1.0, "audio": 1.0} and config["label_smoothing"] == 0.1


# ----- training curves -------------------------------------------------------------------------------------------


def test_the_loss_curve_plot_draws_the_validation_metric_on_a_second_axis(tmp_path):
    history = [
        {"step": 10, "loss": 3.0},
        {"step": 20, "loss": 2.0},
        {"step": 20, "eval_loss": 2.5, "epoch": 1.0},
        {"step": 20, "eval_wer": 0.4, "eval_cer": 0.3},
        {"step": 40, "loss": 1.5},
        {"step": 40, "eval_wer": 0.2, "eval_cer": 0.1},
    ]
    figure = draw_training_curves(history, "asr")
    axes = figure.get_axes()
    assert len(axes) == 2 and axes[1].get_ylabel() == "validation wer"
    (line,) = axes[1].get_lines()
    assert list(line.get_xdata()) == [20, 40] and list(line.get_ydata()) == [0.4, 0.2]
    legend = [text.get_text() for text in axes[0].get_legend().get_texts()]
    assert legend == ["train loss", "eval loss", "validation wer"]
    assert len(draw_training_curves(history[:3]).get_axes()) == 1  # no metric logged: the losses alone
    assert plot_training_curves(history, tmp_path / "curve.png").is_file()


def test_the_loss_curve_plot_draws_the_reward_of_self_critical_training_on_a_third_axis():
    history = [
        {"step": 10, "loss": -0.02, "reward": 0.1},
        {"step": 20, "loss": -0.01, "reward": 0.2},
        {"step": 20, "eval_cider": 0.23},
    ]
    axes = draw_training_curves(history, "captioning").get_axes()
    assert [axis.get_ylabel() for axis in axes] == ["loss", "validation cider", "train reward"]
    (line,) = axes[2].get_lines()
    assert list(line.get_xdata()) == [10, 20] and list(line.get_ydata()) == [0.1, 0.2]
    assert len(draw_training_curves(history[:2]).get_axes()) == 2  # no metric logged: the losses and the reward


def test_evaluation_batches_are_never_augmented(tmp_path):
    from multimodal_gpt.data.augment import Augmentation
    from multimodal_gpt.data.collators import CaptioningCollator
    from tests.tiny_models import tiny_processor_and_model

    processor, model = tiny_processor_and_model(audio=None)
    collator = CaptioningCollator(processor=processor, augmentation=Augmentation(crop_scale=0.5))
    rows = [{"image": image_input(1)[0].permute(1, 2, 0).abs().mul(100).byte().numpy(), "captions": ["a cat"]}] * 4
    trainer = MultimodalTrainer(
        model=model,
        args=training_arguments(tmp_path, remove_unused_columns=False),
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=collator,
    )
    assert trainer.get_train_dataloader().collate_fn.augmentation is not None
    evaluation_collator = trainer.get_eval_dataloader().collate_fn
    assert evaluation_collator.augmentation is None and trainer.data_collator is collator
    # the Trainer's generation loop (evaluate() / predict() with generation) builds its own loader: unaugmented too
    generation_loader = trainer._evaluation_dataloader(rows)
    assert generation_loader.collate_fn.loss_collator.augmentation is None and trainer.data_collator is collator
