"""Transformers' pipelines with MultimodalGPT: each one's text equals the model's own `generate` + decode of the
continuation, in process with the package imported and from a saved folder in a fresh interpreter without it."""

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from transformers import pipeline
from transformers.pipelines.automatic_speech_recognition import _find_longest_common_sequence

from multimodal_gpt import MultimodalGPTSpeechRecognitionPipeline, MultimodalGPTTranslationPipeline
from multimodal_gpt.data.tasks import ASR, get_task
from multimodal_gpt.data.tasks import LANGUAGE_NAMES as TASK_LANGUAGE_NAMES
from multimodal_gpt.pipeline_multimodal_gpt import ASR_PROMPT, CUSTOM_PIPELINES, LANGUAGE_NAMES, translation_prompt
from tests.tiny_models import audio_config, tiny_processor_and_model

MAX_NEW_TOKENS = 6
RATE = 16000
COLORS = [(0, 0, 0), (255, 255, 255)]
SOURCE = "A dog runs."
CAPTION_PROMPT = "<image>"
# the pipeline's default device is the first accelerator: pin CPU so that outputs match the CPU reference exactly
CPU = dict(device="cpu")


def input_sensitive(processor_and_model):
    """A fresh tiny model's greedy output barely depends on its input (tiny init); larger random weights make
    different images and clips give different text, so that a pipeline that dropped its media would be caught.
    The audio tower keeps its init: wav2vec2 with large random weights maps every clip alike."""
    processor, model = processor_and_model
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("model.audio_tower."):
                parameter.normal_(0, 1.0 if "audio_fusion" in name else 0.5, generator=generator)
    return processor, model


@pytest.fixture(scope="module")
def full():
    return input_sensitive(tiny_processor_and_model())


@pytest.fixture(scope="module")
def audio_only():
    return input_sensitive(tiny_processor_and_model(vision=None))


@pytest.fixture(scope="module")
def vision_only():
    return tiny_processor_and_model(audio=None)


@pytest.fixture(scope="module")
def whisper_audio():
    """A Whisper-style tower with a 1 s window (tiny_models' 50 positions of 2 mel frames)."""
    return input_sensitive(tiny_processor_and_model(vision=None, audio="whisper"))


def clips() -> list[np.ndarray]:
    rng = np.random.RandomState(0)
    return [rng.randn(3200).astype(np.float32) for _ in range(2)]


def images() -> list[Image.Image]:
    return [Image.new("RGB", (8, 8), color) for color in COLORS]


