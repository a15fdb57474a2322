"""Loaders of the real data sets (../shared/data) and of users' own data."""

import gzip
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
from PIL import Image

from multimodal_gpt.data.corpora import (
    DATA_DIR_ENV,
    default_data_dir,
    keep_multi30k_rows,
    load_flickr8k,
    load_fsdd,
    load_multi30k,
    load_read_speech,
    split_fsdd_by_recording,
)
from multimodal_gpt.data.local_files import load_table_file
from multimodal_gpt.data.sources import load_task_data
from multimodal_gpt.training import DataArguments


@pytest.fixture(scope="module")
def fsdd(data_dir: Path) -> datasets.Dataset:
    return load_fsdd(data_dir)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` in offline mode: any attempt to reach the Hub raises instead of passing silently."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


# --- locating the data -------------------------------------------------------------------------------------------


def test_default_data_dir_is_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    repository = Path(__file__).resolve().parents[1]
    assert default_data_dir() == (repository.parent / "shared" / "data").resolve()


def test_default_data_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path.resolve()


def test_missing_folder_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=DATA_DIR_ENV):
        load_fsdd()
    with pytest.raises(FileNotFoundError, match="pass root="):
        load_multi30k(tmp_path)


# --- FSDD and read speech ----------------------------------------------------------------------------------------


def test_load_fsdd(fsdd: datasets.Dataset, data_dir: Path) -> None:
    assert len(fsdd) == 2700
    assert fsdd.column_names == ["audio", "text", "digit", "speaker", "recording"]
    assert fsdd[0] == {
        "audio": str(data_dir / "fsdd" / "train" / "0_george_5.wav"),
        "text": "zero",
        "digit": 0,
        "speaker": "george",
        "recording": 5,
    }
    assert fsdd[-1]["text"] == "nine" and fsdd[-1]["speaker"] == "yweweler" and fsdd[-1]["recording"] == 49
    assert set(Counter(zip(fsdd["digit"], fsdd["speaker"])).values()) == {45}  # recordings 5-49 of each pair
    assert len(set(fsdd["speaker"])) == 6
    assert all(Path(path).name.startswith(f"{digit}_") for path, digit in zip(fsdd["audio"], fsdd["digit"]))


def test_load_fsdd_accepts_the_fsdd_folder_and_rejects_unknown_splits(data_dir: Path) -> None:
    assert len(load_fsdd(data_dir / "fsdd")) == 2700
    with pytest.raises(ValueError, match=r"'test'.*\['train'\]"):
        load_fsdd(data_dir, split="test")


def test_split_fsdd_by_recording(fsdd: datasets.Dataset) -> None:
    splits = split_fsdd_by_recording(fsdd)
    assert (len(splits["train"]), len(splits["validation"])) == (2400, 300)
    assert set(splits["validation"]["recording"]) == {45, 46, 47, 48, 49}
    assert not set(splits["train"]["recording"]) & set(splits["validation"]["recording"])
    assert set(splits["validation"]["speaker"]) == set(fsdd["speaker"])
    with pytest.raises(ValueError, match="empty split"):
        split_fsdd_by_recording(fsdd, val_recordings=[100])


def test_fsdd_errors_on_empty_split_and_odd_names(tmp_path: Path) -> None:
    (tmp_path / "fsdd" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="No .wav files"):
        load_fsdd(tmp_path)
    (tmp_path / "fsdd" / "train" / "zero_george.wav").touch()
    with pytest.raises(ValueError, match="zero_george.wav"):
        load_fsdd(tmp_path)


def test_load_read_speech(data_dir: Path) -> None:
    speech = load_read_speech(data_dir)
    assert len(speech) == 141
    assert speech.column_names == ["audio", "text"]
    assert speech[0]["audio"] == str(data_dir / "read_speech" / "wavs" / "LJ001-0001.flac")
    assert speech[0]["text"].startswith("Printing, in the only sense with which we are at present concerned")
    assert len(load_read_speech(data_dir, split="train")) == 141
    with pytest.raises(ValueError, match="available splits are"):
        load_read_speech(data_dir, split="validation")


# --- Multi30k ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "count"), [("train", 29000), ("val", 1014), ("test_2016_flickr", 1000)])
def test_load_multi30k_counts(data_dir: Path, split: str, count: int) -> None:
    pairs = load_multi30k(data_dir, split=split)
    assert len(pairs) == count
    assert pairs.column_names == ["source", "target", "source_lang", "target_lang", "image", "index"]
    assert all(image.endswith(".jpg") for image in pairs["image"])


def test_load_multi30k_rows(data_dir: Path) -> None:
    row = load_multi30k(data_dir)[2]
    assert row == {
        "source": "A little girl climbing into a wooden playhouse.",
        "target": "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
        "source_lang": "en",
        "target_lang": "de",
        "image": "1000268201.jpg",
        "index": 2,
    }
    french = load_multi30k(data_dir, split="val", source_lang="fr", target_lang="en")[0]
    assert french["source"] == "Un groupe d'hommes chargent du coton dans un camion"
    assert french["target"] == "A group of men are loading cotton onto a truck"


def test_load_multi30k_errors(data_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"\['cs'\].*\['de', 'en', 'fr'\]"):
        load_multi30k(data_dir, target_lang="cs")
    with pytest.raises(ValueError, match=r"\['test_2016_flickr', 'train', 'val'\]"):
        load_multi30k(data_dir, split="test_2017_flickr")
    with pytest.raises(ValueError, match="two different languages"):
        load_multi30k(data_dir, source_lang="de", target_lang="de")


def test_load_multi30k_checks_alignment(tmp_path: Path) -> None:
    folder = tmp_path / "multi30k"
    folder.mkdir()
    for lang, text in (("en", "A dog.\nA cat.\n"), ("de", "Ein Hund.\nEine Katze.\n")):
        (folder / f"dev.{lang}.gz").write_bytes(gzip.compress(text.encode()))
    pairs = load_multi30k(tmp_path, split="dev")  # any split and pair; no images.txt -> image None
    assert pairs[:] == {
        "source": ["A dog.", "A cat."],
        "target": ["Ein Hund.", "Eine Katze."],
        "source_lang": ["en", "en"],
        "target_lang": ["de", "de"],
        "image": [None, None],
        "index": [0, 1],
    }
    (folder / "dev.de.gz").write_bytes(gzip.compress(b"Ein Hund.\n"))
    with pytest.raises(ValueError, match="not aligned: 2 en lines, 1 de lines"):
        load_multi30k(tmp_path, split="dev")


# --- Flickr8k ----------------------------------------------------------------------------------------------------


def test_load_flickr8k(data_dir: Path) -> None:
    train, val = load_flickr8k(data_dir), load_flickr8k(data_dir, split="val")
    assert (len(train), len(val)) == (800, 100)
    expected_columns = ["image", "captions", "m30_en", "m30_de", "m30_fr", "m30_cs", "m30_split", "m30_index"]
    assert train.column_names == expected_columns
    first = train[0]
    assert first["image"] == str(data_dir / "flickr8k" / "images" / "1000268201_693b08cb0e.jpg")
    assert first["captions"][1] == "A girl going into a wooden building ."
    assert (first["m30_split"], first["m30_index"]) == ("train", 2)
    assert first["m30_de"] == "Ein kleines Mädchen klettert in ein Spielhaus aus Holz."
    assert {len(captions) for captions in train["captions"]} == {5}
    assert list(train["m30_split"]).count(None) == 51 and list(val["m30_split"]).count(None) == 7
    with pytest.raises(ValueError, match=r"\['train', 'val'\]"):
        load_flickr8k(data_dir, split="test")


def test_flickr8k_multi30k_fields_match_multi30k(data_dir: Path) -> None:
    flickr = keep_multi30k_rows(load_flickr8k(data_dir), "val")
    multi30k = load_multi30k(data_dir, split="val")
    for row in flickr.select(range(5)):
        line = multi30k[row["m30_index"]]
        assert (line["source"], line["target"]) == (row["m30_en"], row["m30_de"])
        assert line["image"] == Path(row["image"]).name.split("_")[0] + ".jpg"


def test_keep_multi30k_rows(data_dir: Path) -> None:
    train = load_flickr8k(data_dir)
    assert len(keep_multi30k_rows(train)) == 749
    assert len(keep_multi30k_rows(train, m30_splits="train")) == 696
    assert len(keep_multi30k_rows(train, m30_splits=["val", "test_2016_flickr"])) == 53
    with pytest.raises(ValueError, match="test_2017"):
        keep_multi30k_rows(train, m30_splits="test_2017")


# --- users' own data (local_files; the scripts' side is in test_user_data.py) --------------------------------------


def _write_audio_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    soundfile.write(folder / "one.wav", np.zeros(800, dtype=np.float32), 8000)
    (folder / "clips").mkdir()
    soundfile.write(folder / "clips" / "two.flac", np.zeros(1600, dtype=np.float32), 16000)
    lines = [{"file_name": "one.wav", "text": "one"}, {"file_name": "clips/two.flac", "text": "two"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _user_data(tmp_path: Path, **arguments) -> DataArguments:
    return DataArguments(cache_dir=str(tmp_path / "cache"), **arguments)


def test_user_audiofolder(tmp_path: Path, offline: None) -> None:
    _write_audio_folder(tmp_path / "speech")
    speech = load_task_data(_user_data(tmp_path, task="asr", dataset_name=str(tmp_path / "speech")), evaluation=False)
    assert speech.train.column_names == ["audio", "text"]
    assert speech.train[:] == {
        "audio": [str(tmp_path / "speech" / "one.wav"), str(tmp_path / "speech" / "clips" / "two.flac")],
        "text": ["one", "two"],
    }


def test_user_imagefolder_with_split_folders(tmp_path: Path, offline: None) -> None:
    for split in ("train", "validation"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        Image.new("L", (8, 6)).save(tmp_path / "photos" / split / "gray.png")
        (tmp_path / "photos" / split / "metadata.csv").write_text(f"file_name,caption\ngray.png,a {split} photo\n")
    arguments = dict(task="captioning", dataset_name=str(tmp_path / "photos"), caption_column="caption")
    photos = load_task_data(_user_data(tmp_path, **arguments))
    assert photos.evaluation["validation"].column_names == ["image", "caption"]
    assert photos.evaluation["validation"][0] == {
        "image": str(tmp_path / "photos" / "validation" / "gray.png"),
        "caption": "a validation photo",
    }
    assert photos.train[0]["caption"] == "a train photo"
    with pytest.raises(ValueError, match=r"available splits are \['train', 'validation'\]"):
        load_task_data(_user_data(tmp_path, **arguments, eval_split_name="test"))


def test_user_jsonl_and_csv_files(tmp_path: Path, offline: None) -> None:
    _write_audio_folder(tmp_path / "speech")
    Image.new("RGB", (4, 4)).save(tmp_path / "cat.jpg")
    (tmp_path / "asr.jsonl").write_text(json.dumps({"audio": "speech/one.wav", "text": "one"}) + "\n")
    (tmp_path / "captions.tsv").write_text("image_file_name\tcaption\ncat.jpg\ta black square\n")
    asr = load_table_file(tmp_path / "asr.jsonl", cache_dir=tmp_path / "cache")
    assert asr[0] == {"audio": str(tmp_path / "speech" / "one.wav"), "text": "one"}
    captions = load_table_file(tmp_path / "captions.tsv", cache_dir=tmp_path / "cache")
    assert captions[0] == {"image": str(tmp_path / "cat.jpg"), "caption": "a black square"}


def test_user_data_errors(tmp_path: Path, offline: None) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="metadata"):
        load_task_data(_user_data(tmp_path, task="asr", dataset_name=str(tmp_path / "empty")))
    (tmp_path / "gone.jsonl").write_text(json.dumps({"file_name": "gone.wav", "text": "x"}) + "\n")
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        load_table_file(tmp_path / "gone.jsonl", cache_dir=tmp_path / "cache")
    (tmp_path / "header_only.csv").write_text("file_name,text\n")
    (tmp_path / "blank.jsonl").write_text("")
    for name in ("header_only.csv", "blank.jsonl"):
        with pytest.raises(ValueError, match=f"{name}.*empty"):
            load_table_file(tmp_path / name, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="supported files"):
        load_table_file(tmp_path / "notes.txt")
