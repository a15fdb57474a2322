"""Generation speed of the cross-attention fusion, this package against a git ref of a checkout, in the same run.

    multimodal-gpt benchmark generation --baseline main           # from a git checkout of multimodal_gpt

Both versions of the package build the same randomly initialised model (CLIP-ViT 6x384 at 224 px / patch 32, so 49
image patches; GPT-2 6x512 with GPT-2's 50,257-token vocabulary; gated cross-attention before every block, gates
open) and generate `--new_tokens` tokens greedily for a batch of prompts with one image each. The ref's package is
extracted with `git archive` from the git checkout of the working directory into a temporary folder (this package
is the one installed, or the checkout itself for an editable install); each measurement runs in its own interpreter,
the two versions alternating, and the median of `--repeats` runs is printed as new tokens per second. Time nothing
while other jobs load the machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

# The folder that holds the `multimodal_gpt` package measured as "this package": a checkout, or site-packages.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def measure(batch_size: int, new_tokens: int, threads: int) -> float:
    """New tokens per second of one greedy `generate()` (after one warm-up call), with the package on sys.path."""
    import torch
    from transformers import CLIPVisionConfig, GPT2Config

    from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=6,
        num_attention_heads=6,
        image_size=224,
        patch_size=32,
    )
    text = GPT2Config(n_layer=6, n_embd=512, n_head=8, vocab_size=50260, bos_token_id=0, eos_token_id=0)
    config = MultimodalGPTConfig(
        text_config=text, vision_config=vision, fusion="cross_attention", image_token_id=50258
    )
    model = MultimodalGPTForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("_gate"):
                parameter.fill_(0.5)
    input_ids = torch.tensor([[50258, 11, 12, 13, 14, 15, 16, 17]] * batch_size)
    pixel_values = torch.randn(batch_size, 3, 224, 224)
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=50259)
    with torch.no_grad():
        model.generate(input_ids=input_ids, pixel_values=pixel_values, **settings)  # warm-up
        start = time.perf_counter()
        model.generate(input_ids=input_ids, pixel_values=pixel_values, **settings)
        elapsed = time.perf_counter() - start
    return batch_size * new_tokens / elapsed


def extract_ref(ref: str, folder: Path) -> Path:
    """The `multimodal_gpt` package of git `ref` of the checkout in the working directory, extracted under `folder`."""
    toplevel = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if toplevel.returncode != 0:
        raise SystemExit(
            f"--baseline {ref} is a git ref of a multimodal_gpt checkout: run this from one (git said: "
            f"{toplevel.stderr.strip()})."
        )
    archive = folder / "ref.tar"
    subprocess.run(
        ["git", "archive", "-o", str(archive), ref, "multimodal_gpt"], cwd=toplevel.stdout.strip(), check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "ref", filter="data")
    return folder / "ref"


def run_child(package_root: Path, args: argparse.Namespace) -> float:
    """One measurement in a fresh interpreter that imports the `multimodal_gpt` of `package_root`: this file runs as
    a script (by path, so that the measured package, not this one, is the one on `sys.path`)."""
    flags = ["--measure", "--batch_size", str(args.batch_size), "--new_tokens", str(args.new_tokens)]
    flags += ["--threads", str(args.threads)]
    script = f"runpy.run_path({__file__!r}, run_name='__main__')"
    runner = f"import runpy, sys; sys.argv = {['generation', *flags]!r}; {script}"
    command = [sys.executable, "-c", runner]
    env = dict(os.environ, PYTHONPATH=str(package_root))
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=package_root)
    return json.loads(finished.stdout.strip().splitlines()[-1])["tokens_per_second"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="multimodal-gpt benchmark generation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--baseline", default="main", help="Git ref to compare with (its multimodal_gpt package).")
    parser.add_argument("--batch_size", type=int, default=4, help="Prompts generated together, one image each.")
    parser.add_argument("--new_tokens", type=int, default=20, help="Tokens generated per prompt.")
    parser.add_argument("--repeats", type=int, default=3, help="Measurements per version (median reported).")
    parser.add_argument("--threads", type=int, default=torch_threads(), help="torch.set_num_threads in each run.")
    parser.add_argument("--measure", action="store_true", help="Internal: one measurement of the package on path.")
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps({"tokens_per_second": measure(args.batch_size, args.new_tokens, args.threads)}))
        return
    with tempfile.TemporaryDirectory() as folder:
        versions = {
            f"baseline ({args.baseline})": extract_ref(args.baseline, Path(folder)),
            "this package": PACKAGE_ROOT,
        }
        results: dict[str, list[float]] = {name: [] for name in versions}
        for _ in range(args.repeats):
            for name, root in versions.items():
                results[name].append(run_child(root, args))
    for name, values in results.items():
        print(f"{name}: {statistics.median(values):.1f} new tokens/s (runs: {', '.join(f'{v:.1f}' for v in values)})")


def torch_threads() -> int:
    return max(1, (os.cpu_count() or 1))


if __name__ == "__main__":
    main()
