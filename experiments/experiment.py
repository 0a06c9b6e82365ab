"""The pure functions of one config over a leading member axis: `Experiment` (init, train step, evaluation).

Seeds `seed .. seed+num_seeds-1` train together in one compiled program: every per-seed
function below is written for one seed and `jax.vmap`-ed over a leading seed axis. The seed axis
is sharded over a 1-D device mesh (axis "seeds", `jax.shard_map`): each device runs its
num_seeds / num_devices seeds, vmapped in chunks (`vmap_in_chunks`, chunk size from
`experiments.policy`). A run with one seed has a seed axis of length 1.

Learning-rate sweeps (`--learning_rate=1e-4,3e-4,1e-3`): the rate lives in the optimizer state
(`optax.inject_hyperparams`), so the R rates x S seeds are R*S members of the same leading axis,
member m = r * S + s (`config.members`), trained by the same program. "Seed" below means a member:
one (seed, rate) pair. The loop that drives these functions is `experiments.trainer`.
"""

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import policy
from experiments.build import Parts, build, make_optimizer, member_learning_rates
from experiments.config import Config, learning_rates, members, num_devices, num_members

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
        never = jnp.full((), -1, jnp.int32)
        return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), data_key, never, *[zero] * 5)

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

        def keep(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda n, o: jnp.where(finite & alive, n, o), new, old)

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

        def split(a: jax.Array) -> jax.Array:
            return a.reshape((n // chunk, chunk) + a.shape[1:])

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