def generated_text(processor, model, text: str, **media) -> str:
    """The reference: the processor, `generate`, and the decoded tokens after the prompt."""
    inputs = processor(text=text, return_tensors="pt", **media)
    sequences = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
    return processor.tokenizer.decode(sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def references(full, audio_only) -> dict[str, list[str]]:
    expected = {
        "image-text-to-text": [generated_text(*full, CAPTION_PROMPT, images=image) for image in images()],
        "asr": [generated_text(*full, ASR_PROMPT, audio=clip, sampling_rate=RATE).strip() for clip in clips()],
        "any-to-any": [generated_text(*audio_only, "<audio>", audio=clip, sampling_rate=RATE) for clip in clips()],
        "translation": [generated_text(*full, translation_prompt(SOURCE, "en", "de"))],
    }
    # the media reach the model: two inputs give two texts (else equality with the reference would prove little)
    for task in ("image-text-to-text", "asr", "any-to-any"):
        assert expected[task][0] != expected[task][1], (task, expected[task])
    return expected


def test_pipeline_prompts_are_the_tasks_prompts():
    clip = np.zeros(160, dtype=np.float32)
    assert ASR.example({"audio": clip, "text": "seven"}).prompt == ASR_PROMPT
    for target_lang in ("de", "fr", "xx"):
        task = get_task("translation", target_lang=target_lang)
        prompt = task.example({"source": f" {SOURCE} ", "target": "Ein Hund."}).prompt
        assert prompt == translation_prompt(SOURCE, "en", target_lang)
    assert LANGUAGE_NAMES == TASK_LANGUAGE_NAMES


def test_pipelines_in_process_equal_generate(full, audio_only, tmp_path):
    processor, model = full
    expected = references(full, audio_only)

    captioner = pipeline("image-text-to-text", model=model, processor=processor, **CPU)
    for image, text in zip(images(), expected["image-text-to-text"]):
        new_text = captioner(images=image, text=CAPTION_PROMPT, max_new_tokens=MAX_NEW_TOKENS, return_full_text=False)
        assert new_text[0]["generated_text"] == text
        full_text = captioner(images=image, text=CAPTION_PROMPT, max_new_tokens=MAX_NEW_TOKENS)
        assert full_text[0]["generated_text"] == CAPTION_PROMPT + text

    asr = pipeline(
        "automatic-speech-recognition",
        model=model,
        processor=processor,
        pipeline_class=MultimodalGPTSpeechRecognitionPipeline,
        **CPU,
    )
    clip, other_clip = clips()
    path = tmp_path / "clip.wav"
    soundfile.write(path, clip, RATE, subtype="FLOAT")  # float WAV: the exact samples come back
    forms = [clip, torch.from_numpy(clip), {"raw": clip, "sampling_rate": RATE}, str(path), path.read_bytes()]
    for form in forms:
        assert asr(form, max_new_tokens=MAX_NEW_TOKENS) == {"text": expected["asr"][0]}, type(form)
    assert asr([clip, other_clip], max_new_tokens=MAX_NEW_TOKENS) == [{"text": text} for text in expected["asr"]]
    # another rate is resampled (soxr) as the processor does it
    clip_8k = clip[::2].copy()
    resampled = generated_text(processor, model, ASR_PROMPT, audio=clip_8k, sampling_rate=8000).strip()
    dataset_row = {"array": clip_8k, "sampling_rate": 8000, "path": None}
    assert asr(dataset_row, max_new_tokens=MAX_NEW_TOKENS) == {"text": resampled}

    audio_processor, audio_model = audio_only
    any_to_any = pipeline("any-to-any", model=audio_model, processor=audio_processor, **CPU)
    for clip, text in zip(clips(), expected["any-to-any"]):
        output = any_to_any(
            text="<audio>", audio=clip, sampling_rate=RATE, max_new_tokens=MAX_NEW_TOKENS, return_full_text=False
        )
        assert output[0]["generated_text"] == text

    prompt = translation_prompt(SOURCE, "en", "de")
    text_generator = pipeline("text-generation", model=model, tokenizer=processor.tokenizer, **CPU)
    # text-generation samples by default: greedy, as in training's evaluation, needs do_sample=False
    output = text_generator(prompt, max_new_tokens=MAX_NEW_TOKENS, return_full_text=False, do_sample=False)
    assert output[0]["generated_text"] == expected["translation"][0]
    translator = MultimodalGPTTranslationPipeline(model=model, processor=processor, **CPU)
    output = translator(SOURCE, src_lang="en", tgt_lang="de", max_new_tokens=MAX_NEW_TOKENS)
    assert output == {"translation_text": expected["translation"][0].strip()}


def test_asr_pipeline_errors_are_clear(full, vision_only):
    processor, model = vision_only
    with pytest.raises(ValueError, match="has no audio tower"):
        pipeline(
            "automatic-speech-recognition",
            model=model,
            processor=processor,
            pipeline_class=MultimodalGPTSpeechRecognitionPipeline,
        )
    processor, model = full
    asr = MultimodalGPTSpeechRecognitionPipeline(model=model, processor=processor, **CPU)
    with pytest.raises(ValueError, match="exactly once"):
        asr(clips()[0], prompt="Transcribe:")
    with pytest.raises(ValueError, match='"sampling_rate"'):
        asr({"raw": clips()[0]})
    with pytest.raises(ValueError, match=r"only chunk-level timestamps .*return_timestamps=True"):
        asr(clips()[0], return_timestamps="word")
    with pytest.raises(ValueError, match="chunk_length_s must be a positive"):
        asr(clips()[0], chunk_length_s=0)
    with pytest.raises(ValueError, match=r"strides \(1 s \+ 1 s\) must be shorter than the chunks \(2 s\)"):
        asr(clips()[0], chunk_length_s=2, stride_length_s=1)


def test_asr_pipeline_refuses_chunks_longer_than_the_window(whisper_audio):
    asr = MultimodalGPTSpeechRecognitionPipeline(model=whisper_audio[1], processor=whisper_audio[0], **CPU)
    assert asr.window_seconds == 1.0
    with pytest.raises(ValueError, match=r"chunk_length_s=2 is longer than the audio tower's 1 s window"):
        asr(clips()[0], chunk_length_s=2)


def test_saved_folder_names_the_pipelines(full, tmp_path):
    processor, model = full
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["custom_pipelines"] == CUSTOM_PIPELINES
    assert (tmp_path / "pipeline_multimodal_gpt.py").is_file()
    clip = clips()[0]
    expected = generated_text(processor, model, ASR_PROMPT, audio=clip, sampling_rate=RATE).strip()
    # with the package imported, transformers still asks trust_remote_code for the folder's custom pipelines...
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("automatic-speech-recognition", model=str(tmp_path), **CPU)
    # ...unless the pipeline class is given: then only the package's own code runs
    asr = pipeline(
        "automatic-speech-recognition",
        model=str(tmp_path),
        pipeline_class=MultimodalGPTSpeechRecognitionPipeline,
        **CPU,
    )
    assert type(asr.model).__module__ == "multimodal_gpt.modeling_multimodal_gpt"
    assert asr(clip, max_new_tokens=MAX_NEW_TOKENS) == {"text": expected}
    # a saved and reloaded checkpoint saves again (pipeline() turned the loaded class names into classes)
    asr.model.save_pretrained(tmp_path / "again")


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["multimodal_gpt"] = None  # `import multimodal_gpt` now fails: only the folders' own code can run
    import soundfile
    from PIL import Image
    from transformers import pipeline

    full, audio_only, vision_only, clip_paths, colors, source, max_new_tokens, out = sys.argv[1:]
    clip_paths, colors, max_new_tokens = json.loads(clip_paths), json.loads(colors), int(max_new_tokens)
    clips = [soundfile.read(path, dtype="float32")[0] for path in clip_paths]
    generation = dict(max_new_tokens=max_new_tokens)
    remote = dict(trust_remote_code=True, device="cpu")
    results = {}

    captioner = pipeline("image-text-to-text", model=full, **remote)
    results["image-text-to-text"] = [
        captioner(images=Image.new("RGB", (8, 8), tuple(color)), text="<image>", return_full_text=False, **generation)
        [0]["generated_text"]
        for color in colors
    ]
    alias = pipeline("image-to-text", model=full, **remote)  # v5 maps it to image-text-to-text
    results["image-to-text"] = alias(images=Image.new("RGB", (8, 8), tuple(colors[0])), text="<image>",
                                     return_full_text=False, **generation)[0]["generated_text"]

    asr = pipeline("automatic-speech-recognition", model=full, **remote)
    assert type(asr).__module__.startswith("transformers_modules"), type(asr).__module__
    assert type(asr.model).__module__.startswith("transformers_modules"), type(asr.model).__module__
    results["asr"] = [asr(path, **generation)["text"] for path in clip_paths]
    results["asr_dict"] = asr({"array": clips[0], "sampling_rate": 16000}, **generation)["text"]
    results["asr_batched"] = [output["text"] for output in asr(clip_paths, batch_size=2, **generation)]

    any_to_any = pipeline("any-to-any", model=audio_only, **remote)
    results["any-to-any"] = [
        any_to_any(text="<audio>", audio=clip, sampling_rate=16000, return_full_text=False, **generation)
        [0]["generated_text"]
        for clip in clips
    ]

    translator = pipeline("translation", model=full, **remote)
    results["translation"] = translator(source, src_lang="en", tgt_lang="de", **generation)["translation_text"]
    text_generator = pipeline("text-generation", model=full, **remote)
    prompt = "Translate English to German: " + source + "\\nGerman:"
    output = text_generator(prompt, return_full_text=False, do_sample=False, **generation)
    results["text-generation"] = output[0]["generated_text"]

    try:
        pipeline("automatic-speech-recognition", model=vision_only, **remote)
    except ValueError as error:
        results["asr_without_audio_tower"] = str(error)
    json.dump(results, open(out, "w"))
    """
)


def test_pipelines_from_folders_in_a_fresh_interpreter(full, audio_only, vision_only, tmp_path):
    folders = {}
    for name, (processor, model) in {"full": full, "audio_only": audio_only, "vision_only": vision_only}.items():
        folders[name] = str(tmp_path / name)
        model.save_pretrained(folders[name])
        processor.save_pretrained(folders[name])
    clip_paths = []
    for index, clip in enumerate(clips()):
        clip_paths.append(str(tmp_path / f"clip{index}.wav"))
        soundfile.write(clip_paths[-1], clip, RATE, subtype="FLOAT")
    script = tmp_path / "remote_pipelines.py"
    script.write_text(REMOTE_SCRIPT)
    args = [folders["full"], folders["audio_only"], folders["vision_only"], json.dumps(clip_paths)]
    args += [json.dumps(COLORS), SOURCE, str(MAX_NEW_TOKENS), str(tmp_path / "results.json")]
    completed = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    expected = references(full, audio_only)
    assert results["image-text-to-text"] == expected["image-text-to-text"]
    assert results["image-to-text"] == expected["image-text-to-text"][0]
    assert results["asr"] == expected["asr"]
    assert results["asr_dict"] == expected["asr"][0]
    assert results["asr_batched"] == expected["asr"]
    assert results["any-to-any"] == expected["any-to-any"]
    assert results["translation"] == expected["translation"][0].strip()
    assert results["text-generation"] == expected["translation"][0]
    assert "has no audio tower" in results["asr_without_audio_tower"]


# ----- batching and long-form transcription -------------------------------------------------------------------------


def test_batched_pipelines_equal_one_input_at_a_time(full, whisper_audio):
    rng = np.random.RandomState(1)
    lengths = [2400, 3200, 800, 1600, 4000]  # different lengths: different prompt lengths, left-padded in a batch
    batch_clips = [rng.randn(length).astype(np.float32) for length in lengths]
    for processor, model in (full, whisper_audio):
        asr = MultimodalGPTSpeechRecognitionPipeline(model=model, processor=processor, **CPU)
        one_by_one = [asr(clip, max_new_tokens=MAX_NEW_TOKENS) for clip in batch_clips]
        assert len({output["text"] for output in one_by_one}) > 1  # the clips reach the model
        assert asr(batch_clips, batch_size=3, max_new_tokens=MAX_NEW_TOKENS) == one_by_one
    processor, model = full
    translator = MultimodalGPTTranslationPipeline(model=model, processor=processor, **CPU)
    sources = ["A dog runs.", "Two men play football on a green field.", "Hi."]
    one_by_one = [translator(source, max_new_tokens=MAX_NEW_TOKENS) for source in sources]
    assert translator(sources, batch_size=3, max_new_tokens=MAX_NEW_TOKENS) == one_by_one


def manual_long_form(processor, model, clip, chunk_seconds: float, stride_seconds: float) -> tuple[str, list]:
    """The reference for chunked ASR: chunks of `chunk_seconds` starting every `chunk - 2 x stride` seconds until one
    reaches the end, each transcribed alone with `generate`, merged with Transformers' seq2seq merge."""
    chunk, step = int(chunk_seconds * RATE), int((chunk_seconds - 2 * stride_seconds) * RATE)
    starts = [0]
    while starts[-1] + chunk < len(clip):
        starts.append(starts[-1] + step)
    generated, spans = [], []
    for start in starts:
        inputs = processor(text=ASR_PROMPT, audio=clip[start : start + chunk], sampling_rate=RATE, return_tensors="pt")
        sequences = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
        generated.append(sequences[:, inputs["input_ids"].shape[1] :])
        spans.append((start / RATE, min(start + chunk, len(clip)) / RATE))
    merged = _find_longest_common_sequence(generated, processor.tokenizer)
    return processor.tokenizer.decode(merged, skip_special_tokens=True).strip(), spans


def test_chunk_merge_is_transformers_merge_and_takes_a_chunk_longer_than_the_past():
    from multimodal_gpt.pipeline_multimodal_gpt import merge_chunk_tokens

    tokenizer = SimpleNamespace(all_special_ids=[0])
    rng, compared = np.random.RandomState(0), 0
    for _ in range(200):  # where Transformers' merge works (no chunk longer than what came before), the same tokens
        chunks = [rng.randint(0, 6, size=rng.randint(4, 9)).tolist()]
        for _ in range(rng.randint(1, 4)):
            chunks.append(chunks[-1][-rng.randint(0, 4) :] + rng.randint(0, 6, size=rng.randint(1, 4)).tolist())
        try:
            expected = _find_longest_common_sequence([torch.tensor([chunk]) for chunk in chunks], tokenizer).tolist()
        except ValueError:  # a chunk longer than the merged past: below
            continue
        compared += 1
        assert merge_chunk_tokens(chunks, {0}) == expected
    assert compared > 100
    # a second chunk longer than the first: Transformers' merge raises a shape error; the overlap "7 8" is found
    past, longer = [5, 6, 7, 8], [7, 8, 9, 10, 11, 12]
    with pytest.raises(ValueError, match="broadcast"):
        _find_longest_common_sequence([torch.tensor([past]), torch.tensor([longer])], tokenizer)
    assert merge_chunk_tokens([past, longer], {0}) == [5, 6, 7, 8, 9, 10, 11, 12]


def test_long_form_asr_equals_manual_chunking(whisper_audio):
    processor, model = whisper_audio
    asr = MultimodalGPTSpeechRecognitionPipeline(model=model, processor=processor, **CPU)
    clip = np.random.RandomState(2).randn(int(3.3 * RATE)).astype(np.float32)  # 3.3 s, the window is 1 s
    expected_text, spans = manual_long_form(processor, model, clip, chunk_seconds=1.0, stride_seconds=0.25)
    assert len(spans) == 6 and spans[-1] == (2.5, 3.3)  # starts every 0.5 s; the last chunk reaches the end
    output = asr(
        clip, chunk_length_s=1.0, stride_length_s=0.25, return_timestamps=True, batch_size=4, max_new_tokens=6
    )
    assert output["text"] == expected_text
    assert [chunk["timestamp"] for chunk in output["chunks"]] == spans
    assert len({chunk["text"] for chunk in output["chunks"]}) > 1  # the chunks' transcripts differ
    # without chunk_length_s, a clip longer than the window is chunked at the window (stride: a sixth of it)
    automatic, _ = manual_long_form(processor, model, clip, chunk_seconds=1.0, stride_seconds=1 / 6)
    assert asr(clip, max_new_tokens=MAX_NEW_TOKENS) == {"text": automatic}
    # a clip within the window is one chunk
    assert asr(clip[:RATE], return_timestamps=True, max_new_tokens=MAX_NEW_TOKENS)["chunks"][0]["timestamp"] == (
        0.0,
        1.0,
    )


def test_long_form_benchmark_trains_a_model_then_scores_the_long_clips(data_dir, tmp_path):
    """`multimodal-gpt benchmark long_form_asr` without a checkpoint: trains on the clips that fit the window (no
    evaluation split: the long clips are scored chunked), then transcribes the longer ones."""
    from multimodal_gpt.benchmarks import long_form_asr

    flags = ["--train_steps", "1", "--batch_size", "2", "--max_clips", "1", "--max_new_tokens", "2"]  # small preset
    results = long_form_asr.main([*flags, "--data_dir", str(data_dir), "--output_dir", str(tmp_path)])
    assert results["clips"] == 1 and results["chunks"] >= 2 and results["window_seconds"] == 4.0
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert len((tmp_path / "long_form_predictions.jsonl").read_text().splitlines()) == 1


def test_read_speech_clips_longer_than_the_window(data_dir):
    """The small preset's Whisper-style window is 4 s (200 positions); read-speech clips last 3-12 s."""
    whisper = audio_config("whisper")
    whisper.max_source_positions = 200
    processor, model = tiny_processor_and_model(vision=None, audio="whisper", audio_config=whisper)
    asr = MultimodalGPTSpeechRecognitionPipeline(model=model, processor=processor, **CPU)
    assert asr.window_seconds == 4.0
    rows = [line.split("\t") for line in (data_dir / "read_speech" / "transcripts.tsv").read_text().splitlines()[1:]]
    paths = [data_dir / "read_speech" / "wavs" / name for name, _ in rows]
    durations = {path: soundfile.info(path).duration for path in paths[:20]}
    long_clips = sorted((path for path in durations if durations[path] > 4.0), key=durations.get)[-2:]
    assert len(long_clips) == 2 and durations[long_clips[-1]] > 8.0
    outputs = asr([str(path) for path in long_clips], batch_size=4, return_timestamps=True, max_new_tokens=3)
    for path, output in zip(long_clips, outputs):
        assert isinstance(output["text"], str)
        spans = [chunk["timestamp"] for chunk in output["chunks"]]
        assert len(spans) >= 2 and spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(durations[path], abs=1e-3)
        assert all(end - start <= 4.0 for start, end in spans)
