"""Train one cell on one task: `train_and_evaluate(config, workdir)` and its command line.

    python -m experiments.train --cell=lstm --task=adding --seq_len=100 --workdir=runs/x

Seeds `seed .. seed+num_seeds-1` train together in one compiled program: every per-seed
function below is written for one seed and `jax.vmap`-ed over a leading seed axis. The seed axis
is sharded over a 1-D device mesh (axis "seeds", `jax.shard_map`): each device runs its
num_seeds / num_devices seeds, vmapped in chunks (`vmap_in_chunks`, chunk size from
`experiments.policy`). A run with one seed has a seed axis of length 1.

Learning-rate sweeps (`--learning_rate=1e-4,3e-4,1e-3`): the rate lives in the optimizer state
(`optax.inject_hyperparams`), so the R rates x S seeds are R*S members of the same leading axis,
member m = r * S + s (`config.members`), trained by the same program. A sweep also evaluates every
member on the validation split (`valid_*` in metrics.jsonl) and results.json reports each rate and
the best one on that split (`_results`). "Seed" below means a member: one (seed, rate) pair.
"""

import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import compile_cache, io, policy, schema
from experiments.build import Parts, build, make_optimizer, member_learning_rates
from experiments.checkpoint import UNREADABLE, Checkpoints, saved_steps
from experiments.config import Config, ConfigError, check_workdir, learning_rates, members, num_devices, num_members
from experiments.lock import workdir_lock
from experiments.tensorboard import TensorBoardLog
from experiments.validation import validate

# fields that may differ when resuming
RESUMABLE_CHANGES = (
    "steps", "eval_every", "checkpoint_every", "diag_every", "num_devices", "seed_chunk", "remat", "tensorboard",
)  # fmt: skip
SEEDS = "seeds"  # the mesh axis of seeds


