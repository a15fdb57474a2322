"""Self-critical sequence training (`--self_critical_samples`, `multimodal_gpt.training.self_critical`): the
log-probabilities it trains are those the samples were drawn from (left-padded prompts, no dropout), each sample's
baseline is the mean reward of its row's others, a step moves the model towards the rewarded samples, the mixed
objective adds the weighted teacher-forced loss, the rewards are the tasks' metrics (CIDEr-D weighed by the training
references), and `multimodal-gpt train` runs it from a checkpoint, logging the reward, or refuses the flags it would
ignore."""

import io
import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from multimodal_gpt.data.collators import CaptioningCollator, TaskCollator, TranslationCollator
from multimodal_gpt.data.sources import training_references
from multimodal_gpt.data.tasks import get_task
from multimodal_gpt.training import DataArguments, ModelArguments, MultimodalTrainer
from multimodal_gpt.training.cli import train_main
from multimodal_gpt.training.metrics.scores import CiderD, cider
from multimodal_gpt.training.recipes import parse_arguments
from multimodal_gpt.training.self_critical import (
    TEACHER_FORCED,
    CaptionReward,
    SelfCritical,
    SentenceBleuReward,
    check_self_critical_arguments,
    task_reward,
    transcript_reward,
)
from tests.test_user_data import FEW_STEPS, write_imagefolder
from tests.tiny_models import tiny_processor_and_model

CAPTIONS = [["a red square", "red", "the red one"], ["a green square"], ["a blue square", "blue"], ["a grey square"]]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (90, 90, 90)]


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def caption_rows() -> list[dict]:
    return [{"image": png(colour), "captions": captions} for colour, captions in zip(COLOURS, CAPTIONS)]


def first_sample_reward(samples: int):
    """A reward of 1 for the first sample of each row, 0 for the others: it varies whatever a random model says."""

    def reward(predictions, references_list):
        return [1.0 if index % samples == 0 else 0.0 for index in range(len(predictions))]

    return reward


positional_reward = first_sample_reward(3)


def sampled(self_critical: SelfCritical, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """What `loss()` samples and scores, recomputed: the expanded prompts, the sampled sequences, the model inputs."""
    inputs = {key: value for key, value in batch.items() if key not in ("references", "row_indices", "skipped_rows")}
    input_ids, inputs = model._expand_inputs_for_generation(
        expand_size=self_critical.samples, input_ids=inputs.pop("input_ids"), **inputs
    )
    return input_ids, inputs


# ----- the loss ----------------------------------------------------------------------------------------------------


def test_the_log_probabilities_are_those_the_samples_were_drawn_from():
    """Left-padded prompts of different lengths: the forward pass must see the positions `generate()` gave them."""
    processor, model = tiny_processor_and_model(vision=None, audio=None)
    processor.tokenizer.padding_side = "left"
    task = get_task("translation", source_lang="en", target_lang="de")
    collator = TranslationCollator(processor, task=task, for_generation=True)
    self_critical = SelfCritical(collator=collator, reward=transcript_reward, samples=3, max_new_tokens=6)
    rows = [{"source": "a", "target": "x"}, {"source": "a much longer source sentence here", "target": "y"}]
    input_ids, inputs = sampled(self_critical, model, collator(rows))
    assert (inputs["attention_mask"] == 0).any()  # the short prompt is left-padded
    torch.manual_seed(0)
    out = model.generate(
        input_ids=input_ids,
        **inputs,
        generation_config=self_critical._sampling(model),
        output_logits=True,
        return_dict_in_generate=True,
    )
    outputs, mask = self_critical._new_tokens(out.sequences, input_ids.shape[1])
    log_probs = self_critical._log_probs(model, out.sequences, inputs, outputs, mask)
    expected = torch.stack([torch.log_softmax(step.float(), -1) for step in out.logits], 1)
    expected = expected.gather(-1, outputs[..., None]).squeeze(-1)
    assert mask.sum() > 0
    torch.testing.assert_close(log_probs * mask, expected * mask, atol=1e-5, rtol=1e-5)


def test_the_mask_counts_the_tokens_up_to_the_first_eos():
    processor, _ = tiny_processor_and_model(vision=None, audio=None)
    task = get_task("translation", source_lang="en", target_lang="de")
    self_critical = SelfCritical(TranslationCollator(processor, task=task, for_generation=True), transcript_reward, 2)
    eos, pad = processor.tokenizer.eos_token_id, processor.tokenizer.pad_token_id
    generated = torch.tensor([[7, 7, 5, eos, pad, pad], [7, 7, 5, 6, 8, 9], [7, 7, eos, pad, pad, pad]])
    outputs, mask = self_critical._new_tokens(generated, prompt_length=2)
    assert outputs.tolist() == generated[:, 2:].tolist()
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_each_baseline_is_the_mean_reward_of_the_rows_other_samples():
    processor, _ = tiny_processor_and_model(vision=None, audio=None)
    task = get_task("translation", source_lang="en", target_lang="de")
    self_critical = SelfCritical(TranslationCollator(processor, task=task, for_generation=True), transcript_reward, 3)
    advantages = self_critical._advantages(torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 3.0]))
    torch.testing.assert_close(advantages, torch.tensor([-1.5, 0.0, 1.5, -1.5, -1.5, 3.0]))


