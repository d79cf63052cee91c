"""Limiting dynamics of trained networks, predicted from measured noise (theory.md §4–§6).

The protocol of Kunin et al.'s network experiment at a scale a CPU can run:

1. :func:`make_network` — a small flax model (:func:`limitdyn.nn.make_model`) on a dataset
   (:func:`limitdyn.nn.load_dataset`) split into train and test; everything works on the
   **flat** parameter vector θ ∈ ℝᵈ (``ravel_pytree`` order).
2. :func:`train_checkpoint` — train to convergence with SGD + momentum + weight decay and
   keep (θ, v); :func:`save_checkpoint` / :func:`load_checkpoint` store it as ``.npz``.
3. :func:`continue_sgd` — K continuations from the checkpoint through the library's runner
   (:func:`limitdyn.simulate_sgd` on the network's :class:`~limitdyn.nn.FlaxProblem`:
   independent minibatch streams, ``iid`` or ``reshuffle`` sampling), recording at every
   step the global displacement Δ_k = ‖θ_k − θ_0‖², the local displacement
   δ_k = ‖θ_k − θ_{k−1}‖² = η²‖v_k‖² and the projections of (θ_k − θ_0, v_k) on a basis (the
   top Hessian eigenvectors), and train/test loss and accuracy every ``eval_every`` steps
   (traces). The update is theory.md §1::

       v_{k+1} = β v_k − g_B(θ_k) − λ θ_k,    θ_{k+1} = θ_k + η v_{k+1}

   (v is the *negative* of optax's momentum buffer). η, β, λ are traced: one compilation
   serves an η or β sweep. Divergence is the runner's rule (non-finite or out-of-range
   coordinates, or a training loss above ``diverge_loss`` at the evaluation steps): such a
   trajectory is frozen, flagged and counted, never averaged. Inside ``limitdyn run``
   every continuation is checkpointed and resumes after a kill.
4. :func:`measure_checkpoint` — top-k Hessian eigenpairs (Lanczos), tr H (Hutchinson), the
   per-example gradient covariance Σ = (1/N) Σ_i g_i g_iᵀ − ḡḡᵀ (theory.md §1) through
   per-example gradients (vmap), its trace and its restriction VΣVᵀ to the top-k subspace.
5. Predictions with no fitted constant:
   :func:`predict_local_displacement` (theory.md §5–§6: per mode
   η² κΣ_ii/[(1 − β)(1 + β − ηh'_i/2)], h' = h + λ, summed over the top-k modes and a flat
   bulk carrying the rest of tr Σ; for ``reshuffle`` the within-epoch anticorrelation of the
   batches is added exactly for this linear filter), the paper's one-constant law
   :func:`paper_local_displacement` (δ = A η²/(S(1 − β²))), the quadratic-model
   :func:`predict_global_displacement` and the rotation frequencies
   :func:`rotation_frequencies` (η ω_i = √(2η(h_i + λ)/(1 + β)), theory.md §4) next to the
   discrete spectral peaks :func:`predicted_spectral_peaks` and the measured ones
   :func:`spectral_peaks`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _checks, observers, samplers
from .hessian import hutchinson_trace, lanczos
from .hyper import Hyper
from .nn import (
    Dataset,
    FlaxProblem,
    count_params,
    init_params,
    load_dataset,
    loss_function,
    make_model,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "Continuation",
    "Measurements",
    "Network",
    "angular_momentum",
    "continue_sgd",
    "fit_paper_constant",
    "gradient_noise",
    "load_checkpoint",
    "make_network",
    "measure_checkpoint",
    "paper_local_displacement",
    "per_example_gradients",
    "predict_global_displacement",
    "predict_local_displacement",
    "predicted_spectral_peaks",
    "rotation_frequencies",
    "save_checkpoint",
    "spectral_peaks",
    "train_checkpoint",
]

CHECKPOINT_FORMAT = "limitdyn-limiting-checkpoint-1"
SAMPLINGS = ("iid", "reshuffle")


# --- the network -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A model, its loss and a train/test split, on flat parameter vectors.

    ``spec`` records how it was built (for checkpoints); ``x``/``y`` the training set (N rows),
    ``x_test``/``y_test`` the held-out rows; ``unravel`` maps a flat θ to the flax pytree;
    ``problem`` is the training loss as a :class:`~limitdyn.nn.FlaxProblem` (what the
    dynamics step).
    """

    spec: dict[str, Any]
    model: nn.Module
    loss_name: str
    x: jax.Array
    y: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    n_params: int
    unravel: Any
    problem: FlaxProblem

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def outputs(self, theta: jax.Array, x: jax.Array) -> jax.Array:
        return self.model.apply({"params": self.unravel(theta)}, x)

    def loss(self, theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        """L(θ) on (x, y) — without weight decay (λ enters the update, theory.md §1)."""
        return loss_function(self.loss_name)(self.outputs(theta, x), y)

    def accuracy(self, theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        out = self.outputs(theta, x)
        return jnp.mean(jnp.argmax(out, -1) == jnp.argmax(y, -1))


def make_network(dataset: str = "digits", model: str = "fcn", *, width: int = 32,
                 depth: int = 2, loss: str = "cross_entropy", n_train: int | None = None,
                 n_test: int | None = None, seed: int = 0) -> tuple[Network, np.ndarray]:
    """A :class:`Network` and its initial flat parameters θ_init (float32).

    ``dataset``: ``"digits"`` (1797 examples) or ``"teacher-student"`` (generated, 1024 by
    default). The rows are shuffled with ``seed``; the first ``n_train`` (default 75%) train,
    the next ``n_test`` (default the rest) are held out. ``model``: ``"fcn"`` (``depth``
    weight layers, ``width`` hidden units, ReLU) or ``"cnn"`` (``width`` channels).
    """
    _checks.choice("dataset", dataset, ("digits", "teacher-student"))
    _checks.choice("model", model, ("fcn", "cnn"))
    _checks.choice("loss", loss, ("mse", "cross_entropy"))
    width = _checks.integer("width", width, low=1)
    depth = _checks.integer("depth", depth, low=1)
    seed = _checks.integer("seed", seed, low=0)
    data: Dataset = load_dataset(dataset, seed=seed)
    total = data.n
    n_train = round(0.75 * total) if n_train is None else _checks.integer(
        "n_train", n_train, low=2, high=total - 1)
    n_test = total - n_train if n_test is None else _checks.integer(
        "n_test", n_test, low=1, high=total - n_train)
    order = np.random.default_rng([seed, 4217]).permutation(total)
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    mod = make_model(model, n_out=data.n_classes, width=width, depth=depth,
                     image_shape=data.image_shape)
    x = jnp.asarray(data.x[tr])
    params = init_params(mod, jax.random.key(seed), x)
    flat, unravel = ravel_pytree(params)
    spec = dict(dataset=dataset, model=model, width=width, depth=depth, loss=loss,
                n_train=n_train, n_test=n_test, seed=seed)
    y = jnp.asarray(data.y[tr])
    problem = FlaxProblem.from_module(mod, params, x, y, loss=loss)
    net = Network(spec, mod, loss, x, y, jnp.asarray(data.x[te]), jnp.asarray(data.y[te]),
                  count_params(params), unravel, problem)
    return net, np.asarray(flat)


# --- checkpoints -------------------------------------------------------------------------------

class Checkpoint(NamedTuple):
    """A trained point: flat ``theta`` and ``velocity`` (paper convention), ``meta`` (the
    network spec, training hyperparameters, losses)."""

    theta: np.ndarray
    velocity: np.ndarray
    meta: dict[str, Any]


def save_checkpoint(path: str | os.PathLike, theta: Any, velocity: Any | None = None,
                    meta: dict[str, Any] | None = None) -> str:
    """Write θ, v and a JSON ``meta`` record to ``path`` (numpy ``.npz``); returns the path."""
    theta = np.asarray(theta)
    if theta.ndim != 1 or not np.all(np.isfinite(theta)):
        raise ValueError(f"theta must be a finite flat vector, got shape {theta.shape}")
    velocity = np.zeros_like(theta) if velocity is None else np.asarray(velocity)
    if velocity.shape != theta.shape:
        raise ValueError(f"velocity must have theta's shape {theta.shape}, got {velocity.shape}")
    path = os.fspath(path)
    with open(path, "wb") as fh:
        np.savez(fh, theta=theta, velocity=velocity,
                 meta=np.array(json.dumps(dict(meta or {}, format=CHECKPOINT_FORMAT))))
    return path


def load_checkpoint(path: str | os.PathLike, net: Network | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; with ``net``, check that it
    belongs to that network (parameter count and, when recorded, the network spec)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    with np.load(path, allow_pickle=False) as z:
        if not {"theta", "velocity", "meta"} <= set(z.files):
            raise ValueError(f"{path!r} is not a limitdyn limiting checkpoint")
        theta, velocity = z["theta"], z["velocity"]
        meta = json.loads(str(z["meta"]))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path!r} has format {meta.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}")
    if net is not None:
        if theta.shape != (net.n_params,):
            raise ValueError(f"checkpoint has {theta.size} parameters, the network "
                             f"{net.n_params}")
        spec = meta.get("network")
        if spec is not None and spec != net.spec:
            raise ValueError(f"checkpoint was trained on network {spec}, not {net.spec}")
    return Checkpoint(theta, velocity, meta)


# --- the continuation kernel -------------------------------------------------------------------

class Continuation(NamedTuple):
    """K continuations from one start. Per-step arrays have shape (K, T) with column j the
    state after step j + 1; ``proj_theta``/``proj_v`` (K, T, k) are Vᵀ(θ_k − θ_0) and Vᵀv_k.
    ``eval_steps`` (E,) and ``train_loss``/``train_acc``/``test_loss``/``test_acc`` (K, E).
    ``diverged`` (K,) bool; ``diverged_at`` (K,) first step flagged (−1 if none)."""

    global_disp: np.ndarray
    local_disp: np.ndarray
    proj_theta: np.ndarray
    proj_v: np.ndarray
    eval_steps: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    diverged: np.ndarray
    diverged_at: np.ndarray
    theta: np.ndarray
    velocity: np.ndarray
    seconds: float

    @property
    def alive(self) -> np.ndarray:
        return ~self.diverged

    @property
    def n_diverged(self) -> int:
        return int(self.diverged.sum())


def _project(theta: jax.Array, velocity: jax.Array, data) -> jax.Array:
    """(Vᵀ(θ − θ_0), Vᵀv) for the rows V of a basis (trace function; data = (V, θ_0))."""
    basis, origin = data
    return jnp.concatenate([basis @ (theta - origin), basis @ velocity])


def _evaluate(theta: jax.Array, velocity: jax.Array, data) -> jax.Array:
    """Train loss, train accuracy, test loss, test accuracy (trace function)."""
    prob, x_test, y_test = data
    return jnp.stack([prob.loss(theta), prob.accuracy(theta), prob.loss_on(theta, x_test, y_test),
                      prob.accuracy(theta, x_test, y_test)])


def _key(key: Any) -> jax.Array:
    if isinstance(key, int) and not isinstance(key, bool):
        return jax.random.key(key)
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a jax PRNG key or an int seed, got {type(key).__name__}")
    return key


def _hyper(lr: Any, momentum: Any, weight_decay: Any, batch_size: Any, n: int
           ) -> tuple[float, float, float, int]:
    lr = _checks.finite_float("lr", lr, low=0.0, low_open=True)
    momentum = _checks.finite_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
    weight_decay = _checks.finite_float("weight_decay", weight_decay, low=0.0)
    batch_size = _checks.integer("batch_size", batch_size, low=1, high=n)
    return lr, momentum, weight_decay, batch_size


def continue_sgd(net: Network, theta0: Any, *, key: Any, n_traj: int, n_steps: int, lr: float,
                 momentum: float, weight_decay: float, batch_size: int,
                 sampling: str = "reshuffle", v0: Any | None = None, basis: Any | None = None,
                 eval_every: int | None = None, diverge_loss: float = 1e3) -> Continuation:
    """K = ``n_traj`` SGD continuations from θ_0 (theory.md §1 update; see module docstring).

    Args:
        net: the :class:`Network`.
        theta0: the flat start θ_0 (d,), e.g. a checkpoint's ``theta``.
        key: PRNG key or int; trajectory i uses ``fold_in(key, i)`` and step t of it
            ``fold_in(fold_in(key, i), t)`` — independent minibatch streams.
        n_traj: number of continuations K.
        n_steps: steps (a multiple of ``eval_every``, default ``n_steps // 10`` or 1).
        lr: η (traced: a sweep reuses the compiled kernel).
        momentum: β (traced).
        weight_decay: λ (traced).
        batch_size: S (static: changes the shapes).
        sampling: ``"iid"`` (independent S-subsets) or ``"reshuffle"`` (epoch permutations).
        v0: start velocity (default 0: a fresh optimiser, as when training is resumed).
        basis: (k, d) rows to project (θ − θ_0) and v on (default: none, k = 0).
        eval_every: steps between evaluations of the train and test loss and accuracy.
        diverge_loss: a trajectory whose training loss exceeds this at an evaluation step
            (or whose coordinates leave the runner's bounds at any step) is frozen, its Δ
            and δ NaN after that step, and counted (``diverged``).
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a limitdyn.limiting.Network, got {type(net).__name__}")
    key = _key(key)
    n_traj = _checks.integer("n_traj", n_traj, low=1)
    n_steps = _checks.integer("n_steps", n_steps, low=1)
    eta, beta, lam, batch_size = _hyper(lr, momentum, weight_decay, batch_size, net.n)
    _checks.choice("sampling", sampling, SAMPLINGS)
    eval_every = max(n_steps // 10, 1) if eval_every is None else _checks.integer(
        "eval_every", eval_every, low=1, high=n_steps)
    if n_steps % eval_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of eval_every ({eval_every})")
    diverge_loss = _checks.finite_float("diverge_loss", diverge_loss, low=0.0, low_open=True)
    d = net.n_params
    theta0 = np.asarray(theta0, np.float32)
    if theta0.shape != (d,) or not np.all(np.isfinite(theta0)):
        raise ValueError(f"theta0 must be a finite vector of {d} parameters, got "
                         f"shape {theta0.shape}")
    v0 = np.zeros(d, np.float32) if v0 is None else np.asarray(v0, np.float32)
    if v0.shape != (d,):
        raise ValueError(f"v0 must have shape ({d},), got {v0.shape}")
    basis = np.zeros((0, d), np.float32) if basis is None else np.asarray(basis, np.float32)
    if basis.ndim != 2 or basis.shape[1] != d:
        raise ValueError(f"basis must have shape (k, {d}), got {basis.shape}")
    from .runner import simulate_sgd

    eval_steps = np.arange(0, n_steps + 1, eval_every)
    evaluation = observers.Trace.from_dict(
        {"eval": (_evaluate, (net.problem, net.x_test, net.y_test))}, eval_steps,
        name="evaluation")
    hp = Hyper(lr=eta, momentum=beta, weight_decay=lam, batch_size=batch_size)
    res = simulate_sgd(
        net.problem, hp, key, n_traj, n_steps, sampling=sampling, theta0=theta0, v0=v0,
        record=eval_steps, burn_in=n_steps,
        traces={"global": "displacement", "local": "local_displacement",
                "proj": (_project, (jnp.asarray(basis), jnp.asarray(theta0)))},
        trace_steps=np.arange(1, n_steps + 1), observers=[evaluation], keep_final=True,
        max_loss=diverge_loss)
    k = basis.shape[0]
    proj = res.traces["proj"]
    ev = np.moveaxis(res.observed["evaluation"]["eval"], -1, 0)      # (4, K, E)
    diverged_at = res.diverged_at.astype(np.int64)
    seconds = float(res.metadata["compile_seconds"] + res.metadata["run_seconds"])
    return Continuation(res.traces["global"], res.traces["local"], proj[..., :k],
                        proj[..., k:], eval_steps, *ev, diverged_at >= 0, diverged_at,
                        res.final["theta"], res.final["velocity"], seconds)


def train_checkpoint(net: Network, theta_init: Any, *, key: Any, n_steps: int, lr: float,
                     momentum: float, weight_decay: float, batch_size: int,
                     sampling: str = "reshuffle", eval_every: int | None = None,
                     v0: Any | None = None) -> tuple[Checkpoint, Continuation]:
    """Train one network from ``theta_init`` (and velocity ``v0``, default 0) with the
    library's runner and return the final (θ, v) as a :class:`Checkpoint` (``meta`` holds
    the loss history) and the run (its per-step arrays are empty: only the evaluations at
    ``eval_every`` steps are recorded)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a limitdyn.limiting.Network, got {type(net).__name__}")
    key = _key(key)
    n_steps = _checks.integer("n_steps", n_steps, low=1)
    eta, beta, lam, batch_size = _hyper(lr, momentum, weight_decay, batch_size, net.n)
    _checks.choice("sampling", sampling, SAMPLINGS)
    eval_every = max(n_steps // 10, 1) if eval_every is None else _checks.integer(
        "eval_every", eval_every, low=1, high=n_steps)
    if n_steps % eval_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of eval_every ({eval_every})")
    from .runner import simulate_sgd

    eval_steps = np.arange(0, n_steps + 1, eval_every)
    hp = Hyper(lr=eta, momentum=beta, weight_decay=lam, batch_size=batch_size)
    res = simulate_sgd(
        net.problem, hp, key, 1, n_steps, sampling=sampling,
        theta0=np.asarray(theta_init, np.float32), v0=v0, record=eval_steps,
        burn_in=n_steps, traces={"eval": (_evaluate, (net.problem, net.x_test, net.y_test))},
        trace_steps=eval_steps, keep_final=True, max_loss=1e3)
    if res.diverged_at[0] >= 0:
        raise ValueError(f"training diverged at step {int(res.diverged_at[0])} (lr={lr:g}); "
                         "lower the learning rate")
    ev = np.moveaxis(res.traces["eval"], -1, 0)                      # (4, 1, E)
    empty = np.zeros((1, 0))
    run = Continuation(empty, empty, empty[..., None], empty[..., None], eval_steps, *ev,
                       np.zeros(1, bool), np.full(1, -1), res.final["theta"],
                       res.final["velocity"],
                       float(res.metadata["compile_seconds"] + res.metadata["run_seconds"]))
    meta = dict(network=net.spec, lr=lr, momentum=momentum, weight_decay=weight_decay,
                batch_size=batch_size, sampling=sampling, n_steps=n_steps,
                eval_steps=run.eval_steps.tolist(), train_loss=run.train_loss[0].tolist(),
                train_acc=run.train_acc[0].tolist(), test_loss=run.test_loss[0].tolist(),
                test_acc=run.test_acc[0].tolist())
    return Checkpoint(run.theta[0], run.velocity[0], meta), run


# --- measurements at the checkpoint ------------------------------------------------------------

def per_example_gradients(net: Network, theta: Any, *, chunk: int = 512) -> np.ndarray:
    """(N, d) per-example gradients ∇ℓ_i(θ) of the training set (vmap over examples)."""
    theta = jnp.asarray(theta, jnp.float32)
    return np.asarray(_per_example(net)(theta, net.x, net.y, chunk))


_PEG: dict[int, Any] = {}


def _per_example(net: Network):
    if id(net) not in _PEG:
        g1 = jax.grad(lambda th, xi, yi: net.loss(th, xi[None], yi[None]))

        def f(theta, x, y, chunk):
            return jax.lax.map(lambda xy: g1(theta, *xy), (x, y), batch_size=chunk)

        _PEG[id(net)] = (net, jax.jit(f, static_argnums=3))
    return _PEG[id(net)][1]


class Noise(NamedTuple):
    """Gradient-noise statistics: ``trace`` tr Σ, ``restricted`` VΣVᵀ (k, k), ``grad`` ∇L (d,)."""

    trace: float
    restricted: np.ndarray
    grad: np.ndarray


def gradient_noise(grads: Any, basis: Any | None = None) -> Noise:
    """tr Σ and VΣVᵀ of Σ = (1/N) Σ_i g_i g_iᵀ − ḡḡᵀ (theory.md §1) from (N, d) per-example
    gradients, in float64, without forming the d × d matrix."""
    G = np.asarray(grads, np.float64)
    if G.ndim != 2 or G.shape[0] < 1:
        raise ValueError(f"grads must have shape (N, d), got {G.shape}")
    gbar = G.mean(0)
    tr = float(np.sum(G * G) / G.shape[0] - gbar @ gbar)
    if basis is None:
        return Noise(tr, np.zeros((0, 0)), gbar)
    V = np.asarray(basis, np.float64)
    P = G @ V.T
    pbar = gbar @ V.T
    return Noise(tr, P.T @ P / G.shape[0] - np.outer(pbar, pbar), gbar)


class Measurements(NamedTuple):
    """What :func:`measure_checkpoint` measures (float64): ``eigvals`` (k,) top Hessian
    eigenvalues of L, ``eigvecs`` (k, d), ``residuals`` (k,) Lanczos bounds, ``trace_h`` and
    ``trace_h_se`` (Hutchinson), ``trace_sigma`` tr Σ, ``sigma_top`` VΣVᵀ, ``loss`` L(θ),
    ``grad_norm`` ‖∇L(θ)‖, ``n`` training examples, ``d`` parameters."""

    eigvals: np.ndarray
    eigvecs: np.ndarray
    residuals: np.ndarray
    trace_h: float
    trace_h_se: float
    trace_sigma: float
    sigma_top: np.ndarray
    loss: float
    grad_norm: float
    n: int
    d: int


def measure_checkpoint(net: Network, theta: Any, *, key: Any = 0, k: int = 8,
                       lanczos_iter: int = 64, hutchinson_samples: int = 100) -> Measurements:
    """Top-k Hessian eigenpairs (Lanczos), tr H (Hutchinson ± SE) and Σ (tr Σ, VΣVᵀ) at θ,
    all of the full training loss L (without the weight-decay term)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a limitdyn.limiting.Network, got {type(net).__name__}")
    key = _key(key)
    k = _checks.integer("k", k, low=1, high=net.n_params)
    lanczos_iter = _checks.integer("lanczos_iter", lanczos_iter, low=k, high=net.n_params)
    hutchinson_samples = _checks.integer("hutchinson_samples", hutchinson_samples, low=2)
    theta = jnp.asarray(theta, jnp.float32)
    if theta.shape != (net.n_params,):
        raise ValueError(f"theta must have shape ({net.n_params},), got {theta.shape}")
    k1, k2 = jax.random.split(key)
    eig = lanczos(net.loss, theta, net.x, net.y, key=k1, k=k, n_iter=lanczos_iter)
    tr = hutchinson_trace(net.loss, theta, net.x, net.y, key=k2, n_samples=hutchinson_samples,
                          batch_size=min(hutchinson_samples, 20))
    V = np.asarray(eig.vectors, np.float64)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    noise = gradient_noise(per_example_gradients(net, theta), V)
    return Measurements(np.asarray(eig.values, np.float64), V,
                        np.asarray(eig.residuals, np.float64), float(tr.estimate),
                        float(tr.stderr), noise.trace, noise.restricted,
                        float(net.loss(theta, net.x, net.y)), float(np.linalg.norm(noise.grad)),
                        net.n, net.n_params)


# --- predictions (float64 numpy; theory.md §4–§6) ----------------------------------------------

def _kappa(sampling: str, n: int, batch_size: int) -> float:
    return samplers.finite_population_factor("iid", n, batch_size)   # one batch: same for both


def _modes(meas: Measurements, weight_decay: float, bulk_curvature: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """Curvatures h' = h + λ and noise weights Σ_ii of the top-k modes plus one bulk mode.

    The bulk carries tr Σ − Σ_i Σ_ii at the mean remaining curvature
    (tr H − Σ_i h_i)/(d − k) (``"mean"``, clipped at 0) or at 0 (``"zero"``)."""
    k = len(meas.eigvals)
    h_top = np.maximum(meas.eigvals, 0.0)
    if bulk_curvature == "mean":
        hb = max((meas.trace_h - meas.eigvals.sum()) / max(meas.d - k, 1), 0.0)
    else:
        hb = 0.0
    s_top = np.clip(np.diag(meas.sigma_top), 0.0, None)
    s_bulk = max(meas.trace_sigma - s_top.sum(), 0.0)
    return np.concatenate([h_top, [hb]]) + weight_decay, np.concatenate([s_top, [s_bulk]])


def _impulse(h: np.ndarray, lr: float, beta: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Responses (position q_j, velocity r_j), j = 0 … length − 1, of each mode of
    x_{k+1} = M x_k − W ξ_k to a unit ξ_0 (theory.md §5: M = [[1 − ηh', ηβ], [−h', β]],
    W = (η, 1)); sign dropped (only products matter)."""
    q = np.empty((len(h), length))
    r = np.empty((len(h), length))
    a, b = lr * np.ones_like(h), np.ones_like(h)
    for j in range(length):
        q[:, j], r[:, j] = a, b
        a, b = (1 - lr * h) * a + lr * beta * b, -h * a + beta * b
    return q, r


def _reshuffle_correction(h: np.ndarray, lr: float, beta: float, n: int, batch_size: int
                          ) -> np.ndarray:
    """Per-mode Σ_{m=1}^{E−1} (1 − m/E) · 2 c_m with c_m = Σ_j r_j r_{j+m} (E = N // S steps
    per epoch): the phase-averaged extra Var v per unit Σ_ii, times −1/(N − 1), from the
    anticorrelation Cov(ξ_s, ξ_t) = −Σ/(N − 1) of distinct batches of one epoch."""
    E = n // batch_size
    if E <= 1:
        return np.zeros_like(h)
    rho = np.max(np.abs(np.linalg.eigvals(np.stack(
        [np.stack([1 - lr * h, lr * beta * np.ones_like(h)], -1),
         np.stack([-h, beta * np.ones_like(h)], -1)], -2))), axis=-1)
    rho = np.where(h > 0, rho, beta)      # h' = 0: the unit θ-eigenvalue does not feed v
    tail = int(min(np.ceil(30 / max(1 - rho.max(), 1e-6)), 200_000))
    L = E + tail
    _, r = _impulse(h, lr, beta, L)
    nfft = 1 << int(np.ceil(np.log2(2 * L)))
    F = np.fft.rfft(r, nfft, axis=1)
    c = np.fft.irfft(F * np.conj(F), nfft, axis=1)[:, 1:E]          # c_m, m = 1 … E − 1
    m = np.arange(1, E)
    return 2 * (c * (1 - m / E)).sum(1)


def predict_local_displacement(meas: Measurements, *, lr: float, momentum: float,
                               weight_decay: float, batch_size: int, sampling: str = "iid",
                               bulk_curvature: str = "mean", per_mode: bool = False) -> Any:
    """Stationary E δ = η² tr Cov(v) from the measured Σ, no fitted constant (theory.md §5–§6).

    Each top Hessian mode i (curvature h'_i = h_i + λ, noise κΣ_ii in the eigenbasis, κ =
    (N − S)/(S(N − 1))) contributes the exact discrete additive-noise value
    η² κΣ_ii/[(1 − β)(1 + β − ηh'_i/2)]; the rest of tr Σ is one bulk mode (see ``_modes``).
    The trace needs only the diagonal Σ_ii: each mode filters its own noise component. For
    ``reshuffle`` batches of one epoch are disjoint, so Cov(ξ_s, ξ_t) = −Σ/(N − 1) within an
    epoch; the phase-averaged correction −Σ_ii/(N − 1) · Σ_m (1 − m/E) 2 c_m is added
    (derived; exact for the linear model at fixed Σ). With ``per_mode`` returns the (k + 1,)
    contributions (bulk last).
    """
    eta, beta, lam, S = _hyper(lr, momentum, weight_decay, batch_size, meas.n)
    _checks.choice("sampling", sampling, SAMPLINGS)
    _checks.choice("bulk_curvature", bulk_curvature, ("mean", "zero"))
    h, s = _modes(meas, lam, bulk_curvature)
    denom = (1 - beta) * (1 + beta - eta * h / 2)
    if np.any(denom <= 0):
        raise ValueError(f"lr={eta:g} is outside the stability region of the top mode "
                         f"(η h' >= 2(1 + β))")
    var_unit = _kappa(sampling, meas.n, S) / denom
    if sampling == "reshuffle":
        var_unit = var_unit - _reshuffle_correction(h, eta, beta, meas.n, S) / (meas.n - 1)
    out = eta ** 2 * s * var_unit
    return out if per_mode else float(out.sum())


def paper_local_displacement(*, lr: float, momentum: float, batch_size: int,
                             constant: float) -> float:
    """The paper's law δ = A η²/(S(1 − β²)) with A = σ² tr H (theory.md §6) — one constant."""
    return constant * lr ** 2 / (batch_size * (1 - momentum ** 2))


def fit_paper_constant(delta: Any, lr: Any, momentum: Any, batch_size: Any) -> float:
    """The paper's one fitted constant: A minimising Σ (log δ − log(A η²/(S(1 − β²))))²."""
    shape = np.asarray(lr, float) ** 2 / (np.asarray(batch_size, float)
                                          * (1 - np.asarray(momentum, float) ** 2))
    return float(np.exp(np.mean(np.log(np.asarray(delta, float) / shape))))


def predict_global_displacement(meas: Measurements, steps: Any, *, lr: float, momentum: float,
                                weight_decay: float, batch_size: int,
                                start: str | tuple[float, float, int] = "stationary",
                                bulk_curvature: str = "mean", per_mode: bool = False) -> Any:
    """E Δ_k of the quadratic model on the measured top-k Hessian and noise (theory.md §6).

    Modes as in :func:`predict_local_displacement` (iid noise κΣ_ii). v_0 = 0 (a fresh
    optimiser). ``start="minimum"``: θ_0 is the minimiser; ``"stationary"``: θ_0 is a draw
    from the stationary law at the same hyperparameters; (η₀, β₀, S₀): from the stationary
    law of the run that produced the checkpoint at those hyperparameters. Then
    E‖θ_k − θ_0‖² = Σ_i [(M^k − I) C₀ (M^k − I)ᵀ + Σ_{j<k} M^j W s_i Wᵀ M^jᵀ]_θθ, exact for
    the additive-noise linear model (per-mode 2 × 2 moment recursion).
    """
    eta, beta, lam, S = _hyper(lr, momentum, weight_decay, batch_size, meas.n)
    steps = np.asarray(steps, np.int64)
    if steps.ndim != 1 or np.any(steps < 0):
        raise ValueError("steps must be a 1-d array of non-negative step indices")
    h, s = _modes(meas, lam, bulk_curvature)
    s = _kappa("iid", meas.n, S) * s
    if isinstance(start, str):
        _checks.choice("start", start, ("minimum", "stationary"))
    elif len(start) != 3:
        raise ValueError(f"start must be 'minimum', 'stationary' or (lr, momentum, batch_size), "
                         f"got {start!r}")
    if start == "minimum":
        var_t0 = np.zeros_like(h)
    else:
        eta0, beta0, S0 = (eta, beta, S) if start == "stationary" else start
        s0 = _kappa("iid", meas.n, int(S0)) * _modes(meas, lam, bulk_curvature)[1]
        # stationary Var θ of the run that produced θ_0 (theory.md §5 closed form)
        var_v0 = s0 / ((1 - beta0) * (1 + beta0 - eta0 * h / 2))
        var_t0 = np.where(h > 0, eta0 * (1 + beta0) * var_v0 / (2 * np.where(h > 0, h, 1)),
                          0.0)
    # state: deviation e = θ − θ_0 split as mean-propagated part and noise part
    # D_k = E(θ_k − θ_0)² = P_k var_t0 + noise_k where (P_k) is from propagating (1, 0).
    a, b = np.ones_like(h), np.zeros_like(h)          # mean response to θ_0 − μ = 1, v_0 = 0
    tt, tv, vv = np.zeros_like(h), np.zeros_like(h), np.zeros_like(h)
    out = np.empty((len(steps), len(h)))
    want: dict[int, list[int]] = {}
    for j, k in enumerate(steps):
        want.setdefault(int(k), []).append(j)
    c = h
    A, B = 1 - eta * c, eta * beta
    for k in range(int(steps.max(initial=0)) + 1):
        for j in want.get(k, []):
            out[j] = (a - 1) ** 2 * var_t0 + tt
        a, b = A * a + B * b, -c * a + beta * b
        tt, tv, vv = (A * A * tt + 2 * A * B * tv + B * B * vv + eta ** 2 * s,
                      -A * c * tt + (A * beta - B * c) * tv + B * beta * vv + eta * s,
                      c * c * tt - 2 * c * beta * tv + beta ** 2 * vv + s)
    return out if per_mode else out.sum(1)


def rotation_frequencies(eigvals: Any, *, lr: float, momentum: float,
                         weight_decay: float) -> np.ndarray:
    """η ω_i = √(2η(h_i + λ)/(1 + β)) radians per step (theory.md §4; NaN where h_i + λ < 0)."""
    h = np.asarray(eigvals, np.float64) + weight_decay
    with np.errstate(invalid="ignore"):
        return np.sqrt(2 * lr * h / (1 + momentum))


def predicted_spectral_peaks(eigvals: Any, *, lr: float, momentum: float, weight_decay: float,
                             n_freq: int = 4096) -> np.ndarray:
    """Peak frequency (radians per step, in [0, π]) of the position spectrum of each mode of the
    discrete linear model driven by white noise: argmax_w |e_θᵀ (e^{iw} − M)⁻¹ W|²."""
    h = np.asarray(eigvals, np.float64) + weight_decay
    w = np.linspace(0, np.pi, n_freq)
    z = np.exp(1j * w)[None, :]
    hh = h[:, None]
    # det(zI − M) and the θ row of adj(zI − M) W (M as in _impulse)
    det = (z - 1 + lr * hh) * (z - momentum) + lr * momentum * hh
    num = lr * (z - momentum) + lr * momentum
    psd = np.abs(num / det) ** 2
    return w[np.argmax(psd, axis=1)]


def spectral_peaks(series: Any, *, detrend: bool = True, min_freq: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Measured spectral peaks of projected trajectories.

    ``series`` (K, T, k): the periodogram of each trajectory's mode series (linear trend
    removed), averaged over the K trajectories; returns (peak frequency (k,) in radians per
    step, frequencies (F,), mean periodogram (F, k)). Frequencies below ``min_freq`` are
    ignored when locating the peak.
    """
    x = np.asarray(series, np.float64)
    if x.ndim != 3 or x.shape[1] < 8:
        raise ValueError(f"series must have shape (K, T >= 8, k), got {x.shape}")
    x = x[np.all(np.isfinite(x), axis=(1, 2))]
    if len(x) == 0:
        raise ValueError("every trajectory is non-finite")
    T = x.shape[1]
    if detrend:
        t = np.arange(T) - (T - 1) / 2
        slope = np.einsum("t,ktm->km", t, x - x.mean(1, keepdims=True)) / (t @ t)
        x = x - x.mean(1, keepdims=True) - slope[:, None, :] * t[None, :, None]
    win = np.hanning(T)[None, :, None]
    P = (np.abs(np.fft.rfft(x * win, axis=1)) ** 2).mean(0)
    w = 2 * np.pi * np.fft.rfftfreq(T)
    sel = w >= min_freq
    peak = w[sel][np.argmax(P[sel], axis=0)]
    return peak, w, P


def angular_momentum(proj_theta: Any, proj_v: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean angular momentum per eigenplane, ⟨a_k b_{k+1} − a_{k+1} b_k⟩ over steps and
    trajectories (a = projected θ − θ_0, b = projected v; the sense of rotation of the
    probability current, theory.md §4), with its standard error over trajectories.
    ``proj_theta``, ``proj_v``: (K, T, k)."""
    a = np.asarray(proj_theta, np.float64)
    b = np.asarray(proj_v, np.float64)
    L = (a[:, :-1] * b[:, 1:] - a[:, 1:] * b[:, :-1]).mean(1)
    L = L[np.all(np.isfinite(L), axis=1)]
    return L.mean(0), L.std(0, ddof=1) / math.sqrt(max(len(L), 1))
