"""Datasets and losses for the network experiments (theory.md §7).

Inputs are standardised per example (each row to mean 0 and standard deviation 1), targets
are one-hot. Two datasets, neither needing a download:

* ``teacher-student`` (the default): Gaussian inputs, labels = argmax of a fixed random
  two-layer tanh teacher — generated from a seed, no files;
* ``digits``: scikit-learn's bundled handwritten digits (1797 images 8×8, 10 classes; the
  UCI optical-digits test set), real data that installs with scikit-learn.

Losses: :func:`mse` = ½ mean over examples × classes of (f − y)² (Kalra & Barkeshli's
normalisation) and :func:`cross_entropy` = mean over examples of −Σ_k y_k log softmax(f)_k.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks

DATASETS = ("teacher-student", "digits")
LOSSES = ("mse", "cross_entropy")


class Dataset(NamedTuple):
    """``x`` (N, D) float32 inputs (rows standardised), ``y`` (N, C) one-hot targets,
    ``labels`` (N,) ints, ``image_shape`` (H, W, C) for convolutional models."""

    name: str
    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    n_classes: int
    image_shape: tuple[int, int, int]

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def standardise_rows(x: np.ndarray) -> np.ndarray:
    """Each row to mean 0 and standard deviation 1 (rows with zero spread are only centred)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return x / np.where(sd > 0, sd, 1.0)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[np.asarray(labels)]


def teacher_student(seed: int = 0, n: int = 1024, d_in: int = 64, n_classes: int = 10,
                    teacher_width: int = 64) -> Dataset:
    """Gaussian inputs (standardised per example); label = argmax of a random tanh teacher
    z ↦ A tanh(B z/√d_in)/√h with A, B standard normal (h = ``teacher_width``)."""
    seed = _checks.integer("seed", seed, low=0)
    n = _checks.integer("n", n, low=2)
    d_in = _checks.integer("d_in", d_in, low=2)
    n_classes = _checks.integer("n_classes", n_classes, low=2)
    teacher_width = _checks.integer("teacher_width", teacher_width, low=1)
    rng = np.random.default_rng([seed, 7919])
    x = standardise_rows(rng.standard_normal((n, d_in)))
    b = rng.standard_normal((d_in, teacher_width))
    a = rng.standard_normal((teacher_width, n_classes))
    labels = np.argmax(np.tanh(x @ b / np.sqrt(d_in)) @ a, axis=1)
    side = round(float(np.sqrt(d_in)))
    shape = (side, side, 1) if side * side == d_in else (1, d_in, 1)
    return Dataset("teacher-student", x.astype(np.float32), one_hot(labels, n_classes),
                   labels.astype(np.int32), n_classes, shape)


def digits(n: int | None = None) -> Dataset:
    """scikit-learn's digits (first ``n`` of the 1797 examples), rows standardised."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("the digits dataset needs scikit-learn (pip install scikit-learn)"
                          ) from err
    bunch = load_digits()
    x, labels = bunch.data, bunch.target
    if n is not None:
        n = _checks.integer("n", n, low=2, high=len(x))
        x, labels = x[:n], labels[:n]
    return Dataset("digits", standardise_rows(x).astype(np.float32), one_hot(labels, 10),
                   labels.astype(np.int32), 10, (8, 8, 1))


def load_dataset(name: str, *, n: int | None = None, seed: int = 0) -> Dataset:
    """``"teacher-student"`` (n examples, default 1024) or ``"digits"`` (default all 1797)."""
    _checks.choice("dataset", name, DATASETS)
    if name == "digits":
        return digits(n)
    return teacher_student(seed, 1024 if n is None else n)


def mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """½ mean over examples × outputs of (f − y)² (Kalra & Barkeshli's MSE)."""
    return 0.5 * jnp.mean((outputs - targets) ** 2)


def cross_entropy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over examples of −Σ_k y_k log softmax(f)_k."""
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(outputs, axis=-1), axis=-1))


def loss_function(name: str):
    """The loss by name: ``"mse"`` or ``"cross_entropy"``."""
    _checks.choice("loss", name, LOSSES)
    return mse if name == "mse" else cross_entropy