def test_a_step_makes_the_rewarded_samples_likelier_with_dropout_off():
    processor, model = tiny_processor_and_model(vision="vit", audio=None)
    model.config.text_config.resid_pdrop = 0.5  # dropout in the model, which sampling and scoring must not use
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    processor.tokenizer.padding_side = "left"
    collator = CaptioningCollator(processor, for_generation=True)
    self_critical = SelfCritical(collator=collator, reward=positional_reward, samples=3, max_new_tokens=4)
    batch = collator(caption_rows())
    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    generated = []
    generate = model.generate

    def recording_generate(*args, **kwargs):
        generated.append(generate(*args, **kwargs))
        return generated[-1]

    model.generate = recording_generate
    model.train()
    torch.manual_seed(0)
    loss = self_critical.loss(model, model, dict(batch))
    assert model.training and modes and not any(modes)  # sampled and scored in eval mode, then back to training
    assert self_critical.rewards == [1.0, 0.0, 0.0] * 4

    input_ids, inputs = sampled(self_critical, model, batch)
    outputs, mask = self_critical._new_tokens(generated[0], input_ids.shape[1])
    model.eval()
    with torch.no_grad():
        before = (self_critical._log_probs(model, generated[0], inputs, outputs, mask) * mask).sum(1)
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= 0.5 * parameter.grad
        after = (self_critical._log_probs(model, generated[0], inputs, outputs, mask) * mask).sum(1)
    change = (after - before).view(4, 3)
    assert (change[:, 0] > 0).all() and (change[:, 1:] < 0).all()


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_the_towers_encode_each_medium_once_and_get_every_samples_gradient(modality):
    """One step runs each tower once per image or clip (not once per sample in `generate()` and again in the scoring
    pass), and its gradient is the one the per-sample encoding gives: the sum over the samples of each medium."""
    if modality == "image":
        processor, model = tiny_processor_and_model(vision="vit", audio=None)
        collator = CaptioningCollator(processor, for_generation=True)
        rows, tower, num_media = caption_rows(), model.vision_tower, len(COLOURS)
    else:
        processor, model = tiny_processor_and_model(vision=None, audio="whisper")
        collator = TaskCollator(processor, task=get_task("asr"), for_generation=True)
        clips = [np.random.default_rng(seed).normal(0, 0.1, 4000 + 1000 * seed) for seed in range(3)]
        rows = [{"audio": {"array": clip, "sampling_rate": 16000}, "text": "a b"} for clip in clips]
        tower, num_media = model.audio_tower, 3
    processor.tokenizer.padding_side = "left"
    self_critical = SelfCritical(collator=collator, reward=first_sample_reward(3), samples=3, max_new_tokens=4)
    batch = collator(rows)
    encoded = []
    tower.register_forward_hook(lambda module, args, output: encoded.append(output.last_hidden_state.shape[0]))
    generated = []
    generate = model.generate
    model.generate = lambda *args, **kwargs: generated.append(generate(*args, **kwargs)) or generated[-1]
    model.train()
    torch.manual_seed(0)
    self_critical.loss(model, model, dict(batch)).backward()
    assert encoded == [num_media]  # once, for the generation and the scoring pass together
    fast = {name: parameter.grad.clone() for name, parameter in tower.named_parameters() if parameter.grad is not None}
    assert fast
    model.zero_grad()
    model.eval()  # the per-sample path: the raw media repeated, the tower run for every sample
    input_ids, inputs = sampled(self_critical, model, batch)
    outputs, mask = self_critical._new_tokens(generated[0], input_ids.shape[1])
    log_probs = self_critical._log_probs(model, generated[0], inputs, outputs, mask)
    advantages = self_critical._advantages(torch.tensor(self_critical.rewards))
    (-(advantages[:, None] * log_probs * mask).sum() / mask.sum()).backward()
    for name, parameter in tower.named_parameters():
        if name in fast:
            torch.testing.assert_close(fast[name], parameter.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_a_batch_without_a_usable_row_is_an_error():
    processor, model = tiny_processor_and_model(vision="vit", audio=None)
    collator = CaptioningCollator(processor, for_generation=True)
    self_critical = SelfCritical(collator=collator, reward=positional_reward, samples=3)
    batch = collator([{"image": b"not an image", "captions": ["a square"]}])
    with pytest.raises(ValueError, match="No row of the training batch"):
        self_critical.loss(model, model, dict(batch))


def test_self_critical_needs_a_generation_collator_and_two_samples():
    processor, _ = tiny_processor_and_model(vision="vit", audio=None)
    with pytest.raises(ValueError, match="for_generation=True"):
        SelfCritical(CaptioningCollator(processor), positional_reward)
    with pytest.raises(ValueError, match="at least 2 samples"):
        SelfCritical(CaptioningCollator(processor, for_generation=True), positional_reward, samples=1)


# ----- rewards -----------------------------------------------------------------------------------------------------


def test_cider_d_of_single_captions_weighs_ngrams_by_the_given_corpus():
    references = [["a cat sits"], ["a dog runs"], ["a bird flies"]]
    # Against the references' own corpus, the mean of the single scores is the corpus CIDEr-D.
    single = CiderD(references).scores(["a cat sits", "a dog sits", "a bird"], references)
    assert sum(single) / 3 == pytest.approx(cider(["a cat sits", "a dog sits", "a bird"], references))
    # "a" is in every training image's references: it weighs nothing, so "a" alone scores 0, and a caption that
    # matches the reference but for "a" keeps its score.
    reward = CaptionReward(references)
    assert reward(["a"], [["a cat sits"]]) == [0.0]
    assert reward(["cat sits"], [["a cat sits"]])[0] > 0
    # Another corpus, other weights: "cat" frequent in the training references, rare here.
    cats = CaptionReward([["a cat sits"], ["a cat runs"], ["a dog runs"]])
    assert cats(["a cat"], [["a cat sits"]])[0] < reward(["a cat"], [["a cat sits"]])[0]
    with pytest.raises(ValueError, match="at least 2"):
        CaptionReward([["a cat"]])


def test_each_task_has_its_reward():
    assert isinstance(task_reward(get_task("captioning"), [["a"], ["b"]]), CaptionReward)
    bleu = task_reward(get_task("translation", source_lang="en", target_lang="de"))
    assert isinstance(bleu, SentenceBleuReward)
    scores = bleu(["eine rote Katze", "ganz anders"], [["eine rote Katze"], ["eine rote Katze"]])
    assert scores == pytest.approx([1, 0])
    asr = task_reward(get_task("asr"))
    assert asr(["one two three", "one two"], [["One two three."], ["one two three"]]) == pytest.approx([1.0, 2 / 3])
    with pytest.raises(ValueError, match="not 'pretrain'"):
        task_reward(get_task("pretrain"))


def test_the_training_references_are_read_without_decoding_the_media():
    rows = Dataset.from_dict({"image": [b"not an image", b"nor this"], "captions": [["a", " b "], [""]]})
    assert training_references(rows, get_task("captioning")) == [["a", "b"]]


# ----- training ----------------------------------------------------------------------------------------------------


def self_critical_trainer(tmp_path, reward=None, **self_critical_kwargs) -> tuple[MultimodalTrainer, SelfCritical]:
    processor, model = tiny_processor_and_model(vision="vit", audio=None)
    processor.tokenizer.padding_side = "left"
    rows = Dataset.from_list(caption_rows())
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), report_to=[], remove_unused_columns=False, use_cpu=True, max_steps=2,
        per_device_train_batch_size=2, logging_steps=1, learning_rate=1e-2, save_strategy="no",
    )  # fmt: skip
    training_collator = CaptioningCollator(processor)
    self_critical = SelfCritical(
        CaptioningCollator(processor, for_generation=True),
        reward or CaptionReward(training_references(rows, get_task("captioning"))),
        samples=2,
        max_new_tokens=3,
        teacher_forced_collator=training_collator,
        **self_critical_kwargs,
    )
    trainer = MultimodalTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=training_collator,
        processing_class=processor,
        generation_collator=CaptioningCollator(processor, for_generation=True),
        self_critical=self_critical,
    )
    return trainer, self_critical


