"""Flax (linen) models for the sharpness experiments (theory.md §7; Kalra & Barkeshli 2023).

* :class:`FCN` — fully connected, no biases by default, ReLU or tanh, ``depth`` weight layers
  (``depth − 1`` hidden layers of ``width`` units), standard / NTK / μP parametrisation,
  optional zero-initialised last layer;
* :class:`CNN` — a small Myrtle-style convolutional net (Shankar et al. 2020): conv, conv,
  pool, conv, pool, conv, global pool, dense;
* :class:`UV` — the uv model f(x) = vᵀU x/√w (one hidden linear layer of width w, N(0, 1)
  weights; theory.md §7, Kalra & Barkeshli §3).

Parametrisations (a layer with fan-in n, gain σ; Jacot et al. 2018, Yang & Hu 2021):

| name | weights at init | forward |
|---|---|---|
| ``standard`` | W ~ N(0, σ²/n) | x W |
| ``ntk`` | W ~ N(0, 1) | σ/√n · x W |
| ``mup`` | W ~ N(0, 1) | σ/√n · x W, readout σ/n · x W |

σ = √2 for ReLU (He), 1 for tanh, 1 for the linear readout. At initialisation ``standard``
and ``ntk`` compute the same function; their Hessians differ (the NTK form rescales the
gradient of each layer by 1/√n), which is why sharpness-based learning rates differ.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from .. import _checks

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}
PARAMETRISATIONS = ("standard", "ntk", "mup")
MODELS = ("fcn", "cnn", "uv")


def _gain(activation: str) -> float:
    return math.sqrt(2.0) if activation == "relu" else 1.0


def _init_and_multiplier(parametrisation: str, fan_in: int, gain: float,
                         readout: bool) -> tuple[float, float]:
    """(standard deviation of the stored weights, forward multiplier)."""
    if parametrisation == "standard":
        return gain / math.sqrt(fan_in), 1.0
    if parametrisation == "mup" and readout:
        return 1.0, gain / fan_in
    return 1.0, gain / math.sqrt(fan_in)


class Dense(nn.Module):
    """x ↦ multiplier · x W (+ b) with the parametrisation's initialisation."""

    features: int
    parametrisation: str = "standard"
    gain: float = 1.0
    readout: bool = False
    zero_init: bool = False
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        std, mult = _init_and_multiplier(self.parametrisation, fan_in, self.gain, self.readout)
        init = nn.initializers.zeros if self.zero_init else nn.initializers.normal(std)
        w = self.param("kernel", init, (fan_in, self.features), x.dtype)
        y = mult * (x @ w)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
        return y


class Conv(nn.Module):
    """3×3 'SAME' convolution (NHWC) with the parametrisation's initialisation, no bias."""

    features: int
    parametrisation: str = "standard"
    gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = 9 * x.shape[-1]
        std, mult = _init_and_multiplier(self.parametrisation, fan_in, self.gain, False)
        w = self.param("kernel", nn.initializers.normal(std), (3, 3, x.shape[-1],
                                                               self.features), x.dtype)
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return mult * y


class FCN(nn.Module):
    """Fully connected network with ``depth`` weight layers of ``width`` hidden units.

    depth = 1 is a linear model. Inputs of any shape are flattened per example.
    """

    depth: int
    width: int
    n_out: int
    activation: str = "relu"
    parametrisation: str = "standard"
    zero_last: bool = False
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        act, gain = ACTIVATIONS[self.activation], _gain(self.activation)
        for _ in range(self.depth - 1):
            x = act(Dense(self.width, self.parametrisation, gain, use_bias=self.use_bias)(x))
        return Dense(self.n_out, self.parametrisation, 1.0, readout=True,
                     zero_init=self.zero_last, use_bias=self.use_bias)(x)


class CNN(nn.Module):
    """Myrtle-style CNN: conv, conv, avg-pool 2, conv, avg-pool 2, conv, global avg-pool, dense.

    Input (N, H, W, C) images (``image_shape`` of the dataset); ``width`` channels per conv.
    """

    width: int
    n_out: int
    image_shape: tuple[int, int, int] = (8, 8, 1)
    activation: str = "relu"
    parametrisation: str = "standard"
    zero_last: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], *self.image_shape)
        act, gain = ACTIVATIONS[self.activation], _gain(self.activation)

        def pool(x):
            return nn.avg_pool(x, (2, 2), (2, 2)) if x.shape[1] >= 2 and x.shape[2] >= 2 else x

        x = act(Conv(self.width, self.parametrisation, gain)(x))
        x = act(Conv(self.width, self.parametrisation, gain)(x))
        x = pool(x)
        x = act(Conv(self.width, self.parametrisation, gain)(x))
        x = pool(x)
        x = act(Conv(self.width, self.parametrisation, gain)(x))
        x = x.mean(axis=(1, 2))
        return Dense(self.n_out, self.parametrisation, 1.0, readout=True,
                     zero_init=self.zero_last)(x)


class UV(nn.Module):
    """The uv model f(x) = vᵀ(U x)/√w, U (d_in, w), v (w, n_out), entries N(0, 1)."""

    width: int
    n_out: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        u = self.param("u", nn.initializers.normal(1.0), (x.shape[-1], self.width), x.dtype)
        v = self.param("v", nn.initializers.normal(1.0), (self.width, self.n_out), x.dtype)
        return (x @ u) @ v / jnp.sqrt(jnp.asarray(self.width, x.dtype))


def make_model(name: str, *, n_out: int, width: int = 64, depth: int = 4,
               activation: str = "relu", parametrisation: str = "standard",
               zero_last: bool = False, image_shape: tuple[int, int, int] = (8, 8, 1)
               ) -> nn.Module:
    """A model by name (``"fcn"``, ``"cnn"``, ``"uv"``), arguments checked before any tracing.

    ``depth`` is the number of weight layers of the FCN (ignored by the CNN, whose layout is
    fixed, and by the uv model, which has two layers).
    """
    _checks.choice("model", name, MODELS)
    n_out = _checks.integer("n_out", n_out, low=1)
    width = _checks.integer("width", width, low=1)
    depth = _checks.integer("depth", depth, low=1)
    _checks.choice("activation", activation, tuple(ACTIVATIONS))
    _checks.choice("parametrisation", parametrisation, PARAMETRISATIONS)
    if not isinstance(zero_last, bool):
        raise TypeError(f"zero_last must be a bool, got {type(zero_last).__name__}")
    if name == "fcn":
        return FCN(depth, width, n_out, activation, parametrisation, zero_last)
    if name == "cnn":
        if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (H, W, C) with positive sizes, got "
                             f"{image_shape}")
        return CNN(width, n_out, tuple(int(s) for s in image_shape), activation,
                   parametrisation, zero_last)
    return UV(width, n_out)


def init_params(model: nn.Module, key: jax.Array, x: jax.Array):
    """Initial parameters (the ``params`` collection) for inputs shaped like ``x``."""
    return model.init(key, x[:1])["params"]


def count_params(params) -> int:
    """Number of scalar parameters in a pytree."""
    return sum(int(p.size) for p in jax.tree.leaves(params))
