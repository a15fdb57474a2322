"""Users' own data through the real scripts (a few steps, tiny preset): any `datasets` source, any split, any columns;
bad input that fails early and says where; predictions that stay aligned with their rows; resume with the run's own
tokenizer. The built-in corpora's rows are checked against the loaders before issue 9 in test_builtin_sources.py."""

import gzip
import io
import json
import shutil
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pytest
import soundfile
from datasets.packaged_modules.parquet.parquet import Parquet
from PIL import Image
from transformers import GenerationConfig

from multimodal_gpt import MultimodalGPTForConditionalGeneration
from multimodal_gpt.data.sources import load_task_data
from multimodal_gpt.training import DataArguments
from multimodal_gpt.training.cli import evaluate_main, train_main

FEW_STEPS = [
    "--max_steps", "2", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
    "--max_new_tokens", "3", "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true",
    "--logging_steps", "1", "--preset", "tiny", "--vocab_size", "300",
]  # fmt: skip
WORDS = ["zero", "one", "two", "three", "four", "five"]


def run_train(output_dir: Path, *arguments: str) -> dict:
    return train_main(["--output_dir", str(output_dir), *FEW_STEPS, *arguments])


def predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ----- writing data the way users have it --------------------------------------------------------------------------


def tone(seconds: float, rate: int = 8000, pitch: float = 220.0) -> np.ndarray:
    time = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch * time)).astype(np.float32)


def wav_bytes(seconds: float, rate: int = 8000, pitch: float = 220.0) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, rate, pitch), rate, format="WAV")
    return buffer.getvalue()


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_audiofolder(folder: Path, splits: dict[str, int], *, seconds=(0.4, 0.6)) -> None:
    """`<split>/metadata.csv` (`file_name,transcription`) and the clips: the Hugging Face audiofolder layout."""
    for split, count in splits.items():
        (folder / split / "clips").mkdir(parents=True)
        lines = ["file_name,transcription"]
        for index in range(count):
            name = f"clips/{split}_{index}.wav"
            duration = seconds[index % len(seconds)]
            soundfile.write(folder / split / name, tone(duration, pitch=200 + 40 * index), 8000)
            lines.append(f"{name},{WORDS[index % len(WORDS)]}")
        (folder / split / "metadata.csv").write_text("\n".join(lines) + "\n")


