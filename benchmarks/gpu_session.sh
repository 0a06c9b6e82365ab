#!/usr/bin/env bash
# Everything the project measures on a lent GPU (minutes of it), in one run; reports go to $OUT (default
# runs/gpu) as they are produced, and each part ends before DEADLINE seconds:
#  1. the training points that need a GPU: TRAIN_ARGS, one or more `benchmarks.tables` argument lists separated
#     by '|', each a local launcher with its own --workers, all at once for TRAIN_S seconds, then stopped with
#     SIGTERM (each worker checkpoints and writes results.json); what they wrote, checkpoints included, comes back
#     as $OUT/train.tgz.part-* (15 MB each): `cat train.tgz.part-* | tar xz`, then the same tables command resumes;
#     a few workers train more than many (docs/cluster.md: "How many workers share one card");
#  2. speed: the LSTM against PyTorch's cuDNN LSTM at B=50 T=1000 H=128 and B=128 T=520 H=256, and the seeds
#     table (N = 1, 32, 256 seeds in one vmapped program vs one after another, and vmapped through the step scan
#     instead of the fused kernel), at --matmul_precision=highest
#     and =default (TF32; PyTorch follows: TF32 off / on in cuBLAS and cuDNN);
#  3. the non-slow test suite on the GPU, when TEST_S > 0.
#   bash benchmarks/gpu_session.sh                                   # on a GPU machine
#   SETTINGS=24x24x8 SEEDS_SETTING=4x12x8 SEEDS=1,2 RESULTS=/tmp/rehearsal TRAIN_ARGS="--table=adding
#     --preset=smoke --results_dir=/tmp/rehearsal --workers=1|--table=copy --preset=smoke
#     --results_dir=/tmp/rehearsal --workers=1" TRAIN_S=60 \
#     bash benchmarks/gpu_session.sh                                 # rehearsal on CPU
set -uo pipefail
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu}
PY=${PY:-python3}
DEADLINE=${DEADLINE:-570}  # seconds from the start by which everything has ended
# points that need a GPU, at the committed points' budget (mingru, gru and lstm at T=5000 came from here).
# Name only points nobody trains elsewhere: a fresh machine has no checkpoints (they are not committed), so
# it starts them from scratch. Unpack the archive into a scratch folder and move its points into place.
TRAIN_ARGS=${TRAIN_ARGS-"--table=adding --preset=long --seq_lens=2000 --results_dir=results/long --overwrite_tracked --workers=2|--table=copy --preset=long --seq_lens=1000 --results_dir=results/long --overwrite_tracked --workers=1"}
TRAIN_S=${TRAIN_S:-300}
RESULTS=${RESULTS:-results}  # where TRAIN_ARGS's tables write
PRECISIONS=${PRECISIONS-highest default}  # of the speed part; PRECISIONS= skips it
SETTINGS=${SETTINGS:-50x1000x128,128x520x256}
SEEDS_SETTING=${SEEDS_SETTING:-50x100x128}
SEEDS=${SEEDS:-1,32,256}
TEST_S=${TEST_S:-0}
left() { echo $((DEADLINE - SECONDS)); }
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import sys, jax, flax, optax; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1
} > "$OUT/speed.log"
cat "$OUT/speed.log"
touch "$OUT/.start"
limit=$(( TRAIN_S < $(left) - 90 ? TRAIN_S : $(left) - 90 ))  # 90 s: the workers' checkpoints, the archive
if [ -n "$TRAIN_ARGS" ] && [ "$limit" -gt 0 ]; then
  # TRAIN_ARGS: one or more `benchmarks.tables` argument lists separated by '|', each run as its own local
  # launcher at once (each names its --workers). SIGTERM goes to each timeout's process group: the launcher
  # and its workers, which checkpoint and stop; whatever still runs 30 s later is killed.
  IFS='|' read -ra trains <<< "$TRAIN_ARGS"
  for i in "${!trains[@]}"; do
    # shellcheck disable=SC2086
    timeout -s TERM -k 30 "$limit" $PY -m benchmarks.tables ${trains[$i]} --launcher=local \
      > "$OUT/train_$i.log" 2>&1 &
  done
  wait
  echo "training ended at ${SECONDS}s"
  for i in "${!trains[@]}"; do tail -40 "$OUT/train_$i.log"; done
  # what training wrote, checkpoints included (to resume), TensorBoard files not: one archive written aside and
  # renamed, then cut into parts of 15 MB (a returned file may have 16): cat train.tgz.part-* | tar xz
  find "$RESULTS" -type f -newer "$OUT/.start" -not -path '*/tb/*' > "$OUT/.new"
  tar czf "$OUT/.tgz" -T "$OUT/.new" 2>/dev/null
  split -b 15000000 "$OUT/.tgz" "$OUT/train.tgz.part-" && rm -f "$OUT/.tgz"
  ls -la "$OUT"
fi
for precision in $PRECISIONS; do
  for section in speed seeds; do
    [ "$(left)" -lt 40 ] && { echo "no time left for $section at $precision"; continue; }
    if [ $section = speed ]; then
      args=(--preset=full --settings="$SETTINGS" --cells=lstm --noflax --rounds=5 --min_round_s=0.2)
    else
      args=(--preset=gpu --seeds_setting="$SEEDS_SETTING" --seed_counts="$SEEDS" --variants=step --notorch --rounds=3)
    fi
    timeout "$(( $(left) < 150 ? $(left) : 150 ))" $PY -m benchmarks.speed --sections=$section "${args[@]}" \
      --matmul_precision="$precision" --out="$OUT/${section}_$precision.md" >> "$OUT/speed.log" 2>&1
    echo "$section $precision exit $? at ${SECONDS}s" | tee -a "$OUT/speed.log"
  done
done
grep -E "^(seeds|B=|speed |seeds )" "$OUT/speed.log"
if [ "$TEST_S" -gt 0 ] && [ "$(left)" -gt 30 ]; then
  timeout "$(( $(left) < TEST_S ? $(left) : TEST_S ))" $PY -m pytest -q -m "not slow" -p no:cacheprovider \
    -o addopts="" --timeout=120 -n 8 tests > "$OUT/tests.log" 2>&1
  echo "tests exit $? at ${SECONDS}s"; tail -15 "$OUT/tests.log"
fi
rm -f "$OUT/.start" "$OUT/.new" "$OUT/.tgz"
ls -la "$OUT"
