"""Execution policies that depend on the hardware, decided here from measurements.

Each function takes the backend's name (`jax.default_backend()`: "cpu", "gpu", "tpu", ...) so a
unit test covers every branch without the hardware. The flags `--sequence_path`, `--unroll` and
`--seed_chunk` override them (their value "auto" / 0 asks this module); `--matmul_precision` is
mapped to the backend's algorithm, or refused where it has none (`matmul_precision`).

Measurements behind the choices (`python -m benchmarks.speed`, ratios side by side in one run;
`results/speed/`):

- CPU, 2 cores: the fused whole-sequence kernel of the built-in cells (`cells.fused`) was 0.7-1.0x
  as fast as autodiff of the step scan (lstm 0.75-0.8x, gru 0.7-0.85x, rnn 0.95-1.0x at B=128
  T=120 H=128, forward + backward), so CPU runs the step scan; scan unroll 2 and 4 were 0.74-0.96x
  as fast as unroll 1 on both paths, so CPU does not unroll.
- CPU, 2 cores (`results/speed/parallel_scan_cpu.md`, training step, B=64 T=520 H=128):
  the associative scans were 1.4-2.0x slower than the step scans (lru 413 vs 202 ms, mingru 190 vs
  128, minlstm 274 vs 186), so the parallel scans were accelerator defaults (lru: see below); `exprnn`'s
  whole-sequence method (exp(A) once) was 17x as fast as its step (exp(A) at every step: 120 vs
  2054 ms) and is declared the faster path everywhere (`sequence_backends`).
- CPU, 2 cores (`results/speed/linear_cpu.md`, training step, adding B=50 T=1000 H=128, one layer,
  beside revision 532934c's code in one process): autodiff of the whole-sequence `associative_scan`
  ran its elementwise work over (T, B, N) arrays that do not fit in cache (a softplus fusion at 13 ns
  an element against 3 ns inside the step's loop), and lru's readout ran at all T steps where the
  adding task reads the last. With the scan's own backward pass (`cells.scan`), chunks of
  `CPU_TIME_CHUNK` = 16 steps (`time_chunk`; 16-32 were alike, the whole sequence 1.5-2x slower)
  and the last output read out alone, lru's whole-sequence method beat its step scan (434 vs
  533 ms) and is its CPU default too (`sequence_backends`): 2.5x revision 532934c's step scan.
  minGRU/minLSTM's gates from one exp (`cells.minrnn.gate_pair`) made their step 1.6x as fast;
  their chunked whole-sequence method was no faster than the step (357 vs 329, 399 vs 545 ms, within
  the noise of a shared machine), so they keep the step scan on CPU.
- CPU: a step vmapped over many seeds keeps one big buffer of backward residuals; past glibc's
  32 MiB mmap threshold it is mapped afresh on every call (~15,000 page faults per step at 4 LSTM
  seeds, 0.6x as fast as sequential seeds). Seeds are vmapped in chunks keeping under
  `CPU_SEED_CHUNK_BYTES` of residuals, looped with `lax.map` (bit-identical to one vmap).
- CPU: a step vmapped over a seed axis of size 1 runs every GEMM as a batched `dot_general`
  (batch dimension 1), which XLA:CPU ran at half the speed of the plain GEMM (profiled, lstm
  B=128 T=120 H=128: the per-step weight-gradient dots 22 + 19 ms against 12 ms unbatched; the whole
  step 147 -> 123 ms). `experiments.experiment.vmap_in_chunks` therefore runs a lone seed (a one-seed
  run, or a chunk of one) without a batch axis.
- GPU (H200, `results/speed/gpu_h200.md`): the fused kernel was 1.3-1.8x as fast as the
  step scan for rnn, lstm and gru at B=50 T=100/1000 H=128 and B=128 T=520 H=256; lstm at T=1000 with
  scan unroll 1, 4, 8, 16: 30.8, 17.7, 15.3, 14.5 ms, so `GPU_UNROLL` is 8 (16 gains 6% for a larger
  program). One vmap over 8 and 32 seeds gave 3.8x and 7.9x the seed-steps/s of one seed, where the
  same seeds one after another gave 1.0x; chunking serialises seeds, so a GPU chunks only when the
  seeds' residuals would not fit in `GPU_MEMORY_FRACTION` of its memory.
- GPU (H100 80GB, training the long adding table): evaluating 3 LSTM seeds at adding T=5000 on 250
  held-out sequences at once asked for one 14.3 GiB buffer (the sequence path's input projection of
  every step, (T, seeds, rows, 4H) float32, and its transposed copy) and ran out of memory beside two
  other workers on the card.
  An evaluation chunk therefore holds at most `EVAL_ROWS` sequences and, on an accelerator, no more
  than the device's members fit in `GPU_MEMORY_FRACTION` of its memory at the per-sequence size of the
  backward residuals (an upper bound of what the forward pass keeps: 31 MB per LSTM sequence at T=5000
  H=128, against the ~23 MB the projection and its copy take).
"""