def write_imagefolder(folder: Path) -> None:
    """`train/` with 5 captions per image (a list), `validation/` with 1 caption per image (a plain string)."""
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for split in ("train", "validation"):
        (folder / split).mkdir(parents=True)
        records = []
        for name, colour in colours.items():
            Image.new("RGB", (16, 12), colour).save(folder / split / f"{name}.png")
            captions = [f"a {name} square", f"{name}", f"the {name} picture", f"all {name}", f"a {name} thing"]
            records.append({"file_name": f"{name}.png", "captions": captions if split == "train" else captions[0]})
        (folder / split / "metadata.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))


PAIRS = [("a red cat", "eine rote Katze", "un chat rouge"), ("a big dog", "ein großer Hund", "un grand chien"),
         ("two birds", "zwei Vögel", "deux oiseaux"), ("the sun", "die Sonne", "le soleil")]  # fmt: skip


def write_translation_jsonl(path: Path) -> None:
    """Rows `{"translation": {"en": ..., "de": ..., "fr": ...}}`, as Hub translation data sets have them."""
    rows = [{"translation": {"en": en, "de": de, "fr": fr}} for en, de, fr in PAIRS]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


# ----- every source, through train.py ------------------------------------------------------------------------------


def test_audiofolder_with_metadata_csv(tmp_path):
    write_audiofolder(tmp_path / "speech", {"train": 4, "test": 3})
    results = run_train(
        tmp_path / "run", "--task", "asr", "--dataset_name", str(tmp_path / "speech"),
        "--text_column_name", "transcription", "--eval_split_name", "test",
    )  # fmt: skip
    assert results["train_samples"] == 4 and results["test_samples"] == 3 and results["test_skipped_rows"] == 0
    lines = predictions(tmp_path / "run" / "predictions_test.jsonl")
    assert [line["references"] for line in lines] == [["zero"], ["one"], ["two"]]
    assert [line["input"] for line in lines] == [str(tmp_path / "speech" / "test" / "clips" / f"test_{index}.wav")
                                                 for index in range(3)]  # fmt: skip


def test_imagefolder_with_five_captions_and_one_caption_per_image(tmp_path):
    write_imagefolder(tmp_path / "photos")
    results = run_train(tmp_path / "run", "--task", "captioning", "--dataset_name", str(tmp_path / "photos"))
    assert results["train_samples"] == 3 and results["eval_samples"] == 3
    # one caption given as a string is one reference, not a list of its characters
    lines = predictions(tmp_path / "run" / "predictions_validation.jsonl")
    assert [line["references"] for line in lines] == [["a red square"], ["a green square"], ["a blue square"]]


def test_csv_of_sentence_pairs(tmp_path):
    lines = ["english,german"] + [f'"{en}","{de}"' for en, de, _ in PAIRS]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(tmp_path / "pairs.csv", tmp_path / "dev.csv")
    results = run_train(
        tmp_path / "run", "--task", "translation", "--train_file", str(tmp_path / "pairs.csv"),
        "--validation_file", str(tmp_path / "dev.csv"), "--source_column", "english", "--target_column", "german",
    )  # fmt: skip
    assert results["train_samples"] == 4 and results["eval_samples"] == 4
    first = predictions(tmp_path / "run" / "predictions_validation.jsonl")[0]
    assert first["input"] == "a red cat" and first["references"] == ["eine rote Katze"]


def test_json_lines_with_a_translation_dict_column_streamed(tmp_path):
    write_translation_jsonl(tmp_path / "train.jsonl")
    write_translation_jsonl(tmp_path / "validation.jsonl")
    results = run_train(
        tmp_path / "run", "--task", "translation", "--train_file", str(tmp_path / "train.jsonl"),
        "--validation_file", str(tmp_path / "validation.jsonl"), "--source_lang", "en", "--target_lang", "fr",
        "--streaming",
    )  # fmt: skip
    assert "train_samples" not in results  # a stream has no length; it trained its 2 steps
    assert results["eval_samples"] == 4
    lines = predictions(tmp_path / "run" / "predictions_validation.jsonl")
    assert [(line["input"], line["references"]) for line in lines] == [(en, [fr]) for en, _, fr in PAIRS]
    with pytest.raises(ValueError, match=r"--streaming gives a training split of unknown length"):
        run_train(tmp_path / "again", "--task", "translation", "--train_file", str(tmp_path / "train.jsonl"),
                  "--streaming", "--max_steps", "-1", "--do_train")  # fmt: skip


def test_parquet_with_embedded_image_bytes(tmp_path):
    for split, colours in (("train", [(200, 0, 0), (0, 200, 0)]), ("validation", [(0, 0, 200)])):
        rows = {"picture": [{"bytes": png_bytes(colour), "path": None} for colour in colours],
                "caption": [f"colour {index}" for index in range(len(colours))]}  # fmt: skip
        table = datasets.Dataset.from_dict(rows).cast_column("picture", datasets.Image(decode=False))
        table.to_parquet(tmp_path / f"{split}.parquet")
    results = run_train(
        tmp_path / "run", "--task", "captioning", "--train_file", str(tmp_path / "train.parquet"),
        "--validation_file", str(tmp_path / "validation.parquet"), "--image_column", "picture",
        "--caption_column", "caption",
    )  # fmt: skip
    assert results["train_samples"] == 2 and results["eval_samples"] == 1 and results["eval_skipped_rows"] == 0


def save_speech_to_disk(folder: Path) -> None:
    """A `DatasetDict` with an `Audio(decode=False)` column of WAV bytes at 8 and 16 kHz, splits `fit` and `dev`."""
    splits = {}
    for split, count in (("fit", 4), ("dev", 2)):
        audio = [{"bytes": wav_bytes(0.5, rate=8000 * (1 + index % 2)), "path": None} for index in range(count)]
        table = datasets.Dataset.from_dict({"speech": audio, "sentence": WORDS[:count]})
        splits[split] = table.cast_column("speech", datasets.Audio(decode=False))
    datasets.DatasetDict(splits).save_to_disk(folder)


def test_save_to_disk_dataset_dict_with_other_split_names(tmp_path):
    save_speech_to_disk(tmp_path / "saved")
    results = run_train(
        tmp_path / "run", "--task", "asr", "--dataset_name", str(tmp_path / "saved"), "--train_split_name", "fit",
        "--eval_split_name", "dev", "fit", "--audio_column_name", "speech", "--text_column_name", "sentence",
    )  # fmt: skip
    assert results["train_samples"] == 4 and results["dev_samples"] == 2 and results["fit_samples"] == 4
    assert {"predictions_dev.jsonl", "predictions_fit.jsonl"} <= {path.name for path in (tmp_path / "run").iterdir()}
    with pytest.raises(
        ValueError, match=r"Unknown split 'validation' of .*saved: available splits are \['dev', 'fit'\]"
    ):
        columns = ["--audio_column_name", "speech", "--text_column_name", "sentence"]
        run_train(tmp_path / "again", "--task", "asr", "--dataset_name", str(tmp_path / "saved"),
                  "--train_split_name", "fit", *columns)  # fmt: skip


@pytest.fixture
def offline_hub(monkeypatch):
    """No Hub access: `datasets` must find Hub data sets in the local cache (and fails if it tries the network)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def cache_hub_dataset(cache_dir: Path, repo_id: str, splits: dict[str, datasets.Dataset]) -> None:
    """Leaves `repo_id` in a `datasets` cache folder as a past `load_dataset(repo_id)` would have (the Parquet files
    prepared as Arrow under `<namespace>___<name>/default/0.0.0/<hash>`), without the network."""
    files = {}
    for split, table in splits.items():
        files[split] = str(cache_dir.parent / f"{split}.parquet")
        table.to_parquet(files[split])
    namespace, name = repo_id.split("/")
    Parquet(cache_dir=str(cache_dir), dataset_name=name, config_id="default", data_files=files, hash="0123abcd"
            ).download_and_prepare()  # fmt: skip
    (cache_dir / name).rename(cache_dir / f"{namespace}___{name}")


def test_hub_id_loads_from_the_local_cache_offline(tmp_path, offline_hub):
    audio = [{"bytes": wav_bytes(0.5), "path": "clip.wav"}] * 3
    table = datasets.Dataset.from_dict({"audio": audio, "text": WORDS[:3]}).cast_column("audio", datasets.Audio())
    cache_hub_dataset(tmp_path / "cache", "someone/tiny_speech", {"train": table, "validation": table.select([0, 1])})
    results = run_train(tmp_path / "run", "--task", "asr", "--dataset_name", "someone/tiny_speech",
                        "--cache_dir", str(tmp_path / "cache"))  # fmt: skip
    assert results["train_samples"] == 3 and results["eval_samples"] == 2
    with pytest.raises(ValueError, match="(?s)someone/not_cached.*local cache"):
        run_train(tmp_path / "none", "--task", "asr", "--dataset_name", "someone/not_cached",
                  "--cache_dir", str(tmp_path / "cache"))  # fmt: skip


def test_duration_filters_drop_training_clips(tmp_path):
    write_audiofolder(tmp_path / "speech", {"train": 4, "validation": 1}, seconds=(0.3, 1.2))
    arguments = dict(task="asr", dataset_name=str(tmp_path / "speech"), text_column_name="transcription")
    short = load_task_data(DataArguments(**arguments, max_duration_in_seconds=1.0), evaluation=False).train
    long = load_task_data(DataArguments(**arguments, min_duration_in_seconds=1.0), evaluation=False).train
    assert [Path(path).name for path in short["audio"]] == ["train_0.wav", "train_2.wav"]
    assert [Path(path).name for path in long["audio"]] == ["train_1.wav", "train_3.wav"]
    everything = load_task_data(DataArguments(**arguments, max_duration_in_seconds=1.0), train=False)
    assert len(everything.evaluation["validation"]) == 1  # evaluation rows are never filtered


# ----- evaluate_model.py: any split, no training split needed ----------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny model trained for 2 steps: it has both towers, so it can be scored on every task."""
    folder = tmp_path_factory.mktemp("checkpoint")
    write_audiofolder(folder / "speech", {"train": 4, "validation": 1})
    run_train(folder / "asr", "--task", "asr", "--dataset_name", str(folder / "speech"),
              "--text_column_name", "transcription", "--do_train")  # fmt: skip
    return folder / "asr"


def run_evaluate(checkpoint: Path, output_file: Path, *arguments: str) -> dict:
    return evaluate_main(["--model_name_or_path", str(checkpoint), "--output_file", str(output_file),
                          "--max_new_tokens", "3", *arguments])  # fmt: skip


def write_test_only_corpora(root: Path) -> None:
    """The built-in layouts holding only held-out test splits: `fsdd/test/`, `multi30k/test_2017_flickr.*.gz`,
    `flickr8k/holdout.jsonl`."""
    (root / "fsdd" / "test").mkdir(parents=True)
    for digit in range(3):
        soundfile.write(root / "fsdd" / "test" / f"{digit}_anna_{digit}.wav", tone(0.4, pitch=150 + 50 * digit), 8000)
    (root / "multi30k").mkdir()
    for index, lang in enumerate(("en", "de")):
        with gzip.open(root / "multi30k" / f"test_2017_flickr.{lang}.gz", "wt", encoding="utf-8") as file:
            file.write("".join(pair[index] + "\n" for pair in PAIRS))
    (root / "flickr8k" / "images").mkdir(parents=True)
    Image.new("RGB", (20, 20), (90, 90, 0)).save(root / "flickr8k" / "images" / "1_a.jpg")
    record = {"image": "1_a.jpg", "flickr8k_captions": ["a yellow square", "yellow"], "split": "holdout"}
    (root / "flickr8k" / "holdout.jsonl").write_text(json.dumps(record) + "\n")


@pytest.mark.parametrize(
    ("task", "dataset_name", "split", "references"),
    [
        ("asr", "fsdd", "test", [["zero"], ["one"], ["two"]]),
        ("translation", "multi30k", "test_2017_flickr", [[de] for _, de, _ in PAIRS]),
        ("captioning", "flickr8k", "holdout", [["a yellow square", "yellow"]]),
    ],
)
def test_evaluate_a_folder_that_holds_only_a_test_split(checkpoint, tmp_path, task, dataset_name, split, references):
    write_test_only_corpora(tmp_path / "data")
    metrics = run_evaluate(
        checkpoint, tmp_path / "scores.json", "--task", task, "--dataset_name", dataset_name,
        "--data_dir", str(tmp_path / "data"), "--eval_split_name", split,
    )  # fmt: skip
    assert metrics[f"{split}_samples"] == len(references) and metrics[f"{split}_skipped_rows"] == 0
    lines = predictions(tmp_path / f"scores_predictions_{split}.jsonl")
    assert [line["references"] for line in lines] == references


def test_evaluate_decodes_with_a_given_generation_config(checkpoint, tmp_path, monkeypatch):
    GenerationConfig(num_beams=2, length_penalty=0.0, max_new_tokens=2).save_pretrained(tmp_path / "decoding")
    used = []
    generate = MultimodalGPTForConditionalGeneration.generate

    def recording_generate(model, *args, **kwargs):
        used.append(model.generation_config)
        return generate(model, *args, **kwargs)

    monkeypatch.setattr(MultimodalGPTForConditionalGeneration, "generate", recording_generate)
    write_translation_jsonl(tmp_path / "test.jsonl")
    evaluate_main(["--model_name_or_path", str(checkpoint), "--output_file", str(tmp_path / "scores.json"),
                   "--task", "translation", "--test_file", str(tmp_path / "test.jsonl"), "--eval_split_name", "test",
                   "--generation_config", str(tmp_path / "decoding")])  # fmt: skip
    settings = {(config.num_beams, config.length_penalty, config.max_new_tokens) for config in used}
    assert settings == {(2, 0.0, 2)}
    saved = GenerationConfig.from_pretrained(checkpoint)
    assert {config.eos_token_id for config in used} == {saved.eos_token_id} and saved.eos_token_id is not None


def test_evaluate_a_stream(checkpoint, tmp_path):
    write_translation_jsonl(tmp_path / "test.jsonl")
    metrics = run_evaluate(checkpoint, tmp_path / "scores.json", "--task", "translation", "--test_file",
                           str(tmp_path / "test.jsonl"), "--eval_split_name", "test", "--streaming",
                           "--max_eval_samples", "3")  # fmt: skip
    assert metrics["test_samples"] == 3
    assert [line["input"] for line in predictions(tmp_path / "scores_predictions_test.jsonl")] == [
        en for en, _, _ in PAIRS[:3]
    ]


def test_predictions_stay_aligned_around_a_corrupt_row(checkpoint, tmp_path):
    (tmp_path / "clips").mkdir()
    rows = []
    for index, word in enumerate(WORDS[:5]):
        path = tmp_path / "clips" / f"{word}.wav"
        path.write_bytes(b"RIFF, but not a WAV file" if index == 2 else wav_bytes(0.4, pitch=150 + 30 * index))
        rows.append({"audio": f"clips/{word}.wav", "text": word})
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    metrics = run_evaluate(checkpoint, tmp_path / "scores.json", "--task", "asr", "--test_file",
                           str(tmp_path / "test.jsonl"), "--eval_split_name", "test",
                           "--batch_size", "4")  # fmt: skip
    assert metrics["test_samples"] == 4 and metrics["test_skipped_rows"] == 1
    lines = predictions(tmp_path / "scores_predictions_test.jsonl")
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert [line["references"] for line in lines] == [[word] for word in WORDS[:5]]
    assert [Path(line["input"]).name for line in lines] == [f"{word}.wav" for word in WORDS[:5]]
    assert "two.wav" in lines[2]["skipped"] and lines[2]["prediction"] is None
    assert all("skipped" not in line and isinstance(line["prediction"], str) for line in lines[:2] + lines[3:])


# ----- bad input fails early and says where -------------------------------------------------------------------------


def translation_data(tmp_path: Path) -> list[str]:
    write_translation_jsonl(tmp_path / "pairs.jsonl")
    return ["--task", "translation", "--train_file", str(tmp_path / "pairs.jsonl"), "--eval_split_name", "train"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("pairs.jsonl", b'{"source": "a", "target": "b"}\n{"source": "c", "target":\n', r"pairs\.jsonl:2: not valid"),
        ("pairs.jsonl", b'\xef\xbb\xbf{"source": "a", "target": "b"}\n', r"pairs\.jsonl:1 starts with a UTF-8 byte"),
        ("pairs.csv", b"source,target\na,b\ncaf\xe9,d\n", r"pairs\.csv:3: not UTF-8"),
        ("pairs.jsonl", b'["source", "target"]\n', r"pairs\.jsonl:1: a JSON lines record must be an object"),
        ("pairs.json", b'[{"source": "a"},\n {"source": "c", "target":}]\n', r"pairs\.json:2: not valid JSON"),
    ],
)  # fmt: skip
def test_bad_text_files_name_the_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        run_train(tmp_path / "run", "--task", "translation", "--train_file", str(tmp_path / name), "--do_train")