def test_the_trainer_trains_on_samples_and_logs_the_reward(tmp_path):
    trainer, self_critical = self_critical_trainer(tmp_path, reward=first_sample_reward(2))
    model = trainer.model
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(entry["reward"] == 0.5 for entry in logged)
    assert self_critical.collator.stats.rows >= 4 and trainer.data_collator.stats.rows == 0
    assert any(not torch.equal(before[name], parameter) for name, parameter in model.named_parameters())


def test_the_mixed_objective_adds_the_weighted_teacher_forced_loss(tmp_path):
    trainer, self_critical = self_critical_trainer(tmp_path, cross_entropy_weight=0.5)
    batch = self_critical(caption_rows())
    assert "labels" in batch[TEACHER_FORCED] and "references" in batch
    model = trainer.model
    torch.manual_seed(0)
    mixed = trainer.compute_loss(model, dict(batch))
    torch.manual_seed(0)
    alone = self_critical.loss(model, model, dict(batch))
    teacher_forced = model(**batch[TEACHER_FORCED]).loss
    assert mixed.item() == pytest.approx((alone + 0.5 * teacher_forced).item(), rel=1e-5)
    assert TEACHER_FORCED not in self_critical_trainer(tmp_path)[1](caption_rows())  # weight 0: no such batch
    with pytest.raises(ValueError, match="teacher_forced_collator"):
        SelfCritical(self_critical.collator, positional_reward, cross_entropy_weight=0.5)


