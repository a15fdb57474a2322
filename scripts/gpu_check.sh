#!/usr/bin/env bash
# The distributed and device_map checks that need GPUs, a few steps each, on the built-in synthetic pretraining data
# (batches mix text-only, image and audio rows, so some ranks get a batch without a modality):
#   1. one GPU, bf16;  2. FSDP2 (scripts/accelerate/fsdp.yaml);  3-4. DeepSpeed ZeRO-2 and ZeRO-3
#   (scripts/accelerate/deepspeed_zero{2,3}.yaml, skipped if deepspeed is not installed);
#   5. device_map="auto" load + generate, against a normal load.
# Run from the repository root on a machine with CUDA GPUs and this package installed (pip install -e .):
#   bash scripts/gpu_check.sh                 # logs and output folders under runs/gpu_check (or $GPU_CHECK_DIR)
# Each check runs even if an earlier one failed; the summary at the end says which passed. Exit status: 1 if any
# check failed. With one GPU the FSDP and DeepSpeed checks run one process (their code path, no sharding).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${GPU_CHECK_DIR:-runs/gpu_check}"
mkdir -p "$OUT_DIR"
PYTHON="${PYTHON:-python}"

NUM_GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
if [[ "$NUM_GPUS" -lt 1 ]]; then
    echo "No CUDA GPU visible (torch.cuda.device_count() == 0): this script is for GPU machines." >&2
    exit 2
fi
NPROC=$((NUM_GPUS >= 2 ? 2 : 1))
echo "GPUs: $NUM_GPUS; distributed checks use $NPROC process(es). Logs: $OUT_DIR"

# A few steps of pretraining on the tiny preset: 16 rows, 4 per device, logged every step.
TRAIN_ARGS=(
    --task pretrain --dataset_name synthetic --preset tiny --vocab_size 300 --max_train_samples 16
    --per_device_train_batch_size 4 --max_steps 4 --logging_steps 1 --do_train --save_strategy no
    --report_to none --disable_tqdm true --seed 0
)

declare -a NAMES=() RESULTS=()
check() {  # check NAME COMMAND...: run it, log it, record PASS or FAIL
    local name="$1"
    shift
    echo "== $name: $*"
    if "$@" >"$OUT_DIR/$name.log" 2>&1; then
        RESULTS+=("PASS")
    else
        RESULTS+=("FAIL (see $OUT_DIR/$name.log)")
        tail -n 20 "$OUT_DIR/$name.log" >&2
    fi
    NAMES+=("$name")
}

# 1. One GPU, bf16
check single_gpu_bf16 env CUDA_VISIBLE_DEVICES=0 "$PYTHON" scripts/train.py "${TRAIN_ARGS[@]}" --bf16 \
    --output_dir "$OUT_DIR/single_gpu_bf16"

# 2. FSDP2 (bf16 from the config)
check fsdp "$PYTHON" -m accelerate.commands.launch --config_file scripts/accelerate/fsdp.yaml \
    --num_processes "$NPROC" --main_process_port 0 scripts/train.py "${TRAIN_ARGS[@]}" --output_dir "$OUT_DIR/fsdp"

# 3-4. DeepSpeed ZeRO-2 and ZeRO-3, if installed
for stage in 2 3; do
    if "$PYTHON" -c 'import deepspeed' >/dev/null 2>&1; then
        check "deepspeed_zero$stage" "$PYTHON" -m accelerate.commands.launch \
            --config_file "scripts/accelerate/deepspeed_zero$stage.yaml" --num_processes "$NPROC" \
            --main_process_port 0 scripts/train.py "${TRAIN_ARGS[@]}" --output_dir "$OUT_DIR/deepspeed_zero$stage"
    else
        NAMES+=("deepspeed_zero$stage")
        RESULTS+=("SKIPPED (pip install deepspeed)")
    fi
done

# 5. device_map="auto" (split over every GPU by a small max_memory) generates what a normal load generates
check device_map_auto "$PYTHON" - "$OUT_DIR/device_map_model" <<'PY'
import sys

import numpy as np
import torch
from transformers.integrations.accelerate import compute_module_sizes

from multimodal_gpt import MultimodalGPTForConditionalGeneration
from multimodal_gpt.training.presets import build_model_and_processor

folder = sys.argv[1]
model, processor = build_model_and_processor("tiny", texts=["a red circle above a blue square"] * 50, vocab_size=300)
model.save_pretrained(folder)
processor.save_pretrained(folder)
num_gpus = torch.cuda.device_count()
first = "cuda:0" if num_gpus else "cpu"
size = compute_module_sizes(model)[0][""]
# Small per-GPU budgets, so that the model is spread over every GPU (the last one takes the rest, then the CPU)
max_memory = {index: size // num_gpus + size // 8 for index in range(num_gpus)} | {"cpu": 4 * size}
split = MultimodalGPTForConditionalGeneration.from_pretrained(folder, device_map="auto", max_memory=max_memory)
whole = MultimodalGPTForConditionalGeneration.from_pretrained(folder).to(first)
print("hf_device_map:", getattr(split, "hf_device_map", None))
image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
inputs = processor(text="<image> a", images=[image], return_tensors="pt").to(first)
settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
tokens_split, tokens_whole = split.generate(**inputs, **settings), whole.generate(**inputs, **settings)
print("device_map='auto':", tokens_split.tolist(), "normal load:", tokens_whole.tolist())
assert torch.equal(tokens_split.cpu(), tokens_whole.cpu()), "device_map='auto' generated different tokens"
PY

echo
echo "| check | result |"
echo "|---|---|"
status=0
for index in "${!NAMES[@]}"; do
    echo "| ${NAMES[$index]} | ${RESULTS[$index]} |"
    if [[ "${RESULTS[$index]}" == FAIL* ]]; then
        status=1
    fi
done
for name in single_gpu_bf16 fsdp deepspeed_zero2 deepspeed_zero3; do
    if [[ -f "$OUT_DIR/$name/train_results.json" ]]; then
        echo "$name: $(tr -d '\n ' <"$OUT_DIR/$name/train_results.json")"
    fi
done
exit "$status"
