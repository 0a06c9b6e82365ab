"""Sequential and permuted 8x8 digits: scikit-learn's copy of the UCI optical handwritten digits test set
(`sklearn.datasets.load_digits`: 1797 images, 8x8 pixels of 0..16, shipped inside the package), read one
pixel per step, as sequential / permuted MNIST (Le, Jaitly & Hinton 2015) read 28x28 images."""

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tasks.base import HELD_OUT_KEYS, Task

PIXELS = 64
SPLIT_SEED = 0  # np.random.default_rng(SPLIT_SEED).permutation(1797): the fixed shuffle the splits cut
PERMUTATION_SEED = 2  # np.random.default_rng(PERMUTATION_SEED).permutation(64): permuted_digits' pixel order
SPLIT_SIZES = {"test": 360, "valid": 180}  # the first 360 of the shuffle, the next 180; train: the other 1257


@functools.cache
def load() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 64) float32 in [0, 1] = pixel / 16, row-major; labels (1797,) int32)."""
    from sklearn.datasets import load_digits  # here, not at import: `import tasks` stays fast

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


@functools.cache
def split_indices() -> dict[str, np.ndarray]:
    """Indices into `load()` of each split: "test" (360), "valid" (180), "train" (1257); fixed, disjoint."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(load()[1]))
    test, valid = SPLIT_SIZES["test"], SPLIT_SIZES["valid"]
    return {"test": order[:test], "valid": order[test : test + valid], "train": order[test + valid :]}


@functools.cache
def pixel_permutation() -> np.ndarray:
    """The fixed pixel order of permuted_digits, the same for every run and seed."""
    return np.random.default_rng(PERMUTATION_SEED).permutation(PIXELS)


@functools.cache
def class_prior_ce() -> float:
    """Cross-entropy on the test split of the training split's class frequencies."""
    labels = load()[1]
    prior = np.bincount(labels[split_indices()["train"]], minlength=10) / len(split_indices()["train"])
    return float(-np.mean(np.log(prior[labels[split_indices()["test"]]])))


@dataclasses.dataclass(frozen=True)
class Digits(Task):
    r"""Classify an 8x8 handwritten digit read one pixel per step (64 steps, row-major).

    Inputs (B, 64, 1): x_t = pixel_t / 16 in [0, 1], t = 8 row + column; targets (B,) int32, the digit
    0..9; output at the last step, 10 classes, softmax cross-entropy. `seq_len` must be 64.

    Data: the 1797 images, split once by a fixed shuffle (`SPLIT_SEED`): test 360, valid 180 (sizes
    the evaluation's chunking divides, 180 x 2 and 180), train 1257. `sample(key, B)` draws B training
    images uniformly with replacement; `held_out(split, size)` is the first min(size, len) images of
    the fixed "test" or "valid" split.

    Metric `accuracy` (argmax). Solved: accuracy >= 0.95. Reference: a multinomial logistic regression
    on the 64 pixel values (scikit-learn 1.9.1 `LogisticRegression()`, C = 1, max_iter raised to 5000,
    fit on this train split) scores 0.961 (346/360) on this test split: a model that reads the whole
    image and uses it linearly gets there, so solved means about as good as that linear reference.

    Baseline: a predictor that ignores the image predicts the class frequencies of the training
    split; its CE on the test split, -sum_c q_test(c) ln p_train(c), computed from the data, is 2.3072
    (ln 10 = 2.3026; the classes are nearly balanced). Headline "loss". (A strictly memoryless model
    still sees the last pixel: the class frequencies given its value, fit on the training split with
    add-one smoothing, score 2.266 on the test split for the row-major order, whose last pixel is
    (7, 7), and 2.227 for the permuted one, whose last pixel is (0, 1): a little below the prior.)
    """

    input_size: ClassVar[int] = 1
    num_outputs: ClassVar[int] = 10
    readout: ClassVar[str] = "last"
    metric_name: ClassVar[str] = "CE"
    solved_metric: ClassVar[str] = "accuracy"
    solved_above: ClassVar[float] = 0.95
    headline: ClassVar[str] = "loss"
    table_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    baseline_formula: ClassVar[str] = "H(class prior) ≈ ln 10"
    permuted: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len != PIXELS:
            name = "permuted_digits" if self.permuted else "digits"
            raise ValueError(f"{name} reads 64 pixels (8x8): seq_len must be 64; got {self.seq_len}")

    @property
    def baseline(self) -> float:
        return class_prior_ce()

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images (n, 64) in this task's pixel order, labels (n,)) of a split, as numpy."""
        images, labels = load()
        idx = split_indices()[split]
        images = images[idx]
        return (images[:, pixel_permutation()] if self.permuted else images), labels[idx]

    def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        images, labels = self._split("train")
        idx = jax.random.randint(key, (batch_size,), 0, len(labels))
        return jnp.asarray(images)[idx][..., None], jnp.asarray(labels)[idx]

    def held_out(self, split: str, size: int) -> tuple[jax.Array, jax.Array]:
        if split not in HELD_OUT_KEYS:
            raise ValueError(f"split must be one of {', '.join(HELD_OUT_KEYS)}; got {split!r}")
        images, labels = self._split(split)
        return jnp.asarray(images[:size])[..., None], jnp.asarray(labels[:size])

    def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(outputs, targets)

    def extra_metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        return {"accuracy": jnp.mean(outputs.argmax(-1) == targets)}


@dataclasses.dataclass(frozen=True)
class PermutedDigits(Digits):
    r"""`Digits` with the 64 pixels read in one fixed random order (`pixel_permutation()`, from
    np.random.default_rng(PERMUTATION_SEED), the same for every run, independent of its seed): x_t =
    pixel_{pi(t)} / 16. Same splits, metric, solved rule (the linear reference does not depend on the
    order: 0.961) and baseline as `Digits`. As permuted MNIST, it spreads the strokes over the whole
    sequence, so dependencies span up to all 64 steps.
    """

    permuted: ClassVar[bool] = True
