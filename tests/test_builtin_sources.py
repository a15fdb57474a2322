"""The built-in corpora as named sources (`--dataset_name fsdd / read_speech / multi30k / flickr8k / synthetic`, or
none): the README recipes must see exactly the rows, tokenizer text and batches they saw before the sources were
rebuilt, and every split of a folder is selectable."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from transformers import TrainingArguments, set_seed

from multimodal_gpt.data.collators import COLLATORS
from multimodal_gpt.data.corpora import default_data_dir
from multimodal_gpt.data.sources import load_task_data, training_texts
from multimodal_gpt.training import DataArguments
from multimodal_gpt.training.presets import build_model_and_processor
from multimodal_gpt.training.trainer import MultimodalTrainer

# (rows, fingerprint) of every split and the fingerprint of the tokenizer's training text, recorded with the loaders
# of commit 6a1e5bc (`load_task_splits`, before the sources were rebuilt) on ../shared/data. The splits named there
# `test` are Multi30k's `test_2016_flickr`.
BEFORE = {
    "asr": ({"train": (2400, "b8c3d76acf205d6a"), "validation": (300, "76a0dae5dadd5027")}, "f7f663fb8b8e86f3"),
    "asr read_speech": (
        {"train": (121, "f24ef513bed04dd9"), "validation": (20, "bc32dd04a8c51242")},
        "c770101805133838",
    ),
    "translation": (
        {"train": (29000, "5301ad604b8b4d65"), "validation": (1014, "116819748b9e4936"),
         "test_2016_flickr": (1000, "a65f4f005ed567d0")},
        "aff89cbf824595ea",
    ),
    "captioning": ({"train": (800, "4926334bcac06aff"), "validation": (100, "3b6ad6d34a31581a")}, "b274ad96c0e0313a"),
    "mmt": ({"train": (788, "e43e20c6e86e0e15"), "validation": (27, "2a86521446110439")}, "e7af3c4cbe47c0f8"),
    "pretrain": ({"train": (64521, "af9cd06cd8d29d23"), "validation": (2848, "5a074652fd74edb4")}, "49fb858e09bb215e"),
    "captioning synthetic": (
        {"train": (3000, "7314724cd656bf2b"), "validation": (200, "bd7c416ee27aa68e"),
         "test": (200, "7c990cb8c3d12224")},
        "ce219992cad15a76",
    ),
}  # fmt: skip


def canonical(value, data_dir: str):
    """A row value as JSON, independent of where the data folder is; media content hashed. An undecoded image
    (`{"bytes", "path"}`) counts as the picture `datasets` decoded from it before."""
    if isinstance(value, dict) and set(value) == {"bytes", "path"} and value["bytes"] is not None:
        value = Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, Image.Image):
        return [value.mode, list(value.size), hashlib.sha256(value.tobytes()).hexdigest()]
    if isinstance(value, np.ndarray):
        return [str(value.dtype), list(value.shape), hashlib.sha256(value.tobytes()).hexdigest()]
    if isinstance(value, str) and value.startswith(data_dir):
        return "$DATA" + value[len(data_dir) :]
    if isinstance(value, list):
        return [canonical(item, data_dir) for item in value]
    if isinstance(value, dict):
        return {key: canonical(item, data_dir) for key, item in value.items()}
    return value


def fingerprint(rows, data_dir: str) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(canonical(row, data_dir), sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("case", sorted(BEFORE))
def test_the_built_in_corpora_give_the_rows_they_gave_before(case, data_dir):
    task, _, dataset_name = case.partition(" ")
    splits, texts = BEFORE[case]
    names = [name for name in splits if name != "train"]
    data = load_task_data(DataArguments(task=task, dataset_name=dataset_name or None, eval_split_name=names))
    loaded = {"train": data.train, **data.evaluation}
    root = str(default_data_dir())
    assert {name: (len(split), fingerprint(split, root)) for name, split in loaded.items()} == splits
    assert hashlib.sha256("\n".join(training_texts(data.train, data.task)).encode()).hexdigest()[:16] == texts


def batch_fingerprint(batch) -> str:
    digest = hashlib.sha256()
    for key in sorted(batch):
        digest.update(key.encode() + str(tuple(batch[key].shape)).encode())
        digest.update(batch[key].contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def test_readme_recipe_1_sees_the_batches_it_saw_before(data_dir, tmp_path):
    """README recipe (1), FSDD with the small preset: the Trainer's first training batches and first evaluation batch
    are those of commit 6a1e5bc (same rows, same tokenizer, same order), so its validation WER cannot move."""
    data = load_task_data(DataArguments(task="asr"))
    model, processor = build_model_and_processor("small", texts=training_texts(data.train, data.task), max_length=256)
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=32, per_device_eval_batch_size=32, use_cpu=True,
        remove_unused_columns=False, report_to="none",
    )  # fmt: skip
    collator = COLLATORS["asr"](processor=processor, task=data.task, max_length=256)
    trainer = MultimodalTrainer(model=model, args=arguments, train_dataset=data.train,
                                eval_dataset=data.evaluation["validation"], data_collator=collator)  # fmt: skip
    set_seed(arguments.seed)
    batches = iter(trainer.get_train_dataloader())
    assert [batch_fingerprint(next(batches)) for _ in range(2)] == ["3339031bdd46643b", "1d1090426bb47319"]
    assert batch_fingerprint(next(iter(trainer.get_eval_dataloader()))) == "2eb8f7b09c34237e"


# ----- every split of a folder, and FSDD's validation carve-out --------------------------------------------------


def write_fsdd(folder: Path, splits: dict[str, range]) -> None:
    for split, recordings in splits.items():
        (folder / "fsdd" / split).mkdir(parents=True)
        for recording in recordings:
            clip = np.zeros(800, dtype=np.float32)
            soundfile.write(folder / "fsdd" / split / f"{recording % 10}_anna_{recording}.wav", clip, 8000)


def test_fsdd_is_split_by_recording_only_without_a_validation_folder(tmp_path):
    write_fsdd(tmp_path / "carved", {"train": range(40, 50), "test": range(3)})
    carved = load_task_data(DataArguments(task="asr", data_dir=str(tmp_path / "carved"), eval_split_name=["test"]))
    assert sorted(carved.train["recording"]) == list(range(40, 45))
    assert sorted(carved.evaluation["test"]["recording"]) == [0, 1, 2]
    validation = load_task_data(DataArguments(task="asr", data_dir=str(tmp_path / "carved")), train=False)
    assert sorted(validation.evaluation["validation"]["recording"]) == list(range(45, 50))

    write_fsdd(tmp_path / "own", {"train": range(40, 50), "validation": range(5)})
    own = load_task_data(DataArguments(task="asr", data_dir=str(tmp_path / "own")))
    assert sorted(own.train["recording"]) == list(range(40, 50))
    assert sorted(own.evaluation["validation"]["recording"]) == list(range(5))


def test_a_flickr8k_caption_given_as_a_string_is_one_caption(tmp_path):
    (tmp_path / "flickr8k" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "flickr8k" / "images" / "a.jpg")
    record = {"image": "a.jpg", "flickr8k_captions": "a black square"}
    (tmp_path / "flickr8k" / "val.jsonl").write_text(json.dumps(record) + "\n")
    data = load_task_data(DataArguments(task="captioning", data_dir=str(tmp_path)), train=False)
    assert data.evaluation["validation"][0]["captions"] == ["a black square"]
    assert data.task.references(data.evaluation["validation"][0]) == ["a black square"]
