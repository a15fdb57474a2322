"""Denormals flushed for a training run (multimodal_gpt/training/cpu.py): on every torch thread, not only the main one.

Checked in a fresh process, as `multimodal-gpt train` starts: with denormals-are-zero in force, multiplying a tensor of
denormal floats by 1 gives zeros, on whichever thread computes each chunk of it."""

import subprocess
import sys
import textwrap

import pytest
import torch

PROGRAM = textwrap.dedent(
    """
    import sys
    import torch
    import multimodal_gpt.training.cli as cli

    cli.run = lambda *arguments: {}  # stop after the setup that precedes training
    cli.train_main(["--task", "asr", "--output_dir", sys.argv[1], *sys.argv[2:]])
    torch.set_num_threads(2)
    denormals = torch.full((4_000_000,), 1e-39)  # large enough to be split across the worker threads
    print(int(((denormals * 1.0) != 0).sum()))
    """
)


def nonzero_after_train_setup(tmp_path, *flags: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path / "run"), *flags], capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_train_flushes_denormals_on_every_thread_unless_told_not_to(tmp_path):
    assert nonzero_after_train_setup(tmp_path) == 0
    assert nonzero_after_train_setup(tmp_path, "--flush_denormal", "false") == 4_000_000
