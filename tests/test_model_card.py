"""Model cards and Hub-ready repositories: the card's metadata as the Hub reads it, its usage snippet run in a fresh
interpreter without the package, a train.py run's output folder, and what `push_to_hub` would upload, file by file
(the network calls are replaced at the boundary: nothing here reaches the network)."""

import concurrent.futures
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import numpy as np
import pytest
import soundfile
import torch
import transformers
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.utils import _http, filter_repo_objects
from PIL import Image
from transformers import AutoProcessor, TrainingArguments

import multimodal_gpt
from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration, add_multimodal_tokens
from multimodal_gpt.training import MultimodalTrainer
from multimodal_gpt.training.cli import train_main
from multimodal_gpt.training.model_card import (
    CARD_MARKER,
    DatasetInfo,
    base_models_of,
    pipeline_tag_for,
    read_template,
    recorded_card_state,
    render_model_card,
    write_model_card,
)
from tests.test_hub import HUB_FILES, MODEL_HUB_FILES
from tests.test_scripts import train_args
from tests.tiny_models import byte_level_gpt2_tokenizer, save_pretrained_parts, tiny_config, tiny_processor_and_model

REPO_ROOT = Path(__file__).resolve().parent.parent
FSDD = DatasetInfo("fsdd", "Free Spoken Digit Dataset (FSDD)")
HUB_SPEECH = DatasetInfo("someone/speech", "someone's speech", on_hub=True)
ASR_RESULTS = {"eval_wer": 0.125, "eval_cer": 0.0625, "eval_loss": 1.5, "train_loss": 2.5, "eval_runtime": 3.0}


# ----- the card and its metadata -----------------------------------------------------------------------------------


def test_template_is_the_model_cards_file_beside_the_code():
    template = (REPO_ROOT / "model_cards" / "multimodal_gpt.md").read_text(encoding="utf-8")
    assert read_template() == template
    # An installed wheel has no checkout beside it: it reads the package data (multimodal_gpt.model_cards), which
    # tests/test_packaging.py checks in a fresh virtual environment.


def test_card_metadata_as_the_hub_reads_it(tmp_path):
    model = MultimodalGPTForConditionalGeneration(tiny_config(vision=None))
    path = write_model_card(
        tmp_path,
        model,
        task="asr",
        datasets=[FSDD, HUB_SPEECH],
        results=ASR_RESULTS,
        base_models=["openai-community/gpt2", "facebook/wav2vec2-base"],
        repo_id="someone/mmgpt-asr",
        tags=["demo"],
        license="apache-2.0",
    )
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "automatic-speech-recognition"
    assert data.tags == ["custom_code", "multimodal_gpt", "gpt2", "audio", "speech-recognition", "demo"]
    assert data.base_model == ["openai-community/gpt2", "facebook/wav2vec2-base"]
    assert data.datasets == ["someone/speech"]  # Hub ids only: the built-in FSDD is named in the text
    assert data.license == "apache-2.0"
    assert data.model_name == "mmgpt-asr"
    results = {(result.metric_type, result.dataset_split): result for result in data.eval_results}
    assert set(results) == {("wer", "validation"), ("cer", "validation")}  # generation metrics only, no loss
    wer = results["wer", "validation"]
    assert (wer.metric_value, wer.task_type, wer.dataset_type, wer.dataset_name) == (
        0.125,
        "automatic-speech-recognition",
        "fsdd",
        "Free Spoken Digit Dataset (FSDD)",
    )
    # The body: the results table (losses too), the parameter count, the snippet for this repo and Auto class.
    assert "| Free Spoken Digit Dataset (FSDD) | validation | WER | 0.125 |" in card.text
    assert "| Free Spoken Digit Dataset (FSDD) | train | loss | 2.5 |" in card.text
    assert f"| parameters | {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M |" in card.text
    assert 'checkpoint = "someone/mmgpt-asr"' in card.text
    assert "AutoModelForSpeechSeq2Seq.from_pretrained(checkpoint, trust_remote_code=True)" in card.text
    assert "{{" not in card.content and "{%" not in card.content  # every template field was filled