def test_bad_built_in_files_name_the_file_and_line(tmp_path):
    """The data is read before the model: these fail without a checkpoint."""
    write_test_only_corpora(tmp_path / "data")

    def evaluate_on(task: str, split: str) -> None:
        evaluate_main(["--model_name_or_path", "no_model_needed", "--task", task,
                             "--data_dir", str(tmp_path / "data"), "--eval_split_name", split])  # fmt: skip

    german = tmp_path / "data" / "multi30k" / "test_2017_flickr.de.gz"
    german.write_bytes(german.read_bytes()[:-12])
    with pytest.raises(ValueError, match=r"test_2017_flickr\.de\.gz is a truncated or corrupt gzip file"):
        evaluate_on("translation", "test_2017_flickr")
    german.write_bytes(gzip.compress("eine Katze\nein M\xe4dchen\n".encode("latin-1")))
    with pytest.raises(ValueError, match=r"test_2017_flickr\.de\.gz:2: not UTF-8"):
        evaluate_on("translation", "test_2017_flickr")
    (tmp_path / "data" / "flickr8k" / "holdout.jsonl").write_text('{"image": "1_a.jpg", "flickr8k_captions": }\n')
    with pytest.raises(ValueError, match=r"holdout\.jsonl:1: not valid JSON"):
        evaluate_on("captioning", "holdout")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--source_column", "english"],
            r"--source_column 'english' not found in .*pairs\.jsonl split 'train': its "
            r"columns are \['translation'\]",
        ),  # fmt: skip
        (["--source_lang", "es"], r"no 'es' entry: its languages are \['de', 'en', 'fr'\]"),
        (["--eval_split_name", "test"], r"Unknown split 'test' of .*: available splits are \['train'\]"),
        (["--dataset_config_name", "de-en"], "--dataset_config_name .* data files have none"),
        (["--data_dir", "elsewhere"], "--data_dir locates the built-in corpora"),
        (["--text_only"], r"--task translation does not read --text_only"),
        (["--caption_column", "caption"], r"--task translation does not read --caption_column"),
        (["--train_only_fusion"], "no fusion would train"),
        (["--streaming", "--preprocessing_num_workers", "2"], "--preprocessing_num_workers"),
        (["--dataset_name", "fsdd"], "either as --dataset_name or as --train_file"),
    ],
)
def test_bad_flags_fail_before_training(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        run_train(tmp_path / "run", *translation_data(tmp_path), *arguments)


def test_new_model_flags_next_to_a_checkpoint_are_an_error(tmp_path):
    arguments = ["--output_dir", str(tmp_path / "run"), "--task", "asr", "--model_name_or_path", "runs/pretrain"]
    for flags in (["--preset", "tiny"], ["--fusion", "resampler"], ["--vocab_size", "300"]):
        with pytest.raises(ValueError, match=f"{flags[0]} describe a new model"):
            train_main([*arguments, *flags])
    with pytest.raises(ValueError, match="--text_only"):
        train_main(["--output_dir", str(tmp_path / "run"), "--task", "captioning", "--text_only"])
    with pytest.raises(ValueError, match="--task mmt --text_only gives no image or audio"):
        train_main(["--output_dir", str(tmp_path / "run"), "--task", "mmt", "--text_only", "--train_only_fusion"])
    with pytest.raises(ValueError, match="--task captioning gives no audio"):
        train_main(["--output_dir", str(tmp_path / "run"), "--task", "captioning", "--freeze_feature_encoder"])
    with pytest.raises(ValueError, match="An evaluation reads no training split: drop --max_train_samples"):
        evaluate_main(["--model_name_or_path", "unused", "--task", "asr", "--max_train_samples", "4"])


def test_an_unknown_column_names_the_available_ones(tmp_path):
    write_audiofolder(tmp_path / "speech", {"train": 2})
    with pytest.raises(ValueError, match=r"--text_column_name 'text' not found in .*speech split 'train': its "
                                         r"columns are \['audio', 'transcription'\]"):  # fmt: skip
        run_train(tmp_path / "run", "--task", "asr", "--dataset_name", str(tmp_path / "speech"), "--do_train")


# ----- resume ------------------------------------------------------------------------------------------------------


def test_resume_reuses_the_checkpoints_tokenizer(tmp_path):
    """Resuming with other training data must keep the tokenizer the checkpoint's embeddings were trained with."""
    write_audiofolder(tmp_path / "first", {"train": 4})
    (tmp_path / "second" / "train").mkdir(parents=True)
    shutil.copytree(tmp_path / "first" / "train" / "clips", tmp_path / "second" / "train" / "clips")
    other_words = ["alpha bravo", "charlie delta", "echo foxtrot", "golf hotel"]
    lines = ["file_name,transcription"] + [f"clips/train_{index}.wav,{text}" for index, text in enumerate(other_words)]
    (tmp_path / "second" / "train" / "metadata.csv").write_text("\n".join(lines) + "\n")
    arguments = ["--task", "asr", "--text_column_name", "transcription", "--do_train", "--save_strategy", "steps",
                 "--save_steps", "1"]  # fmt: skip
    run_train(tmp_path / "run", *arguments, "--dataset_name", str(tmp_path / "first"), "--max_steps", "1")
    vocabulary = json.loads((tmp_path / "run" / "checkpoint-1" / "tokenizer.json").read_text())["model"]["vocab"]
    results = run_train(tmp_path / "run", *arguments, "--dataset_name", str(tmp_path / "second"), "--max_steps", "2")
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["global_step"] == 2
    assert results["train_samples"] == 4
    resumed = json.loads((tmp_path / "run" / "tokenizer.json").read_text())["model"]["vocab"]
    assert resumed == vocabulary
