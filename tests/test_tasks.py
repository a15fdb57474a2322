"""Tasks: the prompts, the target's leading space, the reference choice, and the row errors."""

import numpy as np
import pytest

from multimodal_gpt.data.tasks import (
    ASR,
    CAPTIONING,
    MMT,
    PRETRAIN,
    TASKS,
    TRANSLATION,
    BadRowError,
    MissingColumnError,
    Task,
    get_task,
    reference_index,
    translation_text,
)

CAPTIONS = ["A dog runs .", "a brown dog", "The dog is running", "dog on grass", "a dog outside"]
ROWS = {
    "pretrain": {"text": "Some text.", "image": None, "audio": None},
    "captioning": {"image": "dog.jpg", "captions": CAPTIONS},
    "translation": {"source": "A man sleeps.", "target": "Ein Mann schläft."},
    "asr": {"audio": "seven.wav", "text": "seven"},
    "mmt": {"image": "dog.jpg", "source": "A dog runs.", "target": "Ein Hund rennt."},
}


def test_prompts_and_targets():
    assert TRANSLATION.example(ROWS["translation"]).prompt == "Translate English to German: A man sleeps.\nGerman:"
    assert TRANSLATION.example(ROWS["translation"]).target == " Ein Mann schläft."
    assert MMT.example(ROWS["mmt"]).prompt == "<image>Translate English to German: A dog runs.\nGerman:"
    assert CAPTIONING.example(ROWS["captioning"]).prompt == "<image>"
    assert ASR.example(ROWS["asr"]).prompt == "<audio>"
    assert ASR.example(ROWS["asr"]).audio == ("seven.wav",)
    assert PRETRAIN.example(ROWS["pretrain"]).prompt == ""
    assert PRETRAIN.example({"text": "a cat", "image": "cat.png"}).prompt == "<image>"
    assert PRETRAIN.example({"text": "seven", "audio": "seven.wav"}).prompt == "<audio>"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_prompts_never_end_in_whitespace_and_targets_start_with_one_space(name):
    example = TASKS[name].example(ROWS[name])
    assert example.prompt == example.prompt.rstrip()
    assert example.target.startswith(" ") and not example.target.startswith("  ")
    assert TASKS[name].postprocess(example.target) == example.target.strip()


def test_a_pretraining_pair_is_the_translation_example_as_one_text():
    text = translation_text(" A man sleeps. ", "Ein Mann schläft.")
    assert text == "Translate English to German: A man sleeps.\nGerman: Ein Mann schläft."
    example = TRANSLATION.example(ROWS["translation"])
    assert PRETRAIN.example({"text": text}).target.endswith(example.prompt + example.target)
    assert translation_text("Ein Hund.", "A dog.", "de", "en").startswith("Translate German to English: Ein Hund.")
    with pytest.raises(BadRowError):
        translation_text("", "Ein Mann schläft.")


def test_row_languages_win_over_the_task_defaults():
    row = {"source": "Un chat.", "target": "A cat.", "source_lang": "fr", "target_lang": "en"}
    assert TRANSLATION.example(row).prompt == "Translate French to English: Un chat.\nEnglish:"
    assert get_task("translation", target_lang="cs").example(ROWS["translation"]).prompt.endswith("\nCzech:")


def test_captioning_trains_on_each_reference_once_every_five_epochs_and_evaluates_on_all():
    row = ROWS["captioning"]
    chosen = [CAPTIONING.example(row, epoch=epoch).target.strip() for epoch in range(5)]
    assert sorted(chosen) == sorted(CAPTIONS)
    assert CAPTIONING.example(row, epoch=0) == CAPTIONING.example(row, epoch=0)
    assert CAPTIONING.references(row) == CAPTIONS
    assert TRANSLATION.references(ROWS["translation"]) == ["Ein Mann schläft."]
    assert reference_index(["only"], epoch=3) == 0


def test_flickr8k_columns_for_multimodal_translation():
    task = get_task("mmt", source_column="m30_en", target_column="m30_de")
    example = task.example({"image": "x.jpg", "m30_en": "A girl.", "m30_de": "Ein Mädchen.", "captions": CAPTIONS})
    assert example.prompt == "<image>Translate English to German: A girl.\nGerman:"
    assert example.references == ("Ein Mädchen.",)


def test_a_translation_dict_column_is_read_in_the_tasks_languages():
    task = get_task("translation", translation_column="translation", source_lang="en", target_lang="fr")
    row = {"translation": {"en": "A cat.", "de": "Eine Katze.", "fr": "Un chat."}}
    example = task.example(row)
    assert example.prompt == "Translate English to French: A cat.\nFrench:" and example.references == ("Un chat.",)
    assert task.required_columns == ("translation",)
    assert task.target_texts(row) == ["Un chat."] and task.source_texts(row) == ["A cat."]
    with pytest.raises(MissingColumnError, match=r"no 'es' entry: its languages are \['de', 'en', 'fr'\]"):
        get_task("translation", translation_column="translation", target_lang="es").example(row)


def test_one_caption_as_a_string_and_array_media():
    row = {"image": [[[255, 0, 0]] * 2] * 3, "captions": "a red picture"}  # pixels as `datasets` lists them
    example = CAPTIONING.example(row)
    assert example.references == ("a red picture",) and CAPTIONING.target_texts(row) == ["a red picture"]
    assert isinstance(example.images[0], np.ndarray) and example.images[0].shape == (3, 2, 3)


def test_a_missing_column_says_the_trainer_dropped_it():
    with pytest.raises(MissingColumnError, match="remove_unused_columns=False"):
        CAPTIONING.example({"captions": CAPTIONS})


@pytest.mark.parametrize(
    "task, row",
    [
        (ASR, {"audio": "a.wav", "text": "   "}),
        (CAPTIONING, {"image": "a.jpg", "captions": ["", " "]}),
        (CAPTIONING, {"image": None, "captions": CAPTIONS}),
        (TRANSLATION, {"source": "", "target": "Hallo."}),
        (TRANSLATION, {"source": "Look: <image>", "target": "Schau."}),
        (PRETRAIN, {"text": "an <audio> tag"}),
    ],
)
def test_unusable_rows_raise_bad_row_errors(task, row):
    with pytest.raises(BadRowError):
        task.example(row)


def test_task_definitions_are_checked():
    with pytest.raises(ValueError, match="whitespace"):
        Task("bad", prompt_template="Caption: ", target_column="text")
    with pytest.raises(ValueError, match="image"):
        Task("bad", prompt_template="{image}", target_column="text")
    with pytest.raises(ValueError, match="Unknown task"):
        get_task("summarization")