@pytest.mark.parametrize(
    ("vision", "audio", "task", "expected"),
    [
        ("clip", "wav2vec2", None, "any-to-any"),
        ("clip", "wav2vec2", "pretrain", "any-to-any"),
        ("clip", None, None, "image-text-to-text"),
        (None, "whisper", None, "audio-text-to-text"),
        ("clip", "wav2vec2", "asr", "automatic-speech-recognition"),
        ("clip", "wav2vec2", "captioning", "image-text-to-text"),
        ("clip", None, "mmt", "image-text-to-text"),
        ("clip", "wav2vec2", "translation", "text-generation"),  # transformers 5 has no translation pipeline
    ],
)
def test_pipeline_tag_follows_the_task_then_the_towers(vision, audio, task, expected):
    assert pipeline_tag_for(tiny_config(vision=vision, audio=audio), task) == expected


def test_base_models_survive_save_and_load(tmp_path):
    parts = save_pretrained_parts(tmp_path / "parts")
    tokenizer = byte_level_gpt2_tokenizer()
    add_multimodal_tokens(tokenizer)
    config = MultimodalGPTConfig.from_pretrained_parts(
        parts["gpt2"], parts["clip"], parts["wav2vec2"], tokenizer=tokenizer
    )
    config.save_pretrained(tmp_path / "saved")
    reloaded = MultimodalGPTConfig.from_pretrained(tmp_path / "saved")
    # Each part's name is kept in config.json, also the vision half of a CLIP dual encoder.
    names = [sub._name_or_path for sub in (reloaded.text_config, reloaded.vision_config, reloaded.audio_config)]
    assert names == [parts["gpt2"], parts["clip"], parts["wav2vec2"]]
    assert base_models_of(reloaded) == []  # local folders are not Hub ids
    hub_ids = ["openai-community/gpt2", "openai/clip-vit-base-patch32", "facebook/wav2vec2-base"]
    for sub, hub_id in zip((config.text_config, config.vision_config, config.audio_config), hub_ids):
        sub._name_or_path = hub_id
    config.save_pretrained(tmp_path / "from_hub_parts")
    assert base_models_of(MultimodalGPTConfig.from_pretrained(tmp_path / "from_hub_parts")) == hub_ids


def test_rewriting_keeps_the_run_and_tags_but_never_a_hand_written_card(tmp_path):
    model = MultimodalGPTForConditionalGeneration(tiny_config())
    write_model_card(tmp_path, model, task="asr", datasets=[FSDD], results=ASR_RESULTS, tags=["mine"])
    # A plain re-save (Trainer.save_model after a run) keeps what the card recorded.
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag == "automatic-speech-recognition" and "mine" in card.data.tags
    assert [result.metric_value for result in card.data.eval_results] == [0.125, 0.0625]
    assert recorded_card_state(card.content)["results"] == ASR_RESULTS
    # transformers' generic card is replaced, keeping its tags.
    generic = huggingface_hub.ModelCard.from_template(
        huggingface_hub.ModelCardData(tags=["generic-tag"], library_name="transformers"),
        model_description="This model card has been automatically generated.",
    )
    generic.save(tmp_path / "README.md")
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert CARD_MARKER in card.content and "generic-tag" in card.data.tags and "custom_code" in card.data.tags
    # A card the user wrote stays as it is.
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# My own card\n")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "---\nlicense: mit\n---\n# My own card\n"
    assert write_model_card(tmp_path, model) is None
    assert write_model_card(tmp_path, model, overwrite=True) == tmp_path / "README.md"
    assert CARD_MARKER in (tmp_path / "README.md").read_text()


# ----- the card's usage snippet, in a fresh interpreter without the package ----------------------------------------

