#!/usr/bin/env bash
# The GPU paths in one go, for a machine with a CUDA GPU (nothing else needs one). Writes logs and tables
# into $OUT (default work_dirs/gpu_checks); each step's output says what it checked.
#   1. nccl with one rank, fp16 autocast (float16 + GradScaler): train the embedded UNPG config, export ONNX
#      and verify it on the CUDA (and TensorRT, when present) execution providers
#   2. the head step at scale on the GPU, fp16 autocast and fp32, beside the CPU table in the README
#   3. config.dali on the GPU decode path ("mixed"), when NVIDIA DALI is installed (its tests add a cuda case)
#
#   bash benchmarks/gpu_checks.sh              # after `make test` has built .venv (or in any env with the deps)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${OUT:-work_dirs/gpu_checks}
mkdir -p "$OUT"
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: these checks need a GPU')"
$PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"

$PY -m torch.distributed.run --standalone --nproc_per_node=1 recipes/arcface_torch/train.py \
  recipes/arcface_torch/configs/synthetic_unpg --set fp16=True --set output="$OUT/train_fp16" --force \
  2>&1 | tee "$OUT/train_fp16.log"
grep -q "(nccl group)" "$OUT/train_fp16.log" || { echo "FAIL: torchrun with one rank did not form an nccl group"; exit 1; }
$PY tools/export_onnx.py "$OUT/train_fp16" --output "$OUT/train_fp16/model.onnx" --force 2>&1 | tee "$OUT/export.log"
$PY tools/verify_onnx.py "$OUT/train_fp16/model.onnx" --checkpoint "$OUT/train_fp16" 2>&1 | tee "$OUT/verify.log"

for amp in fp16 none; do
  $PY benchmarks/bench_unpg_scale.py --head --device cuda --amp "$amp" --worlds 8 16 32 64 --repeats 7 \
    2>&1 | grep -v USDT | tee "$OUT/head_scale_$amp.txt"
done

if $PY -c "import nvidia.dali" 2>/dev/null; then
  $PY -m pytest -q tests/recipes/arcface_torch/datasets/test_dali_batches.py 2>&1 | tee "$OUT/dali.log"
else
  echo "NVIDIA DALI not installed: config.dali GPU path not checked (pip install -e .[dali])" | tee "$OUT/dali.log"
fi
