"""Gradient-noise models for the continuous-time equations (theory.md §2).

Every model supplies the **per-step** gradient-noise covariance C(θ) — the covariance of
``g_B − ∇L`` one SGD step would see — which enters the Langevin equation as η·C. They are

========== ============================================== ==============================
name        C(θ)                                           notes
========== ============================================== ==============================
paper       σ² H / S                                       Kunin et al.; σ² = 2L(θ*) by
                                                           default (MSE), or ``sigma2``
frozen      κ Σ(θ*)                                        the empirical covariance at
                                                           the minimiser, with the
                                                           sampling's κ (theory.md §1)
exact       κ Σ(θ)                                         state dependent; sampled as
                                                           Gᵀ(z − z̄)/√N, O(Nd), no d×d
                                                           factorisation
isotropic   σ² I                                           σ² = tr(κ Σ(θ*))/d by default
                                                           (same total variance as SGD)
matrix      a given constant (d, d) covariance
factor      F(θ) F(θ)ᵀ for a user function F: (d,) → (d, r)
========== ============================================== ==============================

For a :class:`~limitdyn.Quadratic` the problem's own per-step covariance plays the part of
κΣ (``frozen`` and ``exact`` coincide) and ``paper`` uses σ² = S·tr C / tr H by default
(σ²H/S with the same trace as C), since a noisy quadratic has no training loss to read
σ² from.

Any :class:`~limitdyn.FiniteSum` (your own problem, a network) supports ``exact`` — its
``noise_sample`` is one vector–Jacobian product — and ``isotropic`` (σ² = tr κΣ(θ_ref)/d
at the minimiser when the problem knows it, else at the mean start point); ``paper`` and
``frozen`` need a minimiser (and ``paper`` a Hessian): asking a problem without them is a
one-line :class:`~limitdyn.problems.UnsupportedError`.

On the host a model is *resolved* once into a static :class:`NoiseSpec` (hashable, keys
the compile cache) and traced arrays, so new hyperparameters or data of the same shapes
never recompile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, samplers
from .hyper import Hyper
from .problems import (
    FiniteSum,
    LinearRegression,
    Problem,
    Quadratic,
    UnsupportedError,
    has_capability,
    hessian64,
)

NOISE_MODELS = ("paper", "frozen", "exact", "isotropic")
CONSTANT_KINDS = ("paper", "frozen", "isotropic", "matrix")


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """The static part of a resolved noise model."""

    kind: str                       # "constant" | "exact" | "factor"
    n_normals: int                  # standard normals drawn per sample
    name: str                       # the model's name, for reports
    factor_fn: Callable | None = None


def _batch_size(prob, hp: Hyper) -> int:
    if prob.n_examples is None:
        return 1 if hp.batch_size is None else hp.batch_size
    S = prob.n_examples if hp.batch_size is None else hp.batch_size
    if not 1 <= S <= prob.n_examples:
        raise ValueError(f"Hyper.batch_size must be in [1, N={prob.n_examples}] for this "
                         f"problem, got {S}")
    return S


def kappa(prob, hp: Hyper, sampling: str) -> float:
    """κ of the sampling mode (1 for a Quadratic, whose noise is already per step)."""
    if prob.n_examples is None:
        if sampling != "iid":
            raise ValueError(f"sampling must be 'iid' for a Quadratic problem, got {sampling!r}")
        return 1.0
    sampling = _checks.choice("sampling", sampling, ("iid", "replacement"))
    return samplers.finite_population_factor(sampling, prob.n_examples, _batch_size(prob, hp))


def _empirical_cov(prob, theta: np.ndarray) -> np.ndarray:
    """Σ(θ) in float64 (the problem's own per-step covariance for a Quadratic)."""
    if isinstance(prob, Quadratic):
        return prob.noise_covariance64()
    if isinstance(prob, LinearRegression):
        X, y = prob.numpy()
        r = X @ theta - y
        G = X * r[:, None]
    elif isinstance(prob, FiniteSum):
        G = np.asarray(prob.per_example_gradients(jnp.asarray(theta)), np.float64)
    else:
        raise UnsupportedError(f"{type(prob).__name__} has no per-example gradients (not a "
                               "FiniteSum): give the noise as a (d, d) array or a factor "
                               "function")
    g = G.mean(0)
    return G.T @ G / G.shape[0] - np.outer(g, g)


def _trace_cov(prob, theta: np.ndarray) -> float:
    """tr Σ(θ) in float64 without the d × d matrix."""
    if isinstance(prob, Quadratic):
        return float(np.trace(prob.noise_covariance64()))
    if isinstance(prob, LinearRegression):
        X, y = prob.numpy()
        G = X * (X @ theta - y)[:, None]
    elif isinstance(prob, FiniteSum):
        G = np.asarray(prob.per_example_gradients(jnp.asarray(theta)), np.float64)
    else:
        raise UnsupportedError(f"{type(prob).__name__} has no per-example gradients (not a "
                               "FiniteSum): give sigma2 for the isotropic noise")
    g = G.mean(0)
    return float(np.sum(G * G) / G.shape[0] - g @ g)


def _minimiser(prob, hp: Hyper, what: str) -> np.ndarray:
    if not has_capability(prob, "minimiser"):
        raise UnsupportedError(f"noise {what!r} needs the minimiser, which "
                               f"{type(prob).__name__} cannot supply; use noise='exact', "
                               "'isotropic', a (d, d) array or a factor function")
    return prob.minimiser64(hp.weight_decay)


def _default_sigma2(prob, hp: Hyper, mu: np.ndarray) -> float:
    """σ² of the paper model: 2L(θ*) for linear regression (MSE), trace-matched otherwise."""
    if isinstance(prob, LinearRegression):
        X, y = prob.numpy()
        r = X @ mu - y
        return float(np.mean(r * r))          # 2 · (1/2N)‖r‖²
    H = hessian64(prob)
    trH = np.trace(H)
    if trH <= 0:
        raise ValueError("noise='paper' needs a Hessian with positive trace")
    return float(_batch_size(prob, hp) * _trace_cov(prob, mu) / trH)


def check_problem(prob: Any) -> None:
    if not isinstance(prob, Problem):
        raise TypeError("prob must be a limitdyn problem (ld.LinearRegression, ld.Quadratic, "
                        f"ld.nn.FlaxProblem or an ld.Problem subclass), got "
                        f"{type(prob).__name__}")


def _name(noise: Any) -> str:
    if callable(noise):
        return "factor"
    if isinstance(noise, str):
        return _checks.choice("noise", noise, NOISE_MODELS)
    if isinstance(noise, (np.ndarray, jax.Array, list, tuple)):
        return "matrix"
    raise TypeError(f"noise must be one of {NOISE_MODELS}, a (d, d) covariance array or a "
                    f"function theta -> (d, r) noise factor; got {type(noise).__name__}")


def per_step_covariance(prob: Problem, hp: Hyper, noise: Any = "paper", *,
                        sampling: str = "iid", sigma2: float | None = None,
                        theta: Any = None, dim: int | None = None) -> np.ndarray:
    """The per-step noise covariance C (d, d) of a noise model, float64.

    For ``exact`` this is κΣ(θ) at ``theta`` (default the minimiser of L_λ, i.e. the
    ``frozen`` value). A ``factor`` function has no host-side covariance: ValueError.
    """
    check_problem(prob)
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    name = _name(noise)
    d = prob.dim if prob.dim is not None else dim
    if sigma2 is not None:
        sigma2 = _checks.finite_float("sigma2", sigma2, low=0.0)
        if name not in ("paper", "isotropic"):
            raise ValueError(f"sigma2 applies to noise 'paper' and 'isotropic' only, not {name!r}")
    if name == "factor":
        raise ValueError("a user noise-factor function has no constant covariance; pass a "
                         "(d, d) array or one of 'paper', 'frozen', 'exact', 'isotropic'")
    if name == "matrix":
        C = _checks.real_array("noise", noise, shape=(d, d))
        if not np.allclose(C, C.T, rtol=1e-10, atol=1e-300) or np.linalg.eigvalsh(
                0.5 * (C + C.T))[0] < -1e-10 * max(1.0, np.abs(C).max()):
            raise ValueError("a noise covariance array must be symmetric positive semi-definite")
        return 0.5 * (C + C.T)
    k = kappa(prob, hp, sampling)
    if name == "paper":
        if not has_capability(prob, "hessian"):
            raise UnsupportedError(f"noise 'paper' (σ²H/S) needs the Hessian, which "
                                   f"{type(prob).__name__} cannot supply; use noise='exact' "
                                   "or 'isotropic'")
        mu = _minimiser(prob, hp, "paper") if sigma2 is None else None
        s2 = _default_sigma2(prob, hp, mu) if sigma2 is None else sigma2
        return s2 * hessian64(prob) / _batch_size(prob, hp)
    if name == "isotropic":
        if sigma2 is None:
            at = prob.minimiser64(hp.weight_decay) if theta is None else \
                _checks.real_array("theta", theta, shape=(d,))
            s2 = k * _trace_cov(prob, at) / d
        else:
            s2 = sigma2
        return s2 * np.eye(d)
    if name == "frozen" and theta is not None:
        raise ValueError("theta applies to noise 'exact' only")
    at = _minimiser(prob, hp, name) if theta is None else _checks.real_array(
        "theta", theta, shape=(d,))
    return k * _empirical_cov(prob, at)


def _psd_factor(C: np.ndarray) -> np.ndarray:
    """F with F Fᵀ = C for a symmetric PSD C (eigen-decomposition; C may be singular)."""
    evals, evecs = np.linalg.eigh(C)
    return evecs * np.sqrt(np.clip(evals, 0.0, None))


def resolve(prob: Problem, hp: Hyper, noise: Any, *, sampling: str,
            sigma2: float | None, dtype, theta_ref: np.ndarray | None = None,
            dim: int | None = None) -> tuple[NoiseSpec, dict[str, Any]]:
    """Host-side resolution: the static spec and the traced arrays :func:`apply` needs.

    ``theta_ref``: where ``isotropic`` measures tr Σ when the problem has no minimiser.
    """
    name = _name(noise)
    d = prob.dim if prob.dim is not None else dim
    if name == "factor":
        if sigma2 is not None:
            raise ValueError("sigma2 applies to noise 'paper' and 'isotropic' only")
        probe = jax.eval_shape(noise, jax.ShapeDtypeStruct((d,), dtype))
        shape = getattr(probe, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != d:
            raise ValueError(f"a noise-factor function must map theta (d={d},) to a (d, r) "
                             f"matrix; it returned {probe}")
        return NoiseSpec("factor", int(shape[1]), "factor", noise), {}
    if name == "exact" and isinstance(prob, FiniteSum):
        if sigma2 is not None:
            raise ValueError("sigma2 applies to noise 'paper' and 'isotropic' only")
        scale = np.sqrt(kappa(prob, hp, sampling))
        return (NoiseSpec("exact", prob.n_examples, "exact"),
                {"scale": jnp.asarray(scale, dtype)})
    if name == "exact" and not isinstance(prob, Quadratic):
        raise UnsupportedError(f"noise 'exact' needs a FiniteSum (per-example losses) or a "
                               f"Quadratic; {type(prob).__name__} is neither: give the noise "
                               "as a (d, d) array or a factor function")
    theta = None
    if name == "isotropic" and sigma2 is None and not has_capability(prob, "minimiser"):
        if theta_ref is None:
            raise UnsupportedError("noise 'isotropic' needs sigma2 or a point to measure "
                                   "tr Σ at")
        theta = theta_ref
    C = per_step_covariance(prob, hp, noise, sampling=sampling, sigma2=sigma2, theta=theta,
                            dim=d)
    return (NoiseSpec("constant", d, name if isinstance(noise, str) else "matrix"),
            {"factor": jnp.asarray(_psd_factor(C), dtype)})


def standard_normals(spec: NoiseSpec, key: jax.Array, dtype) -> jax.Array:
    return jax.random.normal(key, (spec.n_normals,), dtype)


def apply(spec: NoiseSpec, params: dict[str, Any], prob: Any, theta: jax.Array,
          z: jax.Array) -> jax.Array:
    """A vector with covariance C(θ) built from ``spec.n_normals`` standard normals ``z``.

    ``exact`` (theory.md §2): Σ(θ) = (1/N) Gᵀ P G with G's rows the per-example gradients
    x_i r_i and P = I − 11ᵀ/N idempotent, so Gᵀ(z − z̄)/√N has covariance exactly Σ(θ).
    """
    if spec.kind == "constant":
        return z @ params["factor"].T      # = F z; under vmap (K, r) × (r, d), no transpose
    if spec.kind == "exact":
        return prob.noise_sample(theta, z, params["scale"])
    return z @ spec.factor_fn(theta).T