def vmap_in_chunks(fn: Any, chunk: int | Callable[[int], int]) -> Any:
    """`jax.vmap(fn)` over a leading seed axis, computed `chunk` seeds at a time (`jax.lax.map`).

    `chunk` is a number, or a function of the seed axis' length n (read when tracing) giving one.

    Bit-identical to `jax.vmap(fn)` on CPU when every chunk holds two seeds or more (tested); a
    lone seed runs without the batch axis (equal to float32 rounding; see `vmapped`). Why chunks:
    a step vmapped over all N seeds keeps N x the scan's stacked backward residuals in one
    temporary buffer; on CPU, once that passes glibc's 32 MiB mmap threshold it is mapped fresh
    on every call, and the page faults of filling it made 4 and 8 vmapped LSTM seeds 0.6x as
    fast as running them one by one. Chunks
    keep the live buffer at `chunk` seeds' worth and reuse it. On a GPU chunking serialises the
    seeds, so `experiments.policy.seed_chunk` chunks there only when memory requires it.
    """

    def vmapped(tree: Any) -> Any:
        if jax.tree.leaves(tree)[0].shape[0] > 1:
            return jax.vmap(fn)(tree)
        # one seed: no batch axis at all (a size-1 vmap makes every dot a batched dot_general, which
        # XLA:CPU runs 2x slower than a plain GEMM: see experiments.policy)
        return jax.tree.map(lambda a: a[None], fn(jax.tree.map(lambda a: a[0], tree)))

    def chunked(tree: Any) -> Any:
        n = jax.tree.leaves(tree)[0].shape[0]
        size = chunk(n) if callable(chunk) else chunk
        if n <= size:
            return vmapped(tree)
        k = n // size * size
        head = jax.tree.map(lambda a: a[:k].reshape((k // size, size) + a.shape[1:]), tree)
        out = jax.tree.map(lambda a: a.reshape((k,) + a.shape[2:]), jax.lax.map(vmapped, head))
        if k < n:
            tail = vmapped(jax.tree.map(lambda a: a[k:], tree))
            out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, tail)
        return out

    return chunked


class TrainState(NamedTuple):
    """Everything a step reads; checkpointed whole, so a resumed run is bit-identical.

    The meters (`loss_sum` ... `count`) accumulate between logging steps on the device.
    """

    params: Any
    opt_state: Any
    step: jax.Array  # int32, steps taken
    data_key: jax.Array  # the seed's data key; batch t uses fold_in(data_key, t)
    diverged_at: jax.Array  # int32, first step with a non-finite loss or gradient, else -1
    loss_sum: jax.Array
    grad_norm_sum: jax.Array
    grad_norm_max: jax.Array
    clipped: jax.Array
    count: jax.Array


class Experiment:
    """The pure functions of one config: init, train step and evaluation, per seed (per member, in a sweep).

    `learning_rates`: the R rates; `members`: (seed, rate) of each of the R x S members, in the order of
    the state's leading axis (`config.members`); `sweep`: R > 1.
    """

    def __init__(self, config: Config, parts: Parts | None = None):
        """`parts`: what `build(config)` (or `validate(config)`) returned, so nothing is built twice."""
        self.config = config
        self.task, _, self.model, self.optimizer = parts or build(config)
        self.learning_rates = learning_rates(config)
        self.members = members(config)
        self.sweep = len(self.learning_rates) > 1

    def member_inputs(self) -> tuple[jax.Array, np.ndarray]:
        """What `init_states` takes for every member: seeds (M,) int32, and learning rates (M, 1 + G) float32
        (`member_learning_rates`)."""
        seeds = jnp.asarray([seed for seed, _ in self.members], jnp.int32)
        return seeds, np.stack([member_learning_rates(self.config, rate) for _, rate in self.members])

    def precision(self) -> contextlib.AbstractContextManager:
        """Context under which this config's programs are traced: its fp32 matmul precision."""
        return jax.default_matmul_precision(
            policy.matmul_precision(jax.default_backend(), self.config.matmul_precision)
        )

    def mesh(self) -> Mesh:
        """The 1-D mesh over the devices the seeds are sharded over (see `config.num_devices`)."""
        devices = jax.local_devices()
        return Mesh(np.array(devices[: num_devices(self.config, len(devices))]), (SEEDS,))

    def loss_fn(self, params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        return self.task.loss(self.model.apply(params, inputs), targets)

    def init_state(self, seed: jax.Array, rates: jax.Array | None = None) -> TrainState:
        """One member's state: parameters and data of `seed`, its optimizer state holding `rates`
        ((1 + G,), `member_learning_rates`; None: those of the config's first learning rate)."""
        init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
        inputs, _ = self.task.sample(data_key, 1)
        params = self.model.init(init_key, inputs)
        optimizer = self.optimizer if rates is None else make_optimizer(self.config, rates)
        zero = jnp.zeros((), jnp.float32)
        return TrainState(
            params, optimizer.init(params), jnp.zeros((), jnp.int32), data_key,
            jnp.full((), -1, jnp.int32), zero, zero, zero, zero, zero,
        )  # fmt: skip

    def batch(self, state: TrainState) -> tuple[jax.Array, jax.Array]:
        key = jax.random.fold_in(state.data_key, state.step)
        return self.task.sample(key, self.config.batch_size)

    def train_step(self, state: TrainState) -> TrainState:
        """One update. A non-finite loss or gradient freezes this seed and marks `diverged_at`."""
        inputs, targets = self.batch(state)
        loss, grads = jax.value_and_grad(self.loss_fn)(state.params, inputs, targets)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        alive = state.diverged_at < 0
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite & alive, n, o), new, old)  # noqa: E731
        clip = self.config.clip_norm
        return TrainState(
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + 1,
            data_key=state.data_key,
            diverged_at=jnp.where(alive & ~finite, state.step, state.diverged_at),
            loss_sum=state.loss_sum + jnp.where(finite, loss, 0.0),
            grad_norm_sum=state.grad_norm_sum + jnp.where(finite, grad_norm, 0.0),
            grad_norm_max=jnp.maximum(state.grad_norm_max, jnp.where(finite, grad_norm, 0.0)),
            clipped=state.clipped + ((grad_norm > clip) & (clip > 0)),
            count=state.count + finite,
        )

    def init_states(self, seeds: jax.Array, rates: Any = None) -> TrainState:
        """`init_state` of every member, stacked: seeds (N,), rates (N, 1 + G) (`member_inputs`; None: every
        member at the config's first learning rate). A `lax.map`, not a vmap: a vmapped
        initialisation batches the orthogonal initialisers' QR factorisations, and two batched
        LAPACK calls on XLA's CPU thread pool could each wait for the other forever."""
        seeds = jnp.asarray(seeds)
        if rates is None:
            first = member_learning_rates(self.config, self.learning_rates[0])
            rates = np.broadcast_to(first, (seeds.shape[0], first.shape[0]))
        return jax.lax.map(lambda member: self.init_state(*member), (seeds, jnp.asarray(rates)))

    def compiled_init(self, mesh: Mesh | None = None) -> Any:
        """The jitted `init_states`, its output sharded over `mesh`'s seed (member) axis."""
        mesh = mesh or self.mesh()
        return jax.jit(self.init_states, out_shardings=NamedSharding(mesh, P(SEEDS)))

    def seed_chunk(self, seeds_per_device: int | None = None) -> int:
        """Seeds per vmapped chunk of the train step on one device (`experiments.policy.seed_chunk`)."""
        c = self.config
        per_seed = self.model.activation_bytes(c.batch_size, self.task.length, self.task.input_size)
        n = seeds_per_device or num_members(c)
        backend, memory = _device_memory()
        return policy.seed_chunk(backend, per_seed, n, memory, c.seed_chunk)

    def eval_rows(self, members_per_device: int | None = None) -> int:
        """Held-out sequences per chunk of one evaluation on one device (`experiments.policy.eval_rows`)."""
        per_row = self.model.activation_bytes(1, self.task.length, self.task.input_size)
        backend, memory = _device_memory()
        return policy.eval_rows(backend, per_row, members_per_device or num_members(self.config), memory)

    def compiled_step(self, mesh: Mesh | None = None) -> Any:
        """The jitted train step over a leading seed axis sharded over `mesh` (state donated).

        The chunk size follows the number of seeds each device holds when the step is traced.
        """
        mesh = mesh or self.mesh()
        step = jax.shard_map(
            vmap_in_chunks(self.train_step, self.seed_chunk),
            mesh=mesh,
            in_specs=P(SEEDS),
            out_specs=P(SEEDS),
            check_vma=False,
        )
        return jax.jit(step, donate_argnums=0)

    def compiled_eval(self, mesh: Mesh | None = None) -> Any:
        """The jitted evaluation of every seed's parameters on the (replicated) held-out set."""
        mesh = mesh or self.mesh()
        evaluate = jax.vmap(self.evaluate, in_axes=(0, None))
        return jax.jit(
            jax.shard_map(evaluate, mesh=mesh, in_specs=(P(SEEDS), P()), out_specs=P(SEEDS), check_vma=False)
        )

    def eval_splits(self) -> dict[str, str]:
        """metrics.jsonl prefix -> the held-out split evaluated at every logging step: the test split
        ("eval_"), and in a sweep the validation split ("valid_") its best rate is chosen on."""
        return {"eval": "test", "valid": "valid"} if self.sweep else {"eval": "test"}

    def eval_set(self, split: str = "test", members_per_device: int | None = None) -> tuple[jax.Array, jax.Array]:
        """The fixed held-out set of `split` (`Task.held_out`) as equal chunks (n, chunk, ...), `chunk` the largest
        divisor of its size up to `eval_rows` (250, fewer on an accelerator when the members would not fit)."""
        inputs, targets = self.task.held_out(split, self.config.eval_size)
        n = inputs.shape[0]
        chunk = max(d for d in range(1, min(n, self.eval_rows(members_per_device)) + 1) if n % d == 0)
        split = lambda a: a.reshape((n // chunk, chunk) + a.shape[1:])  # noqa: E731
        return split(inputs), split(targets)

    def evaluate(self, params: Any, eval_set: tuple[jax.Array, jax.Array]) -> dict[str, jax.Array]:
        """Task metrics on the held-out set (equal chunks, so the mean of means is exact)."""
        per_chunk = jax.lax.map(lambda b: self.task.metrics(self.model.apply(params, b[0]), b[1]), eval_set)
        return jax.tree.map(jnp.mean, per_chunk)


def _device_memory() -> tuple[str, int | None]:
    """The platform of the first local device and, on an accelerator, its allocator's limit in bytes."""
    device = jax.local_devices()[0]
    memory = (device.memory_stats() or {}).get("bytes_limit") if device.platform != "cpu" else None
    return device.platform, memory


def reset_meters(state: TrainState) -> TrainState:
    zero = jnp.zeros_like(state.loss_sum)
    return state._replace(loss_sum=zero, grad_norm_sum=zero, grad_norm_max=zero, clipped=zero, count=zero)


class StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (installed for the whole
    run, so a signal during validation, restore or compilation stops it before the next step)."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class NotExtendableError(ConfigError):
    """More --steps asked of a run that keeps no checkpoint to go on from (`check_resumable`)."""


def check_resumable(
    config: Config, workdir: Path, flag: str = "workdir", field_name: Callable[[str], str] | None = None
) -> None:
    """Refuse to resume a workdir whose saved config differs in more than RESUMABLE_CHANGES, that holds
    a run but lost its config.json (nothing to check the flags against), whose run has already
    trained more than --steps, or fewer but without a checkpoint to extend it from (it is never
    silently trained again from step 0), whose result files are damaged (`experiments.schema`), or where
    something of another kind stands in the place of a file or folder the run writes (`check_layout`).
    Writes nothing.

    `flag` names the folder in errors and `field_name(field)` a Config field (default `--<field>`): a sweep
    names its own flags (`experiments.sweep.check_points`)."""
    field_name = field_name or (lambda field: f"--{field}")
    at = f"--{flag}={workdir}"
    check_layout(config, workdir, flag)
    path = workdir / "config.json"
    if not path.exists():
        if found := [name for name in ("checkpoints", "metrics.jsonl", "results.json") if _holds(workdir, name)]:
            raise ConfigError(
                f"{at} holds a run ({', '.join(found)}) but no config.json, so its settings cannot "
                f"be checked; put its config.json back, or use a new --{flag}"
            )
        return
    try:
        saved = json.loads(schema.read_text(path))
        if not isinstance(saved, dict):
            raise ValueError(f"holds a JSON {type(saved).__name__}, not an object")
        saved = Config.from_dict(schema.check_config(saved)).to_dict()
    except schema.DamagedError as e:
        raise schema.DamagedError(path, e.why, f"{at}: ", f"; use a new --{flag}") from None
    except RecursionError:
        raise schema.DamagedError(path, "nested too deeply", f"{at}: ", f"; use a new --{flag}") from None
    except (OSError, ValueError, TypeError) as e:  # empty, truncated, `[]`, unreadable, a folder, ...
        reason = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise schema.DamagedError(path, reason, f"{at}: ", f"; use a new --{flag}") from None
    diff = [k for k, v in config.to_dict().items() if saved.get(k) != v and k not in RESUMABLE_CHANGES]
    if diff:
        fields = ", ".join(f"{field_name(k)} (saved {saved.get(k)!r}, now {getattr(config, k)!r})" for k in diff)
        raise ConfigError(f"{at} holds a run with other settings: {fields}; use a new --{flag}")
    _check_result_files(workdir, at, flag)
    steps = field_name("steps")
    if config.steps < (done := steps_done(workdir)):
        raise ConfigError(
            f"{steps}={config.steps}: the run in {at} has already trained {done} steps; "
            f"pass {steps}={done} or more, or use a new --{flag}"
        )
    if config.steps > done > 0 and not saved_steps(workdir):  # say, committed results in a fresh clone
        raise NotExtendableError(
            f"{steps}={config.steps}: the run in {at} trained {done} steps but keeps no checkpoint to "
            f"go on from (checkpoints are not committed with results); pass {steps}={done} to keep it, or move "
            "the folder away to train again from step 0"
        )


# what a run keeps in its workdir: files, and folders (a folder may be a link to one: checkpoints on another disk)
RUN_FILES = ("config.json", "results.json", "metrics.jsonl", "diagnostics.jsonl", "diagnostics.npz", "error.txt")
RUN_FOLDERS = ("checkpoints", UNREADABLE)


def check_layout(config: Config, workdir: Path, flag: str = "workdir", gradients: bool = False) -> None:
    """ConfigError (one line) when something of another kind stands where the run writes: a folder, link,
    FIFO or device in the place of one of its files, a file in the place of one of its folders (checkpoints,
    and the TensorBoard folder of each member with --tensorboard). Checked before anything is compiled or
    written: otherwise the run would fail at its first write of that name, after compiling and training.
    `gradients`: the files of a measurement at initialisation (`benchmarks.tables --table=gradients`)."""
    from experiments.tensorboard import FOLDER, seed_dir

    at = f"--{flag}={workdir}"
    if not workdir.is_dir():
        return
    for name in ("config.json", "diagnostics.jsonl", "diagnostics.npz") if gradients else RUN_FILES:
        path = workdir / name
        if kind := schema.file_kind(path):
            why = f"{kind} where the run keeps a file"
            raise schema.DamagedError(path, why, message=f"{at}: {path} is {why}; move it away")
    folders = [] if gradients else [workdir / name for name in RUN_FOLDERS]
    if config.tensorboard and not gradients:
        sweep = len(learning_rates(config)) > 1
        for seed, rate in members(config):
            member = seed_dir(workdir, seed, rate if sweep else None)
            folders += [p for p in (member, *member.parents) if p.is_relative_to(workdir / FOLDER)]
    for folder in dict.fromkeys(folders):
        if folder.exists() and not folder.is_dir() or folder.is_symlink() and not folder.exists():
            why = f"{'a file' if folder.exists() else 'a broken link'} where the run keeps a folder"
            raise schema.DamagedError(folder, why, message=f"{at}: {folder} is {why}; move it away")


def _check_result_files(workdir: Path, at: str, flag: str) -> None:
    """results.json and the metrics and diagnostics logs, read back as `experiments.schema` says they must be."""
    after = f"; move it away (a run resumes from its checkpoint and writes it again), or use a new --{flag}"
    try:
        if (workdir / "results.json").exists():
            schema.read_results(workdir / "results.json")
        schema.read_records(workdir / "metrics.jsonl", schema.check_metrics_record)
        schema.read_records(workdir / "diagnostics.jsonl", schema.check_diagnostics_record)
    except schema.DamagedError as e:
        raise schema.DamagedError(e.path, e.why, f"{at}: ", after) from None


def _holds(workdir: Path, name: str) -> bool:
    if name == "checkpoints":
        return bool(saved_steps(workdir))
    return (workdir / name).exists()


def steps_done(workdir: Path) -> int:
    """Steps the run in `workdir` has trained: its newest checkpoint, or results.json's steps_done."""
    results = _read_results(workdir)
    done = results.get("steps_done") if isinstance(results.get("steps_done"), int) else 0
    return max([done, *saved_steps(workdir)])


def _read_results(workdir: Path) -> dict[str, Any]:
    """results.json as a dict; {} when missing or damaged."""
    try:
        results = io.read_json(workdir / "results.json")
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def train_and_evaluate(config: Config, workdir: str | Path) -> dict[str, Any]:
    """Train `config.num_seeds` seeds of one (cell, task, T) together; write and return results.

    Writes to `workdir`: config.json, metrics.jsonl (one record per seed per logging step),
    checkpoints/ and results.json. An existing workdir with the same config resumes from
    its latest checkpoint that restores; SIGTERM/SIGINT (any time) save a checkpoint and return
    early. The workdir is locked for the call (`experiments.lock`): a second process gets a
    `WorkdirLocked` ConfigError. Every check is made before anything but the lock is written.
    A full disk raises `io.DiskFullError` naming the workdir.
    """
    with StopSignal() as stop_signal:
        parts = validate(config)
        workdir = check_workdir(workdir)
        with workdir_lock(workdir):
            check_resumable(config, workdir)
            try:
                io.write_json(workdir / "config.json", config.to_dict())
                exp = Experiment(config, parts)
                with exp.precision():
                    return _train(exp, workdir, stop_signal)
            except Exception as e:
                if io.disk_full(e):
                    raise io.DiskFullError(workdir) from e
                raise


def restore_latest(
    checkpoints: Checkpoints, workdir: Path, like: TrainState, flag: str = "workdir", quarantine: bool = True
) -> tuple[int, TrainState] | None:
    """`Checkpoints.restore_latest(like)`, reading too a run checkpointed before the optimizer state held its
    learning rates (before `optax.inject_hyperparams`): its optimizer state is restored as the inner
    state of `like`'s, with `like`'s rates and the count of updates it took (its steps, or up to divergence)."""
    step = checkpoints.latest_step()
    if step is None or not _without_hyperparams(workdir / "checkpoints" / str(step)):
        return checkpoints.restore_latest(like, flag, quarantine)
    restored = checkpoints.restore_latest(like._replace(opt_state=like.opt_state.inner_state), flag, quarantine)
    if restored is None:
        return None
    step, old = restored
    count = jnp.where(old.diverged_at >= 0, old.diverged_at, old.step).astype(jnp.int32)
    return step, old._replace(opt_state=like.opt_state._replace(count=count, inner_state=old.opt_state))


def _without_hyperparams(folder: Path) -> bool:
    """Whether the checkpoint in `folder` holds an optimizer state without "hyperparams" (from orbax's tree
    metadata; an unreadable one counts as current: restoring it reports what is wrong)."""
    try:
        keys = io.read_json(folder / "default" / "_METADATA")["tree_metadata"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return any(k.startswith("('opt_state'") for k in keys) and not any("'hyperparams'" in k for k in keys)


def _train(exp: Experiment, workdir: Path, stop_signal: StopSignal) -> dict[str, Any]:
    mesh = exp.mesh()
    c = exp.config
    logging.info(
        "%s/%s T=%d: compiling the initialisation, training step and evaluation (%s)",
        c.cell, c.task, c.seq_len, _cache_note(),
    )  # fmt: skip
    compiling = (time.perf_counter(), compile_cache.counts())
    state = exp.compiled_init(mesh)(*exp.member_inputs())
    previous = _read_results(workdir)
    checkpoints = Checkpoints(workdir)
    tb = TensorBoardLog(workdir, sweep=exp.sweep) if exp.config.tensorboard else None
    try:
        return _train_from(exp, workdir, mesh, state, checkpoints, stop_signal, previous, tb, compiling)
    finally:
        checkpoints.close()
        if tb:
            tb.close()


def _cache_note() -> str:
    folder = os.environ.get(compile_cache.ENV)
    if folder is None or folder == "off":
        return "no persistent compilation cache"
    return f"programs compiled by an earlier run are read from {folder}"


def _train_from(exp, workdir, mesh, state, checkpoints, stop_signal, previous, tb=None, compiling=None) -> dict:
    """The training loop from the state restored (or `state`); `compiling`: (perf_counter, compile_cache.counts())
    when compilation began. The step, evaluation and meter reset are compiled ahead of time, before the first
    step, so their compile time is reported once and the first interval's steps/s (and ETA) time training only."""
    config = exp.config
    compiling = compiling or (time.perf_counter(), compile_cache.counts())
    start, metrics_path = 0, workdir / "metrics.jsonl"
    if restored := restore_latest(checkpoints, workdir, state):
        start, state = restored
        logging.info("resuming %s from step %d", workdir, start)
    if tb:
        tb.start(start)  # each step once in TensorBoard too: what earlier processes logged after `start` goes
    io.write_jsonl(metrics_path, [r for r in io.read_jsonl(metrics_path) if start and r["step"] <= start])

    per_device = num_members(config) // mesh.size
    eval_sets = {prefix: exp.eval_set(split, per_device) for prefix, split in exp.eval_splits().items()}
    step_fn = exp.compiled_step(mesh).lower(state).compile()
    seeds = NamedSharding(mesh, P(SEEDS))  # every leaf of the state, as the step takes it (compiled for it)
    reset_fn = jax.jit(reset_meters, donate_argnums=0, out_shardings=seeds).lower(state).compile()
    eval_jit, eval_fns = exp.compiled_eval(mesh), {}
    for prefix, s in eval_sets.items():  # one program per shape of held-out set
        shapes = tuple((a.shape, a.dtype) for a in jax.tree.leaves(s))
        eval_fns[prefix] = eval_fns.get(shapes) or eval_jit.lower(state.params, s).compile()
        eval_fns[shapes] = eval_fns[prefix]
    evaluate = lambda state: {prefix: eval_fns[prefix](state.params, s) for prefix, s in eval_sets.items()}  # noqa: E731
    compile_s = time.perf_counter() - compiling[0]
    logging.info("%s/%s T=%d: compiled in %.1fs%s", config.cell, config.task, config.seq_len, compile_s,
                 _cache_use(compiling[1]))  # fmt: skip
    diagnostics = _diagnostics_recorder(exp, workdir, config)

    history = io.read_jsonl(metrics_path)
    t_start = compiling[0]  # the session's wall time includes compiling
    if start == 0:
        history += _log(exp, workdir, 0, state, evaluate(state), float("nan"), tb=tb)
        if diagnostics:
            diagnostics(0, state.params)
    step, last_log, stop = start, start, None
    train_time, timed_steps, t_interval = 0.0, 0, time.perf_counter()
    diverged_at = np.asarray(state.diverged_at)
    if start and (diverged_at >= 0).all():
        logging.warning("every seed diverged by step %d: nothing left to train", start)
    while step < config.steps and not (diverged_at >= 0).all() and stop_signal.received is None:
        state = step_fn(state)
        step += 1
        if step % config.eval_every == 0 or step == config.steps:
            diverged_at = np.asarray(state.diverged_at)  # the one host sync of the interval
            elapsed = time.perf_counter() - t_interval
            steps_per_s = (step - last_log) / elapsed
            if last_log > start:  # the first interval includes compilation
                train_time, timed_steps = train_time + elapsed, timed_steps + step - last_log
            history += _log(exp, workdir, step, state, evaluate(state), steps_per_s, tb=tb)
            state, last_log = reset_fn(state), step
            if diagnostics and step % config.diag_every == 0:
                diagnostics(step, state.params)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoints.save(step, state)
            if (diverged_at >= 0).all():
                logging.warning("every seed diverged; stopping at step %d", step)
            t_interval = time.perf_counter()
        elif config.checkpoint_every and step % config.checkpoint_every == 0:
            t_save = time.perf_counter()  # mid-interval: the meters so far are part of the state
            checkpoints.save(step, state)
            t_interval += time.perf_counter() - t_save  # not counted as training time
    if stop_signal.received is not None:
        stop = signal.Signals(stop_signal.received).name
        logging.warning("%s received: saving a checkpoint at step %d and stopping", stop, step)
    if not any(r["step"] == step for r in history):  # stopped between logging steps: evaluate here,
        # for results.json only; metrics.jsonl keeps the logging schedule (a resumed run appends to it)
        history += _log(exp, workdir, step, state, evaluate(state), float("nan"), write=False)
    checkpoints.save(step, state)
    wall = time.perf_counter() - t_start
    timing = _timing(previous, start, step, wall, train_time, timed_steps)
    results = _results(exp, state, history, step, timing, stop)
    results["execution"] = execution(exp, mesh, eval_chunk=eval_sets["eval"][0].shape[1])
    # the step the last process that trained started from (0: from scratch); a process that trained nothing
    # (a rerun of a finished run) keeps it, as it keeps the timing; session_steps: what this process trained
    results["resumed_from"] = start if step > start or "resumed_from" not in previous else previous["resumed_from"]
    results["session_steps"] = step - start
    if (sessions := _sessions(previous, start, step, results, wall)) is not None:
        results["sessions"] = sessions
    io.write_json(workdir / "results.json", results)
    logging.info("%s", summary_line(exp, results, workdir, compile_s, wall))
    return results


def _cache_use(before: dict[str, int]) -> str:
    """How many of the programs compiled since `before` the persistent compilation cache served."""
    now = compile_cache.counts()
    hits, misses = now["hits"] - before["hits"], now["misses"] - before["misses"]
    if not hits + misses:
        return ""
    return f" ({hits} of {hits + misses} programs read from the compilation cache)"


def summary_line(exp: Experiment, results: dict[str, Any], workdir: Path, compile_s: float, wall: float) -> str:
    """The run's last line: final headline metric against the baseline, solved fraction and median step,
    steps and wall time (compile apart), and where the results are."""
    c, task = exp.config, exp.task
    seeds = [s for s in results["seeds"] if s["learning_rate"] == results["best_learning_rate"]]
    loss = float(np.mean([s["final"]["loss"] for s in seeds]))
    solved = [s["solved_at_step"] for s in seeds if s["solved"]]
    at = f" (median step {int(np.median(solved))})" if solved else ""
    rate = f" at lr {results['best_learning_rate']:g}" if exp.sweep else ""
    ended = f"stopped by {results['stopped_by']}" if results["stopped_by"] else "done"
    steps = f"{results['steps_done']}/{c.steps} steps" if results["stopped_by"] else f"{results['steps_done']} steps"
    resume = "; rerun the same command to resume" if results["stopped_by"] else ""
    return (
        f"{ended}: {c.cell}/{c.task} T={c.seq_len}: test {task.metric_name} {loss:.4g} "
        f"({loss / task.baseline:.3g} x baseline {task.baseline:.4g}){rate}, solved {len(solved)}/{len(seeds)}{at}; "
        f"{steps} in {_duration(wall)} (compile {_duration(compile_s)}); results: {workdir / 'results.json'}{resume}"
    )


def _sessions(previous: dict, start: int, step: int, results: dict, wall_time: float) -> list[dict] | None:
    """Where each session of the run trained: its steps [from, to], wall time, machine and versions (a point
    may start on a lent GPU and end on a CPU). A session that trained nothing keeps the list as it was (None:
    results that predate it); a run resumed from such results gets one entry for everything before."""
    if start and step == start and previous.get("steps_done") == step:
        return previous.get("sessions")
    ex = results["execution"]
    this = {"steps": [start, step], "wall_time_s": round(wall_time, 2), "versions": results["versions"]}
    this.update({k: ex[k] for k in ("backend", "device_kind", "cpu_count")})
    if not start:
        return [this]
    if "sessions" in previous:
        return [*previous["sessions"], this]
    if not previous:  # resumed from a checkpoint whose session wrote no results.json (killed): its time is unknown
        return [this]
    before = {"steps": [0, start], "wall_time_s": previous.get("wall_time_s", 0)}  # all sessions before, summed
    before.update({k: previous.get("execution", {}).get(k) for k in ("backend", "device_kind", "cpu_count")})
    return [{**before, "versions": previous.get("versions", {})}, this]


def _timing(previous: dict, start: int, step: int, wall_time: float, train_time: float, timed_steps: int) -> dict:
    """Wall and training time summed over the sessions of a run: a resumed one adds the previous
    results.json's; a session that trained nothing (a rerun of a finished run) keeps them as they were."""
    keys = ("wall_time_s", "train_time_s", "timed_steps", "steps_per_s")
    if start and step == start and previous.get("steps_done") == step:
        return {k: previous.get(k) for k in keys}
    number = lambda v: v if isinstance(v, int | float) and not isinstance(v, bool) else 0  # noqa: E731
    before = {k: number(previous.get(k)) for k in keys[:3]} if start else dict.fromkeys(keys[:3], 0)
    total_train, total_steps = before["train_time_s"] + train_time, before["timed_steps"] + timed_steps
    return {
        "wall_time_s": round(before["wall_time_s"] + wall_time, 2),
        "train_time_s": round(total_train, 3),
        "timed_steps": total_steps,
        "steps_per_s": round(total_steps / total_train, 2) if total_train else None,
    }


def _diagnostics_recorder(exp: Experiment, workdir: Path, config: Config):
    """Gradient diagnostics during training, when `diag_every > 0` (see experiments.diagnostics)."""
    if not config.diag_every:
        return None
    from experiments.diagnostics import TrainingRecorder

    return TrainingRecorder(exp, workdir)


def _log(
    exp: Experiment,
    workdir: Path,
    step: int,
    state: TrainState,
    evals: dict,
    steps_per_s: float,
    write: bool = True,
    tb: TensorBoardLog | None = None,
) -> list[dict]:
    """Append (if `write`) one metrics.jsonl record per member, and the same scalars to TensorBoard (`tb`), and
    print a progress line; returns the records.

    `evals`: {prefix: metrics of every member} (`Experiment.eval_splits`): record keys `eval_<k>` (test split)
    and, in a sweep, `valid_<k>`. Each record names its member: "seed" and "learning_rate".
    """
    meters, evals = jax.device_get((state._replace(params=None, opt_state=None), evals))
    count = np.maximum(meters.count, 1)
    records = []
    for i, (seed, rate) in enumerate(exp.members):
        record = {
            "step": step,
            "seed": seed,
            "learning_rate": rate,
            "train_loss": float(meters.loss_sum[i] / count[i]) if meters.count[i] else None,
            "grad_norm": float(meters.grad_norm_sum[i] / count[i]) if meters.count[i] else None,
            "grad_norm_max": float(meters.grad_norm_max[i]) if meters.count[i] else None,
            "clipped_fraction": float(meters.clipped[i] / count[i]) if meters.count[i] else None,
            "diverged": bool(meters.diverged_at[i] >= 0),
            "steps_per_s": None if math.isnan(steps_per_s) else round(steps_per_s, 2),
            **{f"{prefix}_{k}": float(v[i]) for prefix, metrics in evals.items() for k, v in metrics.items()},
        }
        records.append(record)
    if write:
        io.append_jsonl(workdir / "metrics.jsonl", records)
        if tb:
            tb.write(records)
    cfg, shown, at = exp.config, records, ""
    if exp.sweep:  # the rate that is best on the validation split so far, and its seeds
        best = best_learning_rate(exp.learning_rates, *_by_rate(exp, records, f"valid_{exp.task.headline}"))
        shown, at = (
            [r for r in records if r["learning_rate"] == best],
            f" at lr {best:g} (best of {len(exp.learning_rates)} on valid)",
        )
    mean = lambda key: np.mean([r[key] for r in shown if r[key] is not None] or [np.nan])  # noqa: E731
    parts = [
        f"{cfg.cell}/{cfg.task} T={cfg.seq_len} step {step}/{cfg.steps}" + (" (before training)" if not step else "")
    ]
    if not math.isnan(train := mean("train_loss")):
        parts.append(f"train {train:.4g}")
    parts.append(f"eval {exp.task.metric_name} {mean('eval_loss'):.4g} ({mean('eval_ratio'):.3g} x baseline){at}")
    if not math.isnan(grad := mean("grad_norm")):
        parts.append(f"|g| {grad:.3g}")
    if steps_per_s and not math.isnan(steps_per_s):  # step 0 (and a stop before any step) has no speed yet
        parts.append(f"{steps_per_s:.1f} steps/s | ETA {_duration((cfg.steps - step) / steps_per_s)}")
    logging.info("%s", " | ".join(parts))
    return records


def best_learning_rate(rates: Sequence[float], valid: np.ndarray, diverged: np.ndarray) -> float:
    """The rate whose seeds have the lowest mean of `valid`, a lower-is-better metric on the validation split.

    valid, diverged: (R, S), row r the seeds of `rates[r]`. A non-finite mean counts as the worst; ties go to
    the smaller rate; a rate whose seeds all diverged is chosen only when every rate's did. Never reads the
    test split: choosing on it would make the reported test numbers optimistic.
    """
    valid, diverged = np.asarray(valid, np.float64), np.asarray(diverged, bool)
    with np.errstate(invalid="ignore"):
        means = valid.mean(axis=1)
    score = np.where(np.isfinite(means), means, np.inf)
    dead = diverged.all(axis=1) & ~diverged.all()
    return rates[min(range(len(rates)), key=lambda r: (bool(dead[r]), score[r], rates[r]))]


def _by_rate(exp: Experiment, members: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """`key` of each member and whether it diverged, as (R, S) arrays; `members` in member order (metrics.jsonl
    records, or the "seeds" of results.json, which keep "diverged_at_step")."""
    R, S = len(exp.learning_rates), exp.config.num_seeds
    values = [m[key] if m.get(key) is not None else np.nan for m in members]
    diverged = [m["diverged"] if "diverged" in m else m["diverged_at_step"] is not None for m in members]
    return np.asarray(values, np.float64).reshape(R, S), np.asarray(diverged, bool).reshape(R, S)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds / 60:.1f}m" if seconds >= 90 else f"{seconds:.0f}s"


def _results(exp, state, history, step, timing, stop) -> dict[str, Any]:
    """results.json: final metrics per member, with first solved step and divergence, and summaries.

    "seeds": one entry per member (seed x learning rate, in member order): "seed", "learning_rate",
    "final" (test split metrics), "final_valid" (validation split; sweeps only), "solved",
    "solved_at_step", "diverged_at_step" (solved and divergence from the test metrics).
    "learning_rates": the R rates; "by_learning_rate": per rate, in that order, "learning_rate", "mean" and
    "std" of the final test metrics over its seeds, "mean_valid" (sweeps only), "solved_fraction",
    "diverged_fraction". "best_learning_rate": the rate (`best_learning_rate`: lowest mean validation
    `task.headline`); with one rate, that rate. The top-level "mean", "std" and "solved_fraction" are
    the best rate's, so a reader that knows no sweeps reads each run at its best rate.
    """
    task, cfg = exp.task, exp.config
    index = {member: m for m, member in enumerate(exp.members)}
    member = lambda r: index[r["seed"], r.get("learning_rate", exp.learning_rates[0])]  # noqa: E731 - older records have no rate
    last = {member(r): r for r in history if r["step"] == step}
    diverged_at = np.asarray(state.diverged_at)
    per_seed = []
    for i, (seed, rate) in enumerate(exp.members):
        evals = _evals(last[i])
        solved_steps = [r["step"] for r in history if member(r) == i and task.solved(_evals(r))]
        per_seed.append({
            "seed": seed,
            "learning_rate": rate,
            "final": evals,
            **({"final_valid": _evals(last[i], "valid_")} if exp.sweep else {}),
            "solved": task.solved(evals),
            "solved_at_step": solved_steps[0] if solved_steps else None,
            "diverged_at_step": int(diverged_at[i]) if diverged_at[i] >= 0 else None,
        })  # fmt: skip
    S, by_rate = cfg.num_seeds, []
    for r, rate in enumerate(exp.learning_rates):
        group = per_seed[r * S : (r + 1) * S]
        finals = {k: [s["final"][k] for s in group] for k in group[0]["final"]}
        entry = {
            "learning_rate": rate,
            "mean": {k: float(np.mean(v)) for k, v in finals.items()},
            "std": {k: float(np.std(v)) for k, v in finals.items()},
        }
        if exp.sweep:
            entry["mean_valid"] = {
                k: float(np.mean([s["final_valid"][k] for s in group])) for k in group[0]["final_valid"]
            }
        entry["solved_fraction"] = float(np.mean([s["solved"] for s in group]))
        entry["diverged_fraction"] = float(np.mean([s["diverged_at_step"] is not None for s in group]))
        by_rate.append(entry)
    if exp.sweep:
        valid = [{"valid": s["final_valid"][task.headline], **s} for s in per_seed]
        best = best_learning_rate(exp.learning_rates, *_by_rate(exp, valid, "valid"))
    else:
        best = exp.learning_rates[0]
    chosen = by_rate[exp.learning_rates.index(best)]
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()},  # as JSON reads back
        "task": cfg.task,
        "cell": cfg.cell,
        "seq_len": cfg.seq_len,
        "metric": task.metric_name,
        "baseline": task.baseline,
        "steps_done": step,
        "finished": step >= cfg.steps or bool((diverged_at >= 0).all()),  # all steps, or every seed diverged
        "stopped_by": stop,
        **timing,
        "seeds": per_seed,
        "mean": chosen["mean"],
        "std": chosen["std"],
        "solved_fraction": chosen["solved_fraction"],
        "learning_rates": list(exp.learning_rates),
        "best_learning_rate": best,
        "by_learning_rate": by_rate,
        "versions": package_versions(),
    }


def execution(exp: Experiment, mesh: Mesh, eval_chunk: int) -> dict[str, Any]:
    """How the run executed: backend, devices, and the policies resolved for them. "members": runs trained in
    the one program (seeds x learning rates); "seeds_per_device": members per device; "eval_chunk": held-out
    test sequences evaluated at once."""
    device = mesh.devices.flat[0]
    per_device = num_members(exp.config) // mesh.size
    return {
        "backend": device.platform,
        "device_kind": device.device_kind,
        "cpu_count": os.cpu_count(),
        "num_devices": mesh.size,
        "members": num_members(exp.config),
        "seeds_per_device": per_device,
        "seed_chunk": exp.seed_chunk(per_device),
        "eval_chunk": eval_chunk,
        "sequence_path": "sequence" if exp.model.uses_sequence else "step",
        "unroll": exp.model.scan_unroll,
        "matmul_precision": exp.config.matmul_precision,
    }


def _evals(record: dict, prefix: str = "eval_") -> dict:
    """The metrics of one split in a metrics.jsonl record: "eval_" the test split, "valid_" the validation split."""
    return {k[len(prefix) :]: v for k, v in record.items() if k.startswith(prefix)}


def package_versions() -> dict[str, str]:
    """Versions of Python and the numerical stack, recorded with every result."""
    import flax

    versions = {"python": sys.version.split()[0], "jax": jax.__version__, "flax": flax.__version__}
    return {**versions, "optax": optax.__version__}


def main(argv: list[str]) -> None:
    from experiments.flags import FLAGS, config_from_flags

    results = train_and_evaluate(config_from_flags(), FLAGS.workdir)
    if results["stopped_by"]:
        sys.exit(128 + signal.Signals[results["stopped_by"]].value)


if __name__ == "__main__":
    from absl import flags

    from experiments.flags import define_config_flags, run

    define_config_flags()
    flags.DEFINE_string("workdir", "runs/train", "Output folder; an existing one with the same flags resumes.")
    run(main)