PATHS = ("auto", "sequence", "step")
PRECISIONS = ("highest", "default", "tf32x3")
# --matmul_precision -> `jax.default_matmul_precision`'s value; tf32x3 is XLA's dot algorithm of three TF32
# passes (a split of each fp32 operand into a TF32 head and tail; close to fp32 accuracy), on GPUs only
PRECISION_VALUES = {"highest": "highest", "default": "default", "tf32x3": "TF32_TF32_F32_X3"}
PRECISION_BACKENDS = {"tf32x3": ("gpu", "cuda")}  # XLA:CPU rejects the algorithm when it compiles
CPU_TIME_CHUNK = 16
CPU_SEED_CHUNK_BYTES = 30 * 2**20
GPU_MEMORY_FRACTION = 0.5  # of the device's memory, for the seeds' backward residuals
GPU_UNROLL = 8
EVAL_ROWS = 250  # held-out sequences evaluated at once, at most
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")


def sequence_path(backend: str, requested: str = "auto", preferred: tuple[str, ...] | None = None) -> str:
    """ "sequence" (the cell's whole-sequence method, when it has one) or "step" (scan of the step).

    `preferred`: the backends where the cell declares its whole-sequence method the faster path
    (its `sequence_backends` attribute, from its own measurements: exprnn computes exp(A) once per
    sequence instead of once per step, so everywhere); None means the accelerators.
    """
    if requested != "auto":
        return requested
    return "sequence" if backend in (ACCELERATORS if preferred is None else preferred) else "step"


def matmul_precision(backend: str, requested: str) -> str:
    """The `jax.default_matmul_precision` value of `--matmul_precision=requested` on `backend`.

    ValueError (one line naming the flag) where the backend lacks the algorithm: tf32x3 off a GPU.
    """
    allowed = PRECISION_BACKENDS.get(requested)
    if allowed is not None and backend not in allowed:
        usable = ", ".join(p for p in PRECISIONS if backend in PRECISION_BACKENDS.get(p, (backend,)))
        raise ValueError(
            f"--matmul_precision={requested}: the three-pass TF32 dot algorithm needs a GPU; "
            f"on {backend} use one of {usable}"
        )
    return PRECISION_VALUES[requested]


def time_chunk(backend: str, chunkable: bool) -> int:
    """Time steps per chunk of a whole-sequence method that may run in chunks (0 = the whole sequence).

    `chunkable`: the cell's `time_chunkable` (the linear recurrences). On a CPU, chunks of
    `CPU_TIME_CHUNK` steps keep each chunk's elementwise work in cache (see the module docstring);
    an accelerator runs the whole sequence at once.
    """
    return CPU_TIME_CHUNK if chunkable and backend not in ACCELERATORS else 0


def scan_unroll(backend: str, requested: int = 0) -> int:
    """Steps per iteration of the time scans (`lax.scan(unroll=...)`)."""
    if requested > 0:
        return requested
    return GPU_UNROLL if backend in ACCELERATORS else 1


def seed_chunk(
    backend: str, per_seed_bytes: int, num_seeds: int, device_memory: int | None = None, requested: int = 0
) -> int:
    """Seeds of one device vmapped at once (the rest in a `lax.map` loop over chunks), at least 1.

    `per_seed_bytes`: the backward residuals of one seed's step (`SequenceModel.activation_bytes`);
    `num_seeds`: the seeds on this device; `device_memory`: its memory in bytes, if known.
    """
    if requested > 0:
        return min(requested, num_seeds)
    per_seed = max(per_seed_bytes, 1)
    if backend in ACCELERATORS:
        if device_memory is None:
            return num_seeds
        return max(1, min(num_seeds, int(GPU_MEMORY_FRACTION * device_memory) // per_seed))
    return max(1, min(num_seeds, CPU_SEED_CHUNK_BYTES // per_seed))


def eval_rows(backend: str, per_row_bytes: int, members: int, device_memory: int | None = None) -> int:
    """Held-out sequences per chunk of one evaluation (the chunks looped with `lax.map`), at least 1.

    `per_row_bytes`: one sequence's backward residuals (`SequenceModel.activation_bytes(1, T, I)`), a bound on
    its forward pass; `members`: the seeds (x learning rates) evaluated together on one device.
    """
    if backend in ACCELERATORS and device_memory is not None:
        fit = int(GPU_MEMORY_FRACTION * device_memory) // (max(members, 1) * max(per_row_bytes, 1))
        return max(1, min(EVAL_ROWS, fit))
    return EVAL_ROWS
