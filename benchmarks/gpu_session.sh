#!/usr/bin/env bash
# Everything the project measures and checks on a GPU, in one run (a lent H100/H200 has minutes):
# 1. the speed benchmark's gpu preset (ours vs cuDNN, both paths, seeds 1..256), 2. the non-slow
# test suite on the GPU. Reports go to $OUT (default runs/gpu), written as they are produced.
#   bash benchmarks/gpu_session.sh                 # on a GPU machine
#   PRESET=gpu_tiny TEST_ARGS=tests/test_fused.py bash benchmarks/gpu_session.sh   # rehearsal on CPU
set -uo pipefail
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu}
PRESET=${PRESET:-gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import sys, jax, flax, optax; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1
} > "$OUT/env.txt"
cat "$OUT/env.txt"
timeout "${SPEED_TIMEOUT:-330}" $PY -m benchmarks.speed --preset="$PRESET" --out="$OUT/speed_gpu.md" 2>&1 | tee "$OUT/speed.log"
echo "speed exit: ${PIPESTATUS[0]}"
if [ "$PRESET" = gpu ]; then  # the unroll policy: lstm at the long setting, both paths
  timeout "${UNROLL_TIMEOUT:-70}" $PY -m benchmarks.speed --sections=speed --settings=50x1000x128 --cells=lstm \
    --variants=sequence+unroll1,sequence+unroll4,sequence+unroll16,step+unroll1 --notorch --rounds=3 \
    --out="$OUT/unroll_gpu.md" 2>&1 | tail -12
fi
timeout "${TEST_TIMEOUT:-200}" $PY -m pytest -q -m "not slow" -p no:cacheprovider -o addopts="" --timeout=120 ${TEST_ARGS:-tests} 2>&1 | tee "$OUT/tests.log" | tail -40
echo "tests exit: ${PIPESTATUS[0]}"
