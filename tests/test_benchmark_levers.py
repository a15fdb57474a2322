"""The lever benchmarks (multimodal_gpt/benchmarks/levers.py, padding.py, precision.py) and the peer benchmark's
compiled mode: the machinery end to end at tiny shapes. The figures they print at tiny shapes mean nothing."""

import json

import pytest
import torch

from multimodal_gpt.benchmarks import TINY_SHAPES, build_systems, levers, padding, precision, profile
from multimodal_gpt.benchmarks.measure import compile_system, generate, train_step


@pytest.mark.parametrize(
    "lever, settings",
    [
        ("vision_token_merge", 3),
        ("media_feature_cache", 2),
        ("packing", 2),
        ("bf16", 2),
        ("freeze_feature_encoder", 2),
    ],
)
def test_a_lever_compares_its_settings_side_by_side(lever, settings, tmp_path):
    results = levers.main(["--lever", lever, "--tiny", "--rounds", "2", "--output_dir", str(tmp_path)])
    rows = results["levers"][lever]["settings"]
    assert len(rows) == settings and rows[0]["train_speedup"] == pytest.approx(1.0)
    assert all(len(row["train_step_s"]["runs"]) == 2 for row in rows)
    assert json.loads((tmp_path / "levers.json").read_text())["levers"][lever]["settings"][0]["setting"]
    assert f"## {lever}" in (tmp_path / "levers.md").read_text()
    if lever == "vision_token_merge":  # 4 x 4 patches -> 2 x 2 tokens per image
        assert rows[1]["decoder_positions"] < rows[0]["decoder_positions"]
    if lever == "packing":
        assert rows[1]["decoder_positions"] <= rows[0]["decoder_positions"]


def test_compiled_systems_train_and_generate_as_eager_ones():
    """The wiring of `--compile` (checked with the "eager" backend, which traces without generating code; that our
    own decoding step compiles as one graph is tests/test_modeling_multimodal_gpt.py's)."""
    eager, compiled = (build_systems(["gpt2"], shapes=TINY_SHAPES)[0] for _ in range(2))
    assert compile_system(compiled, backend="eager")
    assert compiled.model.generation_config.cache_implementation == "static"
    losses = []
    for system in (compiled, eager):
        torch.manual_seed(0)  # the same dropout draws
        losses.append(train_step(system, "cpu", "fp32"))
    torch.testing.assert_close(*losses)
    assert generate(compiled, "cpu", "fp32", 3) == generate(eager, "cpu", "fp32", 3)


def test_padding_report_on_the_real_corpora(data_dir, tmp_path):
    arguments = ["--preset", "tiny", "--batch_size", "8", "--num_batches", "2", "--output_dir", str(tmp_path)]
    results = padding.main([*arguments, "--data_dir", str(data_dir)])
    assert set(results) == {"fsdd", "multi30k", "flickr8k"}
    for result in results.values():
        assert result["packed"]["padding"] < result["padded"]["padding"]
        assert result["packed"]["rows"] < result["padded"]["rows"] == 8
    assert "| fsdd (asr) |" in (tmp_path / "padding.md").read_text()


def test_precision_check_runs_fp32_and_bf16_from_the_same_start(tmp_path):
    results = precision.main(
        ["--preset", "tiny", "--fusions", "mlp", "--steps", "3", "--window", "2", "--batch_size", "4",
         "--output_dir", str(tmp_path)]
    )  # fmt: skip
    curves = results["mlp"]["curves"]
    assert set(curves) == {"fp32, seed 0", "fp32, seed 1", "bf16, seed 0"} and all(
        len(c) == 3 for c in curves.values()
    )
    assert curves["bf16, seed 0"][0] == pytest.approx(curves["fp32, seed 0"][0], rel=0.02)  # same weights and batch
    assert curves["fp32, seed 1"][0] != curves["fp32, seed 0"][0]
    assert "| mlp |" in (tmp_path / "precision.md").read_text()


def test_profile_lists_the_top_operators_of_a_step(tmp_path):
    report = profile.main(
        ["--systems", "ours_captioning_linear", "--tiny", "--top", "3", "--output_dir", str(tmp_path)]
    )
    rows = [line for line in report.splitlines() if line.startswith("| `")]  # aten ops, the optimizer step
    assert len(rows) == 3 and "training step" in report
    assert (tmp_path / "profile.md").read_text() == report