# Runs cards' Python blocks as a user would, each in its own namespace, in an interpreter where `import multimodal_gpt`
# fails: only the folders' own code can run.
SNIPPET_RUNNER = """
import sys
sys.modules["multimodal_gpt"] = None
import contextlib, io, json
outputs = []
for snippet in json.loads(open(sys.argv[1]).read()):
    namespace, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet, namespace)
    for name in ("model", "processor"):
        module = type(namespace[name]).__module__
        assert module.startswith("transformers_modules"), (name, module)
    outputs.append([printed.getvalue(), namespace["generated"].tolist()])
print(json.dumps(outputs))
"""


def card_snippet(folder: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, blocks
    return blocks[0]


def run_snippets(folders: list[Path], work_dir: Path) -> list[tuple[str, list[list[int]]]]:
    """Run each folder's card snippet with `checkpoint` pointing at that local folder, in one fresh interpreter in
    `work_dir` (where the test put the snippets' `photo.jpg` / `speech.wav`); returns what each printed and the
    ids it generated."""
    snippets = []
    for folder in folders:
        snippet, replaced = re.subn(r'checkpoint = "[^"]*"', f"checkpoint = {str(folder)!r}", card_snippet(folder))
        assert replaced == 1
        snippets.append(snippet)
    (work_dir / "snippets.json").write_text(json.dumps(snippets))
    (work_dir / "run_snippets.py").write_text(SNIPPET_RUNNER)
    completed = subprocess.run(
        [sys.executable, "run_snippets.py", "snippets.json"],
        cwd=work_dir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [(printed, generated) for printed, generated in json.loads(completed.stdout.splitlines()[-1])]


def expected_generation(folder: Path, **media) -> tuple[str, list[list[int]]]:
    """What the card's snippet prints and generates, computed in this process with the package's own classes."""
    prompt = json.loads(re.search(r"processor\(text=(\".*?\")", card_snippet(folder)).group(1))
    processor = AutoProcessor.from_pretrained(folder)
    model = MultimodalGPTForConditionalGeneration.from_pretrained(folder).eval()
    inputs = processor(text=prompt, return_tensors="pt", **media)
    generated = model.generate(**inputs, max_new_tokens=32)
    text = processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()
    return text + "\n", generated.tolist()


def test_card_snippets_run_without_the_package_and_match(tmp_path):
    """A model with both towers and no task (the snippet reads `photo.jpg`), and a translation card (its prompt
    holds a newline)."""
    processor, model = tiny_processor_and_model()
    folders = [tmp_path / "any-to-any", tmp_path / "translation"]
    for folder in folders:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    write_model_card(folders[1], model, task="translation")
    assert '"Translate English to German: A man is riding a bicycle down the street.\\nGerman:"' in card_snippet(
        folders[1]
    )
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    outputs = run_snippets(folders, tmp_path)
    assert outputs[0] == expected_generation(folders[0], images=Image.open(tmp_path / "photo.jpg"))
    assert outputs[1] == expected_generation(folders[1])
    assert len(outputs[0][1][0]) > 16  # the prompt (16 image tokens) and new tokens


# ----- a train.py run's output folder ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asr_run(tmp_path_factory) -> tuple[Path, dict]:
    output_dir = tmp_path_factory.mktemp("asr_run") / "asr"
    results = train_main(train_args("asr", output_dir, "--dataset_name", "synthetic", "--max_train_samples", "8"))
    return output_dir, results


def test_train_run_output_is_a_complete_hub_repo(asr_run):
    output_dir, results = asr_run
    files = {path.name for path in output_dir.iterdir()}
    expected = {"model.safetensors", "config.json", "generation_config.json", "processor_config.json"}
    assert expected | {"tokenizer.json", "tokenizer_config.json", "README.md", *HUB_FILES} <= files
    # No pickle: weights as safetensors, the Trainer's arguments as JSON (its `training_args.bin` stays in checkpoints)
    assert not {name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))}
    assert json.loads((output_dir / "training_args.json").read_text())["output_dir"] == str(output_dir)
    assert "AutoModelForSpeechSeq2Seq" in json.loads((output_dir / "config.json").read_text())["auto_map"]
    assert "AutoProcessor" in json.loads((output_dir / "processor_config.json").read_text())["auto_map"]
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.pipeline_tag == "automatic-speech-recognition" and "custom_code" in card.data.tags
    assert card.data.datasets is None  # the built-in synthetic data is no Hub data set: named in the text only
    assert "multimodal_gpt synthetic data" in card.text
    assert {result.metric_type: result.metric_value for result in card.data.eval_results} == {
        "wer": round(results["eval_wer"], 6),
        "cer": round(results["eval_cer"], 6),
    }
    assert "- steps: 2" in card.text and "generated data" in card.text


