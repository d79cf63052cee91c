"""Continuous-time models of SGD with momentum and their integrators (theory.md §2–§3).

Two models, both in phase space (θ, v) with the discrete kernel's velocity convention and
time axis (t = η k, horizons in SGD steps):

* ``langevin`` — the underdamped Langevin equation of Kunin et al.::

      dθ = v dt
      dv = −a [(1 − β) v + ∇L_λ(θ)] dt + a √η F(θ) dW,     a = 2/(η(1 + β)),

  F(θ)F(θ)ᵀ = C(θ) the per-step gradient-noise covariance of a noise model
  (:mod:`limitdyn.noise`). The friction on v is 2γ = a(1 − β).
* ``sme`` — the first-order stochastic modified equation of heavy-ball SGD,
  dθ = −∇L_λ dt/(1 − β) + √η F(θ) dW/(1 − β) (Li–Tai–E's dθ = −∇L_λ dt + √(ηC) dW at
  β = 0; the factors make the heavy ball's effective step η/(1 − β)). Its velocity is
  defined like the discrete one, v(t) = (θ(t) − θ(t − η))/η, the displacement over the
  last SGD step per unit learning rate (so it needs dt ≤ η).

Integrators (``solver``):

* ``em`` — Euler–Maruyama (weak order 1). Strongly biased on the underdamped model even
  at the default step: on the test problem of ``tests/test_sde_statistics.py``
  (h·ω_max = 0.08) its stationary Cov θ is 21% and Cov v 30% too large. Use BAOAB.
* ``baoab`` — the BAOAB splitting (Leimkuhler–Matthews) with the Ornstein–Uhlenbeck
  sub-step solved exactly: v ← e^{−2γh}v + a√η √((1 − e^{−4γh})/(4γ)) F(θ) z. Weak order 2;
  for a quadratic with constant noise its position marginal is exact at any step.
  Langevin model only.
* ``exact`` — exact in distribution for quadratic problems with constant noise:
  x ← e^{−Ah}x + N(0, Q_h) with Q_h from Van Loan's block exponential (theory.md §3).
* ``diffrax`` — one batched-state ``diffrax.diffeqsolve`` per SGD step with an
  ``UnsafeBrownianPath`` (Heun by default): a cross-check, not the fast path. Its noise
  is one Brownian path for the whole batch (drawn from trajectory 0's key), so unlike the
  other solvers its result depends on the number of trajectories.

The drift is −∇L_λ(θ), the problem's own gradient (autodiff for your own problem or a
network); for a quadratic problem (linear regression, a noisy quadratic) it is
−(H + λI)(θ − μ) with H + λI and μ computed on the host in float64. The integrators are
the dynamics :class:`limitdyn.dynamics.Langevin` and :class:`~limitdyn.dynamics.
DiffraxLangevin`, advanced by the same runner as SGD.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from . import _accounting, _checks, _meta, _prng, runner, stability
from . import checkpoint as ckpt
from . import noise as noise_models
from .dynamics import DiffraxLangevin, Langevin
from .hyper import Hyper
from .problems import Problem, UnsupportedError, _as_key, has_capability
from .result import Result

# the integrators used to live here
SDESpec, DiffraxSpec = Langevin, DiffraxLangevin

MODELS = ("langevin", "sme")
SOLVERS = ("em", "baoab", "exact", "diffrax")
# Default step: h·ω_max <= 0.1 for em/baoab/diffrax (BAOAB's velocity bias is ≈ (hω)²/4).
DEFAULT_STEP_RESOLUTION = 0.1


# --- host-side setup -------------------------------------------------------------------

def _van_loan(A: np.ndarray, two_D: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """e^{−Ah} and Q_h = ∫₀ʰ e^{−As} 2D e^{−Aᵀs} ds (Van Loan's block exponential).

    The block [[A, 2D], [0, −Aᵀ]] contains the growing e^{Ah}, so it is exponentiated only
    over a short step h/2^m (‖A‖·h/2^m <= 1/2) and then doubled m times with
    Q_{2s} = Q_s + e^{−As} Q_s e^{−Aᵀs}: accurate to rounding at any h.
    """
    n = A.shape[0]
    norm = float(np.linalg.norm(A, 1)) * h
    m = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
    s = h / 2 ** m
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n], block[:n, n:], block[n:, n:] = A, two_D, -A.T
    G = scipy.linalg.expm(block * s)
    transition = scipy.linalg.expm(-A * s)
    Q = transition @ G[:n, n:]
    for _ in range(m):
        Q = Q + transition @ Q @ transition.T
        transition = transition @ transition
    return transition, 0.5 * (Q + Q.T)


def _psd_factor(Q: np.ndarray) -> np.ndarray:
    evals, evecs = np.linalg.eigh(Q)
    return evecs * np.sqrt(np.clip(evals, 0.0, None))


def _top_curvature(curv: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(curv)[-1])


def top_curvature(prob: Problem, hp: Hyper, theta: np.ndarray, dtype) -> float:
    """h_max + λ: from the closed form of a quadratic, else by power iteration of
    Hessian–vector products at ``theta`` (the mean start point; 50 iterations)."""
    drift = prob.linear_drift(hp.weight_decay)
    if drift is not None:
        return _top_curvature(drift[0])
    from .hessian import power_iteration

    out = power_iteration(lambda th: prob.loss(th), jnp.asarray(theta, dtype),
                          key=0, n_iter=50)
    return abs(float(out.values[0])) + hp.weight_decay


def _step_layout(model: str, solver: str, hp: Hyper, dt: Any,
                 h_top_fn) -> tuple[float, int, int]:
    """(dt, n_sub, stride) from the requested dt (default by the h·ω_max rule)."""
    eta, beta = hp.lr, hp.momentum
    if dt is None:
        if solver == "exact":
            return eta, 1, 1
        h_top = h_top_fn()
        rate = (math.sqrt(2 * h_top / (eta * (1 + beta))) if model == "langevin"
                else h_top / (1 - beta))
        n_sub = max(1, math.ceil(eta * rate / DEFAULT_STEP_RESOLUTION - 1e-9))
        return eta / n_sub, n_sub, 1
    dt = _checks.finite_float("dt", dt, low=0.0, low_open=True)
    ratio = dt / eta
    if ratio >= 1 - 1e-9:
        stride = round(ratio)
        if abs(ratio - stride) > 1e-9 * ratio:
            raise ValueError(f"dt must be an integer multiple or an integer fraction of the "
                             f"learning rate η={eta:g} (so SDE steps land on SGD steps); got "
                             f"dt={dt:g} = {ratio:.6g}·η")
        if model == "sme" and stride > 1:
            raise ValueError(f"the sme model defines v(t) = (θ(t) − θ(t − η))/η, so it needs "
                             f"dt <= η={eta:g}; got dt={dt:g}")
        return eta * stride, 1, stride
    n_sub = round(1 / ratio)
    if abs(1 / ratio - n_sub) > 1e-9 / ratio:
        raise ValueError(f"dt must be an integer multiple or an integer fraction of the "
                         f"learning rate η={eta:g}; got dt={dt:g} = η/{1 / ratio:.6g}")
    return eta / n_sub, n_sub, 1


def generator(prob, hp: Hyper, model: str, noise: Any, *, sampling: str,
              sigma2: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2D) of dx = −A x dt + √(2D) dW for a constant noise (theory.md §3)."""
    from .theory import continuous

    return (continuous.drift_matrix(prob, hp, model=model),
            continuous.diffusion_matrix(prob, hp, noise, sampling=sampling, sigma2=sigma2,
                                        model=model))


def sde_params(prob, hp: Hyper, model: str, solver: str, noise: Any, *, sampling: str,
               sigma2: float | None, dt: float, dtype, d: int | None = None,
               theta_ref: np.ndarray | None = None) -> tuple[noise_models.NoiseSpec, dict]:
    """Resolve the noise and precompute the integrator's constants (float64 on the host)."""
    eta, beta, lam = hp.lr, hp.momentum, hp.weight_decay
    spec_noise, noise_params = noise_models.resolve(prob, hp, noise, sampling=sampling,
                                                    sigma2=sigma2, dtype=dtype,
                                                    theta_ref=theta_ref, dim=d)
    drift = prob.linear_drift(lam)
    if drift is None:
        curv, mu = np.zeros((0, 0)), np.zeros(0)
    else:
        curv, mu = drift
    if model == "langevin":
        a = 2.0 / (eta * (1 + beta))
        friction, amp = a * (1 - beta), a * math.sqrt(eta)
    else:   # dθ = −∇L_λ dt/(1 − β) + √η F dW/(1 − β)
        a = 1.0 / (1 - beta)
        friction, amp = 0.0, math.sqrt(eta) / (1 - beta)
    p: dict[str, Any] = {"lr": eta, "dt": dt, "mu": mu, "curvature": curv, "force": a,
                         "friction": friction, "noise_amp": amp, "weight_decay": lam}
    if solver == "baoab":
        decay = math.exp(-friction * dt)
        p["ou_decay"] = decay
        p["ou_noise"] = amp * math.sqrt(-math.expm1(-2 * friction * dt) / (2 * friction))
    if solver == "exact":
        A, two_D = generator(prob, hp, model, noise, sampling=sampling, sigma2=sigma2)
        transition, Q = _van_loan(A, two_D, dt)
        p["transition"], p["cov_factor"] = transition, _psd_factor(Q)
    p = {k: jnp.asarray(v, dtype) for k, v in p.items()}
    p["noise"] = noise_params
    p["prob"] = prob
    return spec_noise, p


def _check_solver_noise(model: str, solver: str, noise: Any, prob) -> None:
    state_dependent = callable(noise) or (isinstance(noise, str) and noise == "exact"
                                          and prob.n_examples is not None)
    if solver == "exact" and prob.linear_drift(0.0) is None:
        raise UnsupportedError(f"solver 'exact' needs a quadratic problem (closed-form H and "
                               f"minimiser); {type(prob).__name__} is not one: use 'baoab' "
                               "or 'em'")
    if solver == "exact" and state_dependent:
        raise ValueError("solver 'exact' needs a constant noise model ('paper', 'frozen', "
                         "'isotropic' or a (d, d) array); state-dependent noise ('exact', a "
                         "factor function) needs solver 'em', 'baoab' or 'diffrax'")
    if solver == "baoab" and model == "sme":
        raise ValueError("solver 'baoab' integrates the underdamped (langevin) model; for "
                         "model 'sme' use 'em', 'exact' or 'diffrax'")


def simulate_sde(prob: Problem, hp: Hyper, key: Any, n_traj: int,
                 n_steps: int, noise: Any = "exact", solver: str = "baoab",
                 dt: float | None = None, theta0: Any = None, v0: Any = None,
                 burn_in: int | None = None, *, model: str = "langevin", sampling: str = "iid",
                 sigma2: float | None = None, diffrax_solver: Any = None,
                 record: str | Any = "log", n_record: int = 50,
                 window_every: int | None = None, n_groups: int | None = None,
                 keep_trajectories: bool = False, n_chunks: int | None = None,
                 progress: bool | None = None,
                 checkpoint: str | os.PathLike | None = None, prng: str | None = None,
                 devices: int | None = None, basis: Any = None, traces: dict | None = None,
                 trace_steps: Any = None, observers: Any = None, keep_final: bool = False,
                 max_loss: float | None = None, streams: Any = None,
                 checkpoint_every: float | None = None) -> Result:
    """Simulate ``n_traj`` trajectories of the continuous-time model of SGD with momentum.

    The result has the same form as :func:`limitdyn.simulate_sgd`'s: statistics of (θ, v)
    at recorded SGD steps k (time t = η k), window averages after ``burn_in``. Any problem:
    the drift is its gradient; ``exact`` noise is κΣ(θ) of a finite sum, sampled by one
    vector–Jacobian product per integrator step (a network needs no quadratic
    approximation); ``isotropic`` works for every finite sum too. ``paper`` and
    ``frozen`` need a minimiser (and ``paper`` a Hessian), solver ``exact`` a quadratic.

    Args:
        prob: the problem, as in :func:`limitdyn.simulate_sgd`.
        hp: hyperparameters, as in :func:`limitdyn.simulate_sgd`.
        key: a JAX PRNG key.
        n_traj: number of trajectories K >= 1.
        n_steps: the horizon in SGD steps.
        noise: ``"paper"``, ``"frozen"``, ``"exact"`` (default), ``"isotropic"``, a constant
            (d, d) per-step covariance, or a function θ ↦ F(θ) (d, r) with C(θ) = F Fᵀ
            (see :mod:`limitdyn.noise`).
        solver: ``"baoab"`` (default), ``"em"``, ``"exact"`` or ``"diffrax"``.
        dt: integrator step in continuous time; must be η·m or η/m for an integer m.
            Default: η for ``exact``; otherwise η/m with m the smallest integer giving
            h·ω_max <= 0.1 (h·(h_max + λ)/(1 − β) <= 0.1 for ``sme``), h_max the top Hessian
            eigenvalue (closed form, or power iteration at the mean start point).
        model: ``"langevin"`` (underdamped, default) or ``"sme"`` (first order).
        sampling: ``"iid"`` or ``"replacement"`` — the κ of the ``frozen``/``exact`` noise.
        sigma2: σ² of the ``paper``/``isotropic`` noise (defaults in :mod:`limitdyn.noise`).
        diffrax_solver: a diffrax solver instance for ``solver="diffrax"``. Default
            ``diffrax.Heun()`` (weak order 2 here: the Langevin noise depends on θ only, so
            Itô and Stratonovich agree), ``diffrax.Euler()`` for the SME with state-dependent
            noise. Solvers that vmap the diffusion over time (the SRK family: ShARK, SRA1)
            cannot take the batched linear-operator diffusion and are not supported.
        theta0: start, (d,) or (K, d); default the minimiser of L_λ (problems that know it;
            required otherwise).
        v0: start velocity, (d,) or (K, d); default 0.
        burn_in: window averages use SGD steps ``burn_in <= k <= n_steps`` (rounded to whole
            runner steps); default ``n_steps // 2``.
        record: as in :func:`limitdyn.simulate_sgd`; explicit steps count SGD steps and
            must be multiples of dt/η.
        n_record: as in :func:`limitdyn.simulate_sgd`.
        window_every: as in :func:`limitdyn.simulate_sgd`, in SGD steps (rounded to whole
            runner steps).
        n_groups: as in :func:`limitdyn.simulate_sgd`.
        keep_trajectories: as in :func:`limitdyn.simulate_sgd`.
        n_chunks: as in :func:`limitdyn.simulate_sgd`.
        progress: as in :func:`limitdyn.simulate_sgd`.
        checkpoint: as in :func:`limitdyn.simulate_sgd`.
        prng: as in :func:`limitdyn.simulate_sgd`.
        devices: as in :func:`limitdyn.simulate_sgd`.
        basis: as in :func:`limitdyn.simulate_sgd` (statistics of (Vᵀθ, Vᵀv)).
        traces: as in :func:`limitdyn.simulate_sgd`.
        trace_steps: as in :func:`limitdyn.simulate_sgd`, in SGD steps (multiples of dt/η).
        observers: as in :func:`limitdyn.simulate_sgd`.
        keep_final: as in :func:`limitdyn.simulate_sgd`.
        max_loss: as in :func:`limitdyn.simulate_sgd`.
        streams: as in :func:`limitdyn.simulate_sgd` (equal streams share their noise).
        checkpoint_every: as in :func:`limitdyn.simulate_sgd`.

    Returns:
        A :class:`Result`; ``config['kind'] == 'sde'``. Its ``stationary_lag_cov`` pairs
        states one runner step (``config['lag_steps']`` SGD steps) apart.
    """
    n_traj, n_steps, burn_in, n_record, n_groups = runner.validate_run_args(
        prob, n_traj, n_steps, burn_in, n_record, n_groups, progress, "simulate_sde")
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    model = _checks.choice("model", model, MODELS)
    solver = _checks.choice("solver", solver, SOLVERS)
    if prob.n_examples is None:
        if sampling != "iid":
            raise ValueError(f"sampling must be 'iid' for a {type(prob).__name__} problem (no "
                             f"examples to sample), got {sampling!r}")
    else:
        sampling = _checks.choice("sampling", sampling, ("iid", "replacement"))
    _check_solver_noise(model, solver, noise, prob)
    if diffrax_solver is not None and solver != "diffrax":
        raise ValueError("diffrax_solver applies to solver='diffrax' only")
    d = runner.problem_dim(prob, theta0)
    dtype = np.dtype(jnp.result_type(float))
    runner.check_functions(prob, d, dtype)
    opts = runner.check_options(n_traj, n_steps, d, basis=basis, traces=traces,
                                trace_steps=trace_steps, observers_=observers,
                                keep_final=keep_final, max_loss=max_loss, streams=streams)
    lam = hp.weight_decay
    start = runner.default_start(prob, lam, theta0) if has_capability(prob, "minimiser") \
        else None
    if start is None and theta0 is None:
        runner.default_start(prob, lam, theta0)      # the one-line error
    theta_start_np = runner._start_points("theta0", theta0, start, n_traj, d)
    theta_ref = np.asarray(theta_start_np, np.float64).mean(0)
    dt, n_sub, stride = _step_layout(model, solver, hp, dt,
                                     lambda: top_curvature(prob, hp, theta_ref, dtype))
    if n_steps % stride:
        raise ValueError(f"n_steps={n_steps} must be a multiple of dt/η={stride}")
    noise_spec, params = sde_params(prob, hp, model, solver, noise, sampling=sampling,
                                    sigma2=sigma2, dt=dt, dtype=dtype, d=d,
                                    theta_ref=theta_ref)
    linear = prob.linear_drift(lam) is not None
    if solver == "diffrax":
        import diffrax
        if diffrax_solver is None:
            # Heun is weak order 2 for noise that does not depend on the state it drives (the
            # Langevin noise depends on θ only); the SME with state-dependent noise needs Itô.
            diffrax_solver = (diffrax.Euler() if model == "sme" and noise_spec.kind != "constant"
                              else diffrax.Heun())
        if not isinstance(diffrax_solver, diffrax.AbstractSolver):
            raise TypeError(f"diffrax_solver must be a diffrax solver instance, got "
                            f"{type(diffrax_solver).__name__}")
        dynamics = DiffraxLangevin(model, solver, noise_spec, n_sub, stride, linear,
                                   diffrax_solver=diffrax_solver)
    else:
        fsal = solver == "baoab"
        dynamics = Langevin(model, solver, noise_spec, n_sub, stride, linear, fsal,
                            d if fsal else 0)
    checkpoint = ckpt.resolve(checkpoint)
    if progress is None:   # a bar for runs of more than a few seconds
        progress = n_traj * n_steps * n_sub * noise_spec.n_normals > 5 * 10**7
    n_chunks = runner.default_chunks(progress, checkpoint) if n_chunks is None else \
        _checks.integer("n_chunks", n_chunks, low=1)
    n_ticks = n_steps // stride
    if not isinstance(record, str):
        rec = _checks.real_array("record", record, ndim=1)
        if np.any(rec % stride):
            raise ValueError(f"recorded steps must be multiples of dt/η={stride}")
        record = rec // stride
    if opts.trace_steps is not None and np.any(opts.trace_steps % stride):
        raise ValueError(f"trace_steps must be multiples of dt/η={stride}")
    window_every = None if window_every is None else max(1, _checks.integer(
        "window_every", window_every, low=1) // stride)
    rec = runner.record_steps(n_ticks, record, n_record)
    window, window_every = runner.observers_window(n_ticks, burn_in // stride, window_every)
    obs = runner.build_observers(opts, rec, window, n_ticks, d, n_groups,
                                 bool(keep_trajectories), scale=stride)
    runner.check_memory(n_traj, d, rec, opts, obs, bool(keep_trajectories), dtype)
    plan = runner.make_plan(n_ticks, obs, min(n_chunks, n_ticks), opts.max_loss, rec)
    theta_start = jnp.asarray(theta_start_np, dtype)
    v_start = jnp.asarray(runner._start_points("v0", v0, None, n_traj, d), dtype)
    key = _prng.with_impl(_as_key(key), prng)
    mesh = runner.trajectory_mesh(n_traj, devices, str(jax.random.key_impl(key)))
    out = runner.run_ensemble(dynamics, params, key, theta_start, v_start, plan, obs,
                              streams=opts.streams, max_loss=opts.max_loss, progress=progress,
                              description=f"simulate_sde[{solver}]", checkpoint=checkpoint,
                              checkpoint_every=checkpoint_every, mesh=mesh)
    if int(out.alive.sum()) == 0:
        raise stability.DivergenceError(
            f"simulate_sde: all {n_traj} trajectories diverged within {n_steps} steps "
            f"(solver {solver!r}, dt={dt:g}); the continuous model is stable for any lr, so "
            f"the integrator is: use a smaller dt, or solver 'exact'/'baoab'")
    config = {
        "kind": "sde", "model": model, "solver": solver, "noise": noise_spec.name,
        "sigma2": sigma2, "dt": dt, "substeps_per_step": n_sub, "problem": repr(prob),
        "dim": d, "n_examples": prob.n_examples, "hyper": hp.to_dict(),
        "sampling": sampling, "n_traj": n_traj, "n_steps": n_steps,
        "burn_in": int((burn_in // stride) * stride), "dtype": str(dtype),
        "window_every": window_every * stride,
        "n_window_samples": len(window), "n_groups": n_groups,
        "record": "explicit" if not isinstance(record, str) else record,
        "theta0": "minimiser" if theta0 is None else "given",
        "v0": "zero" if v0 is None else "given", "max_loss": opts.max_loss,
    }
    if solver == "diffrax":
        config["diffrax_solver"] = type(diffrax_solver).__name__
    result = runner.finish_result(rec, out, opts, config, _meta.environment(key) | out.timings,
                                  stride=stride)
    _accounting.report(result)
    return result
