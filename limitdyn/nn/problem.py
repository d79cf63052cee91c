"""A flax network and its training data as a :class:`~limitdyn.FiniteSum` on flat parameters.

``FlaxProblem.from_module(module, params, x, y, loss="mse")`` works on the flat vector
θ = ``jax.flatten_util.ravel_pytree(params)[0]`` (the same order), so every dynamics,
observer and theory tool of limitdyn applies to a network unchanged: thousands of SGD
continuations in one kernel, its Langevin SDE with the exact per-example noise, Hessians by
Hessian–vector products. Per-example losses (theory.md §7 conventions):

* ``mse``: ℓ_i = ½ mean over classes of (f(x_i) − y_i)² (the mean over examples is
  :func:`limitdyn.nn.mse`);
* ``cross_entropy``: ℓ_i = −Σ_c y_ic log softmax(f(x_i))_c.

The data are pytree leaves (traced: a new dataset of the same shape never recompiles); the
module, the loss name and the parameter layout are static.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import _checks
from ..problems.base import FiniteSum, HostArray

LOSSES = ("mse", "cross_entropy")


class Layout:
    """How a flat θ maps back to the parameter pytree (hashable: static)."""

    __slots__ = ("dtypes", "shapes", "treedef")

    def __init__(self, params: Any):
        leaves, self.treedef = jax.tree_util.tree_flatten(params)
        self.shapes = tuple(tuple(np.shape(x)) for x in leaves)
        self.dtypes = tuple(str(jnp.asarray(x).dtype) for x in leaves)

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s, dtype=np.int64)) for s in self.shapes))

    def unravel(self, theta: jax.Array) -> Any:
        parts, start = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape, dtype=np.int64))
            parts.append(theta[start:start + n].reshape(shape))
            start += n
        return jax.tree_util.tree_unflatten(self.treedef, parts)

    def _key(self) -> tuple:
        return (self.treedef, self.shapes, self.dtypes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Layout({self.size} parameters in {len(self.shapes)} arrays)"


def example_loss(name: str, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example losses (n,) of outputs (n, c) against targets (n, c)."""
    if name == "mse":
        return 0.5 * jnp.mean((outputs - targets) ** 2, axis=-1)
    return -jnp.sum(targets * jax.nn.log_softmax(outputs, axis=-1), axis=-1)


class FlaxProblem(FiniteSum):
    """A flax network and its data on flat parameters θ (see the module docstring).

    Build with :meth:`from_module`. Attributes: ``x``, ``y`` (the training set, leaves),
    ``module``, ``loss_name``, ``layout`` (static); ``theta0`` the flat parameters given;
    ``unravel(theta)`` the flax pytree of a flat θ.
    """

    x: jax.Array
    y: jax.Array
    module: nn.Module = eqx.field(static=True)
    loss_name: str = eqx.field(static=True)
    layout: Layout = eqx.field(static=True)
    start: HostArray = eqx.field(static=True, repr=False)

    @classmethod
    def from_module(cls, module: nn.Module, params: Any, x: Any, y: Any,
                    loss: str = "mse") -> FlaxProblem:
        """The problem of training ``module`` (a flax linen module) from ``params`` on
        inputs ``x`` (N, …) with targets ``y`` (N, classes) under ``loss``."""
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a flax.linen Module, got {type(module).__name__}")
        _checks.choice("loss", loss, LOSSES)
        if isinstance(params, dict) and set(params) == {"params"}:
            params = params["params"]
        leaves = jax.tree_util.tree_leaves(params)
        if not leaves:
            raise ValueError("params has no arrays (pass module.init(key, x)['params'])")
        x = jnp.asarray(x)
        y = jnp.asarray(y)
        if x.ndim < 1 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x must have one row per example and y shape (N, classes) with "
                             f"the same N; got x {x.shape}, y {y.shape}")
        if x.shape[0] < 1:
            raise ValueError("x must hold at least one example")
        flat = ravel_pytree(params)[0]
        try:
            out = jax.eval_shape(lambda p, xx: module.apply({"params": p}, xx), params, x[:1])
        except Exception as err:
            raise ValueError(f"module.apply({{'params': params}}, x) fails: "
                             f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
        if out.shape != (1, y.shape[1]):
            raise ValueError(f"the module's outputs have shape {out.shape[1:]} per example, the "
                             f"targets {y.shape[1:]}")
        return cls(x, y, module, loss, Layout(params), HostArray(np.asarray(flat)))

    # --- the protocol ---------------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return self.layout.size

    @property
    def theta0(self) -> jax.Array:
        """The flat parameters the problem was built from (``ravel_pytree`` order)."""
        return jnp.asarray(self.start.array, self.layout.dtypes[0])

    def unravel(self, theta: jax.Array) -> Any:
        return self.layout.unravel(theta)

    def outputs(self, theta: jax.Array, x: jax.Array) -> jax.Array:
        return self.module.apply({"params": self.unravel(theta)}, x)

    def example_losses(self, theta: jax.Array, idx: jax.Array) -> jax.Array:
        return example_loss(self.loss_name, self.outputs(theta, self.x[idx]), self.y[idx])

    def loss(self, theta: jax.Array) -> jax.Array:
        return jnp.mean(example_loss(self.loss_name, self.outputs(theta, self.x), self.y))

    def loss_on(self, theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        """The loss on other data (a test set)."""
        return jnp.mean(example_loss(self.loss_name, self.outputs(theta, x), y))

    def accuracy(self, theta: jax.Array, x: jax.Array | None = None,
                 y: jax.Array | None = None) -> jax.Array:
        """Fraction of examples whose largest output is the target's class."""
        x = self.x if x is None else x
        y = self.y if y is None else y
        return jnp.mean(jnp.argmax(self.outputs(theta, x), -1) == jnp.argmax(y, -1))

    def noise_sample(self, theta: jax.Array, z: jax.Array, scale: Any = 1.0) -> jax.Array:
        """``scale · Gᵀ(z − z̄)/√N`` by one VJP of the per-example losses (theory.md §2)."""
        def losses(th):
            return example_loss(self.loss_name, self.outputs(th, self.x), self.y)
        _, vjp = jax.vjp(losses, theta)
        u = (z - jnp.mean(z)) / jnp.sqrt(jnp.asarray(self.n_examples, theta.dtype))
        return scale * vjp(u.astype(theta.dtype))[0]

    def __repr__(self) -> str:
        return (f"FlaxProblem({type(self.module).__name__}, {self.dim} parameters, "
                f"N={self.n_examples}, loss={self.loss_name})")
