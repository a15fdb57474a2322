"""The pretraining benchmark's machinery, with `run()` replaced by a fake (the real runs take hours; `--quick` takes
minutes): equal total compute, recipes for both arms, the verdict per seed, the files, and resuming."""

import json
from pathlib import Path

import pytest

from multimodal_gpt.benchmarks import pretraining
from multimodal_gpt.benchmarks.pretraining import Comparison, claim_holds

# What the fake run scores, by (task, arm): the pretrained route wins ASR and captioning, loses translation.
SCORES = {
    ("asr", "pretrained"): 0.05,
    ("asr", "scratch"): 0.08,
    ("translation", "pretrained"): 20.0,
    ("translation", "scratch"): 25.0,
    ("captioning", "pretrained"): 0.3,
    ("captioning", "scratch"): 0.2,
}


@pytest.fixture
def fake_runs(monkeypatch):
    calls = []

    def fake_run(model_args, data_args, training_args):
        calls.append((model_args, data_args, training_args))
        arm = "pretrained" if model_args.model_name_or_path else "scratch"
        if data_args.task == "pretrain":
            return {"train_loss": 1.0}
        metric = pretraining.HEADLINE[data_args.task][0]
        if data_args.task == "captioning":  # the pretrained arm describes 2 images differently, scratch 1
            captions = ["a dog runs", "a man sits", "a dog runs"] if arm == "pretrained" else ["a dog runs"] * 3
            rows = [{"index": i, "prediction": caption} for i, caption in enumerate(captions)]
            rows.append({"index": 3, "prediction": None, "skipped": "a corrupt file"})
            lines = "".join(json.dumps(row) + "\n" for row in rows)
            Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
            (Path(training_args.output_dir) / "predictions_validation.jsonl").write_text(lines)
        return {f"eval_{metric}": SCORES[(data_args.task, arm)] + training_args.seed * 0.001}

    monkeypatch.setattr(pretraining, "run", fake_run)
    return calls


def test_equal_compute_recipes_and_the_verdict(fake_runs, tmp_path, capsys):
    results = pretraining.main(
        ["--output_dir", str(tmp_path), "--seeds", "0,1", "--pretrain_steps", "90", "--finetune_steps", "30"]
    )
    runs = {(t.seed, d.task, "pretrained" if m.model_name_or_path else "scratch"): (m, d, t) for m, d, t in fake_runs}
    assert len(fake_runs) == 2 * (1 + 3 * 2)
    for seed in (0, 1):
        pretrain = runs[(seed, "pretrain", "scratch")]
        assert pretrain[0].recipe == "pretrain" and pretrain[2].max_steps == 90
        for task in ("asr", "translation", "captioning"):
            model_args, data_args, training_args = runs[(seed, task, "pretrained")]
            assert training_args.max_steps == 30 and model_args.recipe == task
            assert model_args.model_name_or_path.endswith(f"seed{seed}/pretrain")
            assert data_args.eval_split_name == ["validation"]
            model_args, data_args, training_args = runs[(seed, task, "scratch")]
            assert training_args.max_steps == 30 + 90 // 3  # three scratch runs: P + 3F steps, as the route
            assert model_args.recipe == task and model_args.tokenizer_name_or_path.endswith(f"seed{seed}/pretrain")
    assert results["claim_holds"] is True and results["wins_per_seed"] == {0: 2, 1: 2}
    printed = capsys.readouterr().out
    assert "The claim (pretrained wins on at least two tasks in every seed) holds" in printed
    # captioning: how many different captions each arm wrote (a skipped row is not a caption)
    captioning = [row for row in results["rows"] if row["task"] == "captioning"]
    assert [(row["pretrained_distinct"], row["scratch_distinct"]) for row in captioning] == [(2, 1), (2, 1)]
    assert "| 0 | captioning | cider (higher is better) | 0.2 (1 distinct, " in printed
    assert "| 0.3 (2 distinct, " in printed and "| 0 | asr | wer (lower is better) | 0.08 (0.0 min) |" in printed
    # the chart in text too, one Mermaid bar chart per task, scratch then pretrained per seed
    assert printed.count("```mermaid\nxychart-beta\n") == 3
    assert '"seed 0 scratch", "seed 0 pretrained", "seed 1 scratch", "seed 1 pretrained"' in printed
    assert "    bar [0.08, 0.05, 0.081, 0.051]" in printed
    assert json.loads((tmp_path / "results.json").read_text())["claim_holds"] is True
    assert (tmp_path / "results.md").is_file() and (tmp_path / "pretraining_gain.png").is_file()


def test_finished_runs_are_reused(fake_runs, tmp_path):
    arguments = ["--output_dir", str(tmp_path), "--seeds", "0", "--tasks", "asr", "--pretrain_steps", "3"]
    pretraining.main(arguments)
    assert len(fake_runs) == 3
    pretraining.main(arguments)
    assert len(fake_runs) == 3  # everything read back
    pretraining.main([*arguments, "--rerun"])
    assert len(fake_runs) == 6


def comparison(seed: int, task: str, wins: bool) -> Comparison:
    return Comparison(seed, task, "bleu", True, 2.0 if wins else 1.0, 1.5, 1.0, 1.0)


def test_the_claim_needs_two_wins_in_every_seed():
    two_each = [comparison(0, "a", True), comparison(0, "b", True), comparison(0, "c", False)]
    two_each += [comparison(1, "a", True), comparison(1, "b", False), comparison(1, "c", True)]
    assert claim_holds(two_each) == (True, {0: 2, 1: 2})
    one_seed_short = two_each[:3] + [comparison(1, "a", True), comparison(1, "b", False), comparison(1, "c", False)]
    assert claim_holds(one_seed_short) == (False, {0: 2, 1: 1})


def test_quick_sets_small_sizes_unless_given():
    args = pretraining.parse_benchmark_arguments(["--quick", "--finetune_steps", "3"])
    assert (args.pretrain_steps, args.finetune_steps, args.preset) == (12, 3, "tiny")
    with pytest.raises(ValueError, match="choose among"):
        pretraining.parse_benchmark_arguments(["--tasks", "asr,ocr"])
