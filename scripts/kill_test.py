#!/usr/bin/env python
"""Kill test: training runs killed with SIGKILL at many moments, rerun with the same command until done, must end
with the weights of an uninterrupted run.

    python scripts/kill_test.py --work_dir outputs/kill_test            # both runs: captioning (ViT), asr (wav2vec2)
    python scripts/kill_test.py --work_dir outputs/kill_test --runs asr

For each run (a tiny model on the built-in synthetic data, 18 steps over 3 epochs, a checkpoint every 3 steps, at
most 2 kept), the script trains once without interruption (the reference), then runs the same `scripts/train.py`
command again and again in a second folder. Each attempt but the last is killed with SIGKILL at the next moment of
`SCHEDULE`: while loading data, in a training step, at nine points inside a checkpoint save (empty folder,
half-written weights, empty or half-written optimizer state, before the scheduler, RNG and trainer state, before the
completion marker, before the rotation of old checkpoints), while resuming, in the final save, before the run is
recorded as finished, and in the evaluation after it. The kill comes from inside the process (`os.kill(getpid(),
SIGKILL)`, which no handler can intercept), placed by `scripts/kill_test_hook/sitecustomize.py`, which the script
puts on `PYTHONPATH` of the killed attempts only: the command line is the same for every attempt. After the last
attempt, the command is run once more, and must train nothing.

Writes `<work_dir>/kill_table.md` (moment, what was on disk, what the rerun did, and the final max |difference|
between the weights of the interrupted and of the uninterrupted run) and `<work_dir>/kill_test.json`; exits
non-zero if a moment was not reached, a rerun failed, or the weights differ. CPU only; a few minutes per run on an
idle machine (many attempts, each starting Python and the model anew).
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[1]
HOOK_DIR = REPO / "scripts" / "kill_test_hook"  # its sitecustomize.py kills at MMGPT_KILL_AT
sys.path.insert(0, str(REPO))

from multimodal_gpt.training.checkpoints import (  # noqa: E402
    RUN_COMPLETE_FILE,
    checkpoint_folders,
    checkpoint_problem,
)

TEXT_CONFIG = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 256}
PRESETS = {
    "captioning": {
        "description": "Kill test: GPT-2 2x64 with a ViT 2x32 on 32 px images.",
        "text_config": TEXT_CONFIG,
        "vision_config": {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32,
                          "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
        "fusion": "mlp",
    },
    "asr": {
        "description": "Kill test: GPT-2 2x64 with a wav2vec2 2x32 (dropout and SpecAugment on: RNG matters).",
        "text_config": TEXT_CONFIG,
        "audio_config": {"model_type": "wav2vec2", "hidden_size": 32, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [32, 32, 32],
                         "conv_kernel": [10, 8, 4], "conv_stride": [5, 4, 4], "num_conv_pos_embeddings": 16,
                         "num_conv_pos_embedding_groups": 4, "feat_extract_norm": "layer",
                         "do_stable_layer_norm": True},
        "fusion": "mlp",
        "audio_frame_reduction": 4,
    },
}  # fmt: skip

# (moment, step or checkpoint it waits for); in this order, each attempt dies at the next one
SCHEDULE = [
    ("data loaded, before the model is built", "startup", None),
    ("in training step 2, before any checkpoint", "step", 2),
    ("save of checkpoint-3: folder just created", "save-begun", 3),
    ("save of checkpoint-3: model.safetensors half-written", "weights-partial", 3),
    ("save of checkpoint-3: optimizer.pt empty", "optimizer-empty", 3),
    ("save of checkpoint-3: optimizer.pt half-written", "optimizer-partial", 3),
    ("save of checkpoint-3: before scheduler.pt", "before-scheduler", 3),
    ("save of checkpoint-3: before rng_state.pth", "before-rng", 3),
    ("save of checkpoint-3: before trainer_state.json", "before-trainer-state", 3),
    ("save of checkpoint-3: all files written, before the completion marker", "before-marker", 3),
    ("in training step 8 (epoch 2)", "step", 8),
    ("save of checkpoint-9: complete, before old checkpoints are rotated", "before-rotation", 9),
    ("while resuming: weights loaded", "resume-loaded", None),
    ("in training step 13 (epoch 3)", "step", 13),
    ("save of checkpoint-15: optimizer.pt half-written", "optimizer-partial", 15),
    ("final save: model.safetensors of the output folder half-written", "final-weights-partial", None),
    ("final model saved, before the run is recorded as finished", "before-finished-record", None),
    ("evaluation after training", "evaluation", None),
]


def train_command(task: str, output_dir: Path, preset: Path) -> list[str]:
    return [
        sys.executable, str(REPO / "scripts" / "train.py"), "--task", task, "--dataset_name", "synthetic",
        "--output_dir", str(output_dir), "--preset", str(preset), "--vocab_size", "300",
        "--max_train_samples", "24", "--per_device_train_batch_size", "4", "--num_train_epochs", "3",
        "--save_steps", "3", "--save_total_limit", "2", "--do_train", "--do_eval", "--max_eval_samples", "4",
        "--per_device_eval_batch_size", "4", "--max_new_tokens", "4", "--learning_rate", "1e-3",
        "--use_cpu", "--report_to", "none", "--logging_steps", "1", "--disable_tqdm", "true", "--seed", "0",
    ]  # fmt: skip


def attempt(command: list[str], log_file: Path, kill_at: str | None = None) -> tuple[int, str]:
    """Runs `command` (killed at `kill_at` through the `kill_test_hook`), its output in `log_file`."""
    env = {key: value for key, value in os.environ.items() if key != "MMGPT_KILL_AT"}
    env["PYTHONPATH"] = str(REPO)
    if kill_at is not None:
        env.update(MMGPT_KILL_AT=kill_at, PYTHONPATH=f"{HOOK_DIR}{os.pathsep}{REPO}")
    with open(log_file, "w") as log:
        completed = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return completed.returncode, log_file.read_text(errors="replace")


# The files of a checkpoint that hold training state (the others: config, code, processor files)
STATE_FILES = re.compile(r"^(model\.safetensors|optimizer\.pt|scheduler\.pt|rng_state.*\.pth|trainer_state\.json)$")


def on_disk(output_dir: Path) -> str:
    """Checkpoints (complete, or why not with the sizes of their state files) and the final model's files."""
    parts = []
    for folder in checkpoint_folders(output_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            parts.append(f"{folder.name} complete")
            continue
        files = [path for path in sorted(folder.iterdir()) if path.is_file()]
        state = ", ".join(f"{path.name} {path.stat().st_size} B" for path in files if STATE_FILES.match(path.name))
        others = sum(not STATE_FILES.match(path.name) for path in files)
        parts.append(f"{folder.name} incomplete ({problem}: {state or 'no state file'}; {others} other files)")
    if (output_dir / "model.safetensors").exists():
        parts.append(f"final model.safetensors {(output_dir / 'model.safetensors').stat().st_size} B")
    if (output_dir / RUN_COMPLETE_FILE).exists():
        parts.append(RUN_COMPLETE_FILE)
    return "; ".join(parts) or "nothing"


def what_the_rerun_did(log: str) -> str:
    """The resume decisions a rerun logged, and how it ended."""
    did = []
    skipped = re.search(r"Skipped incomplete checkpoints: (.*)\.", log)
    if skipped:
        did.append(f"skipped {skipped.group(1)}")
    resumed = re.search(r"Resuming from .*/(checkpoint-\d+)", log)
    if re.search(r"holds the finished run of this command", log):
        did.append("found the run finished: trained nothing, evaluated the final model")
    elif resumed:
        did.append(f"resumed from {resumed.group(1)}")
    else:
        did.append("started from scratch (no complete checkpoint)")
    killed = re.search(r"KILL_TEST: SIGKILL at (\S+)", log)
    did.append(f"then was killed ({killed.group(1)})" if killed else "then ran to the end")
    return "; ".join(did)


def max_difference(first: Path, second: Path) -> float:
    weights, reference = load_file(first), load_file(second)
    if weights.keys() != reference.keys():
        raise ValueError(f"The weights of {first} and {second} have different keys.")
    return max(float(abs(weights[key].astype("float64") - reference[key]).max()) for key in reference)


def kill_test(task: str, work_dir: Path) -> tuple[list[dict], float, bool]:
    run_dir = work_dir / task
    run_dir.mkdir(parents=True, exist_ok=True)
    preset = run_dir / "preset.json"
    preset.write_text(json.dumps(PRESETS[task], indent=2))
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    print(f"[{task}] reference run (uninterrupted)", flush=True)
    code, _ = attempt(train_command(task, run_dir / "reference", preset), logs / "reference.log")
    if code != 0:
        raise RuntimeError(f"The reference run failed: see {logs / 'reference.log'}")
    command, killed_dir = train_command(task, run_dir / "killed", preset), run_dir / "killed"
    rows, ok = [], True
    for index, (moment, kind, at) in enumerate(SCHEDULE, start=1):
        kill_at = kind if at is None else f"{kind}@{at}"
        code, log = attempt(command, logs / f"attempt_{index:02d}.log", kill_at)
        reached = code == -9 and f"KILL_TEST: SIGKILL at {kind}@{at}" in log
        ok &= reached
        if rows:
            rows[-1]["rerun"] = what_the_rerun_did(log)
        rows.append({"moment": moment, "reached": reached, "on_disk": on_disk(killed_dir), "exit": code})
        print(f"[{task}] {index:2d}. {moment}: {'killed' if reached else f'NOT REACHED (exit {code})'}", flush=True)
    code, log = attempt(command, logs / "final.log")
    rows[-1]["rerun"] = what_the_rerun_did(log) + ("" if code == 0 else f" FAILED (exit {code})")
    ok &= code == 0
    difference = max_difference(killed_dir / "model.safetensors", run_dir / "reference" / "model.safetensors")
    # Once more: a finished command trains nothing and leaves the weights as they are
    before = (killed_dir / "model.safetensors").read_bytes()
    code, log = attempt(command, logs / "rerun_finished.log")
    unchanged = (
        code == 0 and "holds the finished run" in log and (killed_dir / "model.safetensors").read_bytes() == before
    )
    rerun = "trained nothing, weights unchanged" if unchanged else "TRAINED AGAIN OR FAILED"
    rows.append({"moment": "(none: the finished command, run again)", "reached": True, "exit": code})
    rows[-1].update(on_disk=on_disk(killed_dir), rerun=rerun)
    return rows, difference, ok and unchanged


def table(task: str, rows: list[dict], difference: float) -> str:
    lines = [
        f"### {task}: final max |difference| to the uninterrupted run = {difference:g}",
        "",
        "| # | killed at | on disk after the kill | what the rerun did |",
        "| --- | --- | --- | --- |",
    ]
    for index, row in enumerate(rows, start=1):
        moment = row["moment"] if row["reached"] else f"{row['moment']} (NOT REACHED, exit {row['exit']})"
        lines.append(f"| {index} | {moment} | {row['on_disk']} | {row.get('rerun', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="outputs/kill_test", help="Where the runs, logs and table go.")
    parser.add_argument("--runs", default="captioning,asr", help="Comma-separated: captioning (ViT), asr (wav2vec2).")
    args = parser.parse_args(argv)
    work_dir = Path(args.work_dir).resolve()
    report, results, all_ok = [], {}, True
    for task in [name.strip() for name in args.runs.split(",") if name.strip()]:
        if (work_dir / task).exists():
            raise SystemExit(f"{work_dir / task} exists: remove it or choose another --work_dir.")
        rows, difference, ok = kill_test(task, work_dir)
        all_ok &= ok and difference == 0.0
        results[task] = {"rows": rows, "max_abs_difference": difference, "ok": ok}
        report.append(table(task, rows, difference))
    (work_dir / "kill_table.md").write_text("\n".join(report))
    (work_dir / "kill_test.json").write_text(json.dumps(results, indent=2))
    print("\n".join(report))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
