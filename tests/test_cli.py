"""The `multimodal-gpt` command (multimodal_gpt.training.cli): its verbs and help, the benchmarks found by the
convention (a module of multimodal_gpt.benchmarks with `main(argv)`), and the demo's stages. The installed command
itself, from a wheel in a fresh virtual environment, is in tests/test_packaging.py."""

import sys
import textwrap

import pytest

from multimodal_gpt.training import cli
from multimodal_gpt.training.demo import DemoArguments


def test_help_lists_the_commands_and_bad_commands_say_so(capsys):
    assert cli.main(["--help"]) == 0
    printed = capsys.readouterr().out
    assert "usage: multimodal-gpt <command>" in printed
    for verb in ("train", "evaluate", "demo", "benchmark"):
        assert f"\n  {verb} " in printed
    assert cli.main([]) == 2  # no command: the usage, and an error status
    assert cli.main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_each_verb_has_its_own_help(capsys):
    for verb in ("train", "evaluate", "demo"):
        with pytest.raises(SystemExit) as exit_status:
            cli.main([verb, "--help"])
        assert exit_status.value.code == 0
        printed = capsys.readouterr().out
        assert f"usage: multimodal-gpt {verb}" in printed
    assert "--predict_with_generate" in cli_help("train") and "--generation_max_length" in cli_help("train")
    assert "--stages" in cli_help("demo")


def cli_help(verb: str) -> str:
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        cli.main([verb, "--help"])
    return printed.getvalue()


def test_the_benchmarks_are_the_modules_with_a_main(capsys):
    names = cli.benchmark_names()
    assert {"model", "data", "generation", "long_form_asr", "peers"} <= set(names)
    assert not {"measure", "report", "peer_systems", "__init__"} & set(names)  # helpers, no main
    assert names["peers"].startswith("MultimodalGPT against the Transformers models it replaces")
    assert cli.main(["benchmark", "--help"]) == 0
    printed = capsys.readouterr().out
    assert all(f"\n  {name} " in printed for name in names)
    with pytest.raises(SystemExit, match="unknown benchmark 'speed'; the benchmarks are .*peers"):
        cli.main(["benchmark", "speed"])


@pytest.mark.parametrize("name", sorted(cli.benchmark_names()))
def test_each_benchmark_has_its_own_help(name, capsys):
    """argparse expands `%` in help texts: a help that wrote "10 % warmup" made `--help` itself crash."""
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["benchmark", name, "--help"])
    assert exit_status.value.code == 0
    assert f"usage: multimodal-gpt benchmark {name} " in capsys.readouterr().out


def test_a_new_benchmark_module_is_found_and_dispatched_by_the_convention(tmp_path, monkeypatch):
    """As `multimodal_gpt.benchmarks.pretraining` will be: a module with a main is a benchmark, by its file name."""
    package = tmp_path / "some_benchmarks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "alpha.py").write_text(
        textwrap.dedent('''
            """Alpha: measures something. More text."""


            def main(argv=None):
                return ["alpha", *argv]
        ''')
    )
    (package / "helpers.py").write_text('"""Shared code, no main."""\n\ndef build():\n    return 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "BENCHMARKS_PACKAGE", "some_benchmarks")
    monkeypatch.delitem(sys.modules, "some_benchmarks", raising=False)
    assert cli.benchmark_names() == {"alpha": "Alpha: measures something"}
    assert cli.benchmark_main(["alpha", "--rounds", "2"]) == ["alpha", "--rounds", "2"]
    with pytest.raises(SystemExit, match="unknown benchmark 'helpers'"):
        cli.benchmark_main(["helpers"])


def test_benchmark_model_runs_through_the_command(capsys):
    rows = cli.benchmark_main(["model", "--preset", "tiny", "--warmup", "0", "--repeats", "1", "--batch_size", "2"])
    assert [row["fusion"] for row in rows] == ["linear", "mlp", "resampler", "cross_attention"]
    assert "| fusion | parameters_M |" in capsys.readouterr().out


def test_demo_stages_are_checked(tmp_path):
    with pytest.raises(ValueError, match="--stages takes some of pretrain, captioning, translation, asr; got ocr"):
        DemoArguments(stages=["ocr"])
    with pytest.raises(ValueError, match="finetunes the model in .*pretrain, but there is none: add pretrain"):
        cli.demo_main(["--output_dir", str(tmp_path), "--stages", "asr"])
