"""The uv model: exact gradient-descent recursion, exact Hessian sharpness, thresholds.

Model (theory.md §7; Kalra & Barkeshli 2023 §3, after Lewkowycz et al. 2020): one example
(x, y), parameters u, v ∈ R^w, f = vᵀu x/√w, loss L = ½ r², r = f − y. Gradient descent with
step η: with g = η r x/√w,

    u' = u − g v,   v' = v − g u.

Everything depends on u, v only through a = ‖u‖², b = ‖v‖², s = uᵀv, which obey the exact
(closed, three-dimensional) recursion

    a' = a − 2gs + g²b,   b' = b − 2gs + g²a,   s' = (1 + g²)s − g(a + b),

derived by expanding the squared norms and the inner product of the update. The NTK is
λ_NTK = x²(a + b)/w. The Hessian is H = κ h hᵀ + ρ D with κ = x²/w, ρ = r x/√w,
h = ∇f/√κ and D the swap (u, v) ↦ (v, u) (eigenvalues ±1); rotating to D's eigenbasis makes
it a rank-one update of ±ρ, whose eigenvalues off ±ρ solve the secular equation

    λ² − λ_NTK λ − ρ² − 2κρs = 0,

so the sharpness (largest eigenvalue; it is >= |ρ|, the rest of the spectrum) is

    λᴴ = [λ_NTK + √(λ_NTK² + 4 r²x²/w + 8 x² r f/w)]/2.

At large width λᴴ → λ_NTK; at finite width λᴴ_0 > λ_NTK when r f > 0. This module is
float64 numpy, vectorised over seeds × learning rates; no Monte Carlo beyond sampling the
initial u, v ~ N(0, I_w).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _checks

__all__ = ["UVState", "UVThresholds", "uv_init", "uv_ntk", "uv_run", "uv_sharpness",
           "uv_thresholds"]


class UVState(NamedTuple):
    """a = ‖u‖², b = ‖v‖², s = uᵀv (arrays of any common shape)."""

    a: np.ndarray
    b: np.ndarray
    s: np.ndarray


def uv_init(width: int, n_seeds: int, seed: int = 0) -> UVState:
    """(a, b, s) of ``n_seeds`` independent initialisations u, v ~ N(0, I_width)."""
    width = _checks.integer("width", width, low=1)
    n_seeds = _checks.integer("n_seeds", n_seeds, low=1)
    rng = np.random.default_rng([_checks.integer("seed", seed, low=0), 31337])
    u = rng.standard_normal((n_seeds, width))
    v = rng.standard_normal((n_seeds, width))
    return UVState(np.sum(u * u, 1), np.sum(v * v, 1), np.sum(u * v, 1))


def uv_ntk(state: UVState, width: int, x: float = 1.0) -> np.ndarray:
    """λ_NTK = x²(‖u‖² + ‖v‖²)/w."""
    return x * x * (state.a + state.b) / width


def uv_sharpness(state: UVState, width: int, x: float = 1.0, y: float = 0.0) -> np.ndarray:
    """Exact largest Hessian eigenvalue of L = ½(vᵀu x/√w − y)² (module docstring)."""
    f = state.s * x / np.sqrt(width)
    r = f - y
    lam = uv_ntk(state, width, x)
    disc = lam * lam + 4 * r * r * x * x / width + 8 * x * x * r * f / width
    return 0.5 * (lam + np.sqrt(np.maximum(disc, 0.0)))


def uv_step(state: UVState, eta: np.ndarray, width: int, x: float = 1.0,
            y: float = 0.0) -> UVState:
    """One exact gradient-descent step of the (a, b, s) recursion."""
    a, b, s = state
    r = s * x / np.sqrt(width) - y
    g = eta * r * x / np.sqrt(width)
    return UVState(a - 2 * g * s + g * g * b, b - 2 * g * s + g * g * a,
                   (1 + g * g) * s - g * (a + b))


class UVRun(NamedTuple):
    """Trajectories with a trailing time axis (n_steps + 1): loss ½r², λ_NTK, λᴴ; and
    ``diverged`` (no time axis): the weight norm a + b grew past ``blowup`` × its start or a
    value stopped being finite."""

    loss: np.ndarray
    ntk: np.ndarray
    hessian: np.ndarray
    diverged: np.ndarray


def uv_run(state: UVState, eta: Any, width: int, n_steps: int, x: float = 1.0,
           y: float = 0.0, blowup: float = 1e6) -> UVRun:
    """Run the exact recursion for ``n_steps`` steps; ``eta`` broadcasts against the state.

    Divergent entries are frozen (and flagged) once a + b exceeds ``blowup`` × (a₀ + b₀), so
    the arrays stay finite; their later losses are recorded as +inf.
    """
    width = _checks.integer("width", width, low=1)
    n_steps = _checks.integer("n_steps", n_steps, low=1, high=10**7)
    eta = np.asarray(eta, np.float64)
    if np.any(~np.isfinite(eta)) or np.any(eta <= 0):
        raise ValueError("every learning rate must be finite and > 0")
    shape = np.broadcast_shapes(np.shape(state.a), eta.shape)
    st = UVState(*(np.broadcast_to(v, shape).astype(np.float64) for v in state))
    eta = np.broadcast_to(eta, shape)
    norm0 = st.a + st.b
    div = np.zeros(shape, bool)
    loss = np.empty((*shape, n_steps + 1))
    ntk, hess = np.empty_like(loss), np.empty_like(loss)

    def record(t, st):
        r = st.s * x / np.sqrt(width) - y
        loss[..., t] = np.where(div, np.inf, 0.5 * r * r)
        ntk[..., t] = uv_ntk(st, width, x)
        hess[..., t] = uv_sharpness(st, width, x, y)

    record(0, st)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, n_steps + 1):
            new = uv_step(st, eta, width, x, y)
            bad = ~(np.isfinite(new.a) & np.isfinite(new.b) & np.isfinite(new.s)) | (
                new.a + new.b > blowup * norm0)
            div = div | bad
            st = UVState(*(np.where(div, o, n) for o, n in zip(st, new, strict=True)))
            record(t, st)
    return UVRun(loss, ntk, hess, div)


class UVThresholds(NamedTuple):
    """Per-seed critical values (NaN where not found on the grid) and the grid used."""

    cs: np.ndarray
    c_loss: np.ndarray
    c_sharp: np.ndarray
    c_max: np.ndarray
    lam0: np.ndarray


def uv_thresholds(width: int, cs: Any, *, n_seeds: int = 200, seed: int = 0,
                  units: str = "ntk", sharpness: str = "hessian", n_early: int = 10,
                  n_steps: int = 1000, x: float = 1.0, y: float = 0.0) -> UVThresholds:
    """Critical learning rates of the uv model per initialisation (theory.md §7).

    η = c/λ_0 with λ_0 = λ_NTK (``units="ntk"``) or λᴴ_0 (``"hessian"``). c_loss: smallest c
    with L_t > L_0 for some 1 <= t <= ``n_early``; c_sharp: smallest c with λ_t > λ_0 (the
    ``sharpness`` measure: ``"hessian"`` λᴴ or ``"ntk"``) for some 1 <= t <= ``n_early``;
    both searched among non-divergent c; c_max: the largest grid c below the first one
    that diverges within ``n_steps`` steps (weights blow up).
    """
    _checks.choice("units", units, ("ntk", "hessian"))
    _checks.choice("sharpness", sharpness, ("ntk", "hessian"))
    cs = _checks.real_array("cs", cs, ndim=1)
    if np.any(cs <= 0):
        raise ValueError(f"every c must be > 0, got min {cs.min():g}")
    cs = np.sort(cs)
    n_early = _checks.integer("n_early", n_early, low=1)
    n_steps = _checks.integer("n_steps", n_steps, low=n_early)
    st = uv_init(width, n_seeds, seed)
    lam0 = uv_ntk(st, width, x) if units == "ntk" else uv_sharpness(st, width, x, y)
    eta = cs[None, :] / lam0[:, None]
    run = uv_run(UVState(*(v[:, None] for v in st)), eta, width, n_steps, x, y)
    meas = run.hessian if sharpness == "hessian" else run.ntk
    early = slice(1, n_early + 1)
    loss_up = np.any(run.loss[..., early] > run.loss[..., :1], axis=-1)
    sharp_up = np.any(meas[..., early] > meas[..., :1], axis=-1)
    out = {k: np.full(n_seeds, np.nan) for k in ("c_loss", "c_sharp", "c_max")}
    for i in range(n_seeds):
        first = int(np.argmax(run.diverged[i])) if run.diverged[i].any() else len(cs)
        if first == 0:
            continue
        out["c_max"][i] = cs[first - 1]
        for name, hit in (("c_loss", loss_up[i, :first]), ("c_sharp", sharp_up[i, :first])):
            if hit.any():
                out[name][i] = cs[int(np.argmax(hit))]
    return UVThresholds(cs, out["c_loss"], out["c_sharp"], out["c_max"], lam0)