def test_train_run_output_loads_and_generates_without_the_package(asr_run, tmp_path):
    output_dir, _ = asr_run
    clip = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    soundfile.write(tmp_path / "speech.wav", clip, 16000)
    [output] = run_snippets([output_dir], tmp_path)
    assert output == expected_generation(output_dir, audio=str(tmp_path / "speech.wav"))


# ----- what push_to_hub would upload -------------------------------------------------------------------------------


class FakeHub:
    """Stands in for the Hub at the network boundary: `HfApi.create_repo` / `create_commit` / `upload_folder` and
    the card download record what they would send; any other HTTP request fails the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cache: Path):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.uploads: list[tuple[str, dict[str, bytes]]] = []  # (repo, files of that commit)
        self.cache = cache
        monkeypatch.setattr(HfApi, "create_repo", self.create_repo)
        monkeypatch.setattr(HfApi, "create_commit", self.create_commit)
        monkeypatch.setattr(HfApi, "upload_folder", self.upload_folder)
        monkeypatch.setattr(huggingface_hub.repocard, "hf_hub_download", self.download)

    def create_repo(self, repo_id: str, **kwargs):
        self.repos.setdefault(repo_id, {})
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id: str, operations, **kwargs):
        files = {operation.path_in_repo: Path(operation.path_or_fileobj).read_bytes() for operation in operations}
        return self._commit(repo_id, files)

    def upload_folder(self, *, repo_id: str, folder_path, ignore_patterns=None, run_as_future=False, **kwargs):
        paths = [path.relative_to(folder_path).as_posix() for path in Path(folder_path).rglob("*") if path.is_file()]
        kept = filter_repo_objects(paths, ignore_patterns=ignore_patterns)
        commit = self._commit(repo_id, {path: (Path(folder_path) / path).read_bytes() for path in kept})
        if not run_as_future:
            return commit
        future = concurrent.futures.Future()  # the Trainer's pushes during training run in the background
        future.set_result(commit)
        return future

    def download(self, repo_id: str, filename: str, **kwargs) -> str:
        if filename not in self.repos.get(repo_id, {}):
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        path = self.cache / repo_id / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.repos[repo_id][filename])
        return str(path)

    def _commit(self, repo_id: str, files: dict[str, bytes]):
        self.repos.setdefault(repo_id, {}).update(files)
        self.uploads.append((repo_id, files))
        return SimpleNamespace(commit_url=f"fake://{repo_id}")


def refuse_network(request):
    raise AssertionError(f"a test reached for the network: {request.method} {request.url}")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    import httpx2

    _http.close_session()
    monkeypatch.setattr(
        _http, "_GLOBAL_CLIENT_FACTORY", lambda: httpx2.Client(transport=httpx2.MockTransport(refuse_network))
    )
    yield FakeHub(monkeypatch, tmp_path / "hub_cache")
    _http.close_session()


def uploaded_card(files: dict[str, bytes]) -> ModelCard:
    return ModelCard(files["README.md"].decode("utf-8"))


def test_model_and_processor_push_to_hub_upload_a_complete_repo(fake_hub):
    processor, model = tiny_processor_and_model()
    model.push_to_hub("someone/tiny-mmgpt", tags=["pushed"])
    repo, files = fake_hub.uploads[-1]
    assert repo == "someone/tiny-mmgpt"
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", *MODEL_HUB_FILES} <= set(files)
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    assert files["model.safetensors"][8:9] == b"{"  # safetensors: an 8-byte header length, then the JSON header
    card = uploaded_card(files)
    assert CARD_MARKER in card.content  # ours, not transformers' generic card
    assert card.data.tags[:3] == ["custom_code", "multimodal_gpt", "gpt2"] and "pushed" in card.data.tags
    assert card.data.model_name == "tiny-mmgpt" and 'checkpoint = "someone/tiny-mmgpt"' in card.text

    processor.push_to_hub("someone/tiny-mmgpt")
    repo, files = fake_hub.uploads[-1]
    assert {"processor_config.json", "tokenizer.json", "tokenizer_config.json", "processing_multimodal_gpt.py"} <= set(
        files
    )
    # The processor's push re-uploads the repo's card: still ours.
    assert files["README.md"] == fake_hub.uploads[0][1]["README.md"]
    assert set(HUB_FILES) <= set(fake_hub.repos["someone/tiny-mmgpt"])


def test_push_to_hub_keeps_a_hand_written_card_on_the_hub(fake_hub):
    hand_written = "---\nlicense: mit\n---\n# Written by hand\n"
    fake_hub.repos["someone/kept"] = {"README.md": hand_written.encode()}
    _, model = tiny_processor_and_model()
    model.push_to_hub("someone/kept", tags=["pushed"])
    card = uploaded_card(fake_hub.uploads[-1][1])
    assert card.text.strip() == "# Written by hand" and card.data.license == "mit"
    assert card.data.tags == ["pushed"]  # transformers merges the push's tags in


def test_trainer_push_to_hub_uploads_the_output_folder_with_our_card(fake_hub, tmp_path):
    processor, model = tiny_processor_and_model()
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), hub_model_id="someone/run", report_to="none", use_cpu=True
    )
    trainer = MultimodalTrainer(model=model, args=args, processing_class=processor)
    trainer.model_card_kwargs = {"task": "captioning", "datasets": [FSDD], "results": {"eval_bleu4": 12.5}}
    trainer.push_to_hub()
    repo, files = fake_hub.uploads[-1]
    assert repo == "someone/run"
    assert {"model.safetensors", "config.json", "processor_config.json", "README.md", *HUB_FILES} <= set(files)
    card = uploaded_card(files)
    assert CARD_MARKER in card.content and card.data.pipeline_tag == "image-text-to-text"
    assert [(result.metric_type, result.metric_value) for result in card.data.eval_results] == [("bleu", 12.5)]
    assert "This model card has been generated automatically" not in card.content  # not the Trainer's generic card


def test_render_refuses_another_model_type():
    from transformers import GPT2Config

    with pytest.raises(TypeError, match="multimodal_gpt model"):
        render_model_card(GPT2Config())
    with pytest.raises(ValueError, match="Unknown task 'ocr'"):
        render_model_card(tiny_config(), task="ocr")


# ----- train.py --push_to_hub: one push, at the end, after evaluation ------------------------------------------------


@pytest.fixture
def checkpoint_from_hub_parts(tmp_path) -> Path:
    """A captioning-ready checkpoint whose parts came from the Hub (`from_pretrained_parts` records their ids in the
    sub-configs), as if built from `openai-community/gpt2` and `google/vit-base-patch16-224`."""
    processor, model = tiny_processor_and_model(vision="vit", audio=None)
    model.config.text_config._name_or_path = "openai-community/gpt2"
    model.config.vision_config._name_or_path = "google/vit-base-patch16-224"
    model.save_pretrained(tmp_path / "parts_model")
    processor.save_pretrained(tmp_path / "parts_model")
    return tmp_path / "parts_model"


def test_train_push_to_hub_pushes_once_after_evaluation(fake_hub, checkpoint_from_hub_parts, tmp_path):
    output_dir = tmp_path / "run"
    arguments = train_args(
        "captioning", output_dir, "--model_name_or_path", str(checkpoint_from_hub_parts), "--dataset_name",
        "synthetic", "--max_train_samples", "8", "--eval_strategy", "steps", "--eval_steps", "1",
        "--push_to_hub", "--hub_model_id", "someone/captioning-run", new_model=False,
    )  # fmt: skip
    arguments[arguments.index("--save_strategy") + 1] = "steps"  # the Trainer would push at every save
    results = train_main([*arguments, "--save_steps", "1"])

    assert [repo for repo, _ in fake_hub.uploads] == ["someone/captioning-run"]  # one push
    files = fake_hub.uploads[0][1]
    outputs = {"all_results.json", "eval_results.json", "train_results.json", "predictions_validation.jsonl"}
    assert outputs | {"loss_curve.png", "model.safetensors", "config.json", "processor_config.json"} <= set(files)
    assert not [name for name in files if name.startswith(("checkpoint-", "_")) or name.endswith(".bin")]
    # after evaluation: the results, the predictions and the card hold it
    assert json.loads(files["all_results.json"])["eval_bleu4"] == results["eval_bleu4"]
    assert files["predictions_validation.jsonl"] == (output_dir / "predictions_validation.jsonl").read_bytes()
    assert files["loss_curve.png"] == (output_dir / "loss_curve.png").read_bytes()
    card = uploaded_card(files)
    assert [(result.metric_type, result.metric_value) for result in card.data.eval_results][0] == (
        "bleu",
        round(results["eval_bleu4"], 6),
    )
    assert card.data.license == "apache-2.0" and card.data.language == ["en"]
    assert card.data.base_model == ["openai-community/gpt2", "google/vit-base-patch16-224"]
    assert card.data.datasets is None  # the built-in synthetic data is no Hub data set
    # the Trainer card's sections: hyperparameters, evaluations over the steps, framework versions
    text = card.text
    for line in ("- learning_rate: 5e-05", "- train_batch_size: 4", "- seed: 42", "- optimizer: Use adamw_torch",
                 "- lr_scheduler_type: linear", "- training_steps: 2"):  # fmt: skip
        assert line in text
    table = text[text.index("### Evaluation during training") :].split("\n\n")[1].splitlines()
    assert table[0].split("|")[1:4] == [" Training Loss ", " Epoch ", " Step "] and len(table) == 2 + 2
    assert f"- transformers {transformers.__version__}" in text and f"- torch {torch.__version__}" in text
    assert (
        f"- multimodal_gpt {multimodal_gpt.__version__}" in text and "- datasets " in text and "- tokenizers " in text
    )
    assert ModelCard.load(output_dir / "README.md").data.license == "apache-2.0"  # the folder's own card parses too
    assert json.loads((output_dir / "training_args.json").read_text())["push_to_hub"] is True


def test_push_to_hub_with_a_checkpoint_hub_strategy_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="--hub_strategy checkpoint pushes checkpoints during training"):
        train_main(train_args("asr", tmp_path, "--push_to_hub", "--hub_strategy", "checkpoint"))


def test_the_card_describes_a_convolutional_tower_by_its_stages():
    card = render_model_card(tiny_config(vision="resnet", audio=None), task="captioning")
    row = next(line for line in str(card).splitlines() if line.startswith("| vision tower |"))
    assert "`resnet` convolutional encoder: 2 stages of [1, 1] blocks, widths [16, 32], 32 px images" in row
    assert "one feature per 8 px of the last feature map" in row  # 32 px -> 4 x 4 features
    assert "16 tokens per `<image>`" in str(card)