def test_train_runs_self_critical_training_from_a_checkpoint(tmp_path):
    write_imagefolder(tmp_path / "photos")
    data = ["--task", "captioning", "--dataset_name", str(tmp_path / "photos")]
    train_main(["--output_dir", str(tmp_path / "captioning"), *FEW_STEPS, *data, "--do_train"])
    steps = [argument for argument in FEW_STEPS if argument not in ("--preset", "tiny", "--vocab_size", "300")]
    train_main(["--output_dir", str(tmp_path / "scst"), *steps, *data, "--model_name_or_path",
                str(tmp_path / "captioning"), "--self_critical_samples", "2"])  # fmt: skip
    results = json.loads((tmp_path / "scst" / "all_results.json").read_text())
    assert results["collator_rows"] == 3 and "eval_cider" in results  # 2 steps of 2 rows over the 3 images
    state = json.loads((tmp_path / "scst" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "reward" in entry] == [1, 2]


def parsed(*arguments: str):
    parser = HfArgumentParser((ModelArguments, DataArguments, Seq2SeqTrainingArguments))
    return parse_arguments(parser, ["--output_dir", "x", *arguments])


def test_self_critical_training_starts_from_a_checkpoint():
    given = ["--task", "captioning", "--self_critical_samples", "5"]
    check_self_critical_arguments(*parsed(*given, "--model_name_or_path", "c"))
    with pytest.raises(ValueError, match="give --model_name_or_path"):
        check_self_critical_arguments(*parsed(*given))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--self_critical_samples", "1"], "0 \\(off\\) or at least 2"),
        (["--task", "pretrain"], "not pretrain"),
        (["--image_crop_scale", "0.6"], "drop --image_crop_scale"),
        (["--label_smoothing_factor", "0.1"], "drop --label_smoothing_factor"),
        (["--media_loss_weight", "0.5"], "drop --media_loss_weight"),
        (["--media_loss_weight", "vision=0,audio=0.5"], "drop --media_loss_weight"),
        (["--packing"], "drop --packing"),
    ],
)
def test_flags_self_critical_training_would_ignore_are_refused(arguments, message):
    given = ["--task", "captioning", "--model_name_or_path", "c", "--self_critical_samples", "3", *arguments]
    with pytest.raises(ValueError, match=message):
        check_self_critical_arguments(*parsed(*given))


def test_the_flag_is_off_by_default_and_a_zero_media_loss_weight_passes():
    check_self_critical_arguments(*parsed("--task", "captioning", "--label_smoothing_factor", "0.1"))
    given = ["--task", "captioning", "--model_name_or_path", "c", "--self_critical_samples", "3"]
    for weight in ("0", "0.00", "vision=0"):  # the finetuning recipes' 0, which drops a checkpoint's media heads
        check_self_critical_arguments(*parsed(*given, "--media_loss_weight", weight))
    with pytest.raises(ValueError, match="give both"):
        check_self_critical_arguments(*parsed("--task", "captioning", "--self_critical_cross_entropy_weight", "0.1"))


def test_the_mixed_objective_takes_the_teacher_forced_losss_flags():
    given = ["--task", "captioning", "--model_name_or_path", "c", "--self_critical_samples", "3"]
    mixed = [*given, "--self_critical_cross_entropy_weight", "0.1", "--image_crop_scale", "0.6"]
    check_self_critical_arguments(*parsed(*mixed, "--label_smoothing_factor", "0.1"))
    with pytest.raises(ValueError, match="must be >= 0"):
        check_self_critical_arguments(*parsed(*given, "--self_critical_cross_entropy_weight", "-1"))
