"""The result of an ensemble run: phase-space statistics with standard errors."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import numpy as np

_FORMAT = "limitdyn.result/1"


@dataclasses.dataclass(frozen=True)
class Stderr:
    """Standard errors of the estimates in :class:`Result`, field by field.

    Per-step quantities use the ensemble at that step (independent trajectories): the
    covariance's from the empirical fourth moment, ``Var(y_i y_j)/n``. Window averages
    (``stationary_*``) use batch means over independent groups of trajectories, which
    accounts for the correlation along each trajectory in time.
    """

    mean: np.ndarray
    cov: np.ndarray
    displacement: np.ndarray
    local_displacement: np.ndarray
    stationary_mean: np.ndarray
    stationary_cov: np.ndarray
    stationary_local_displacement: float
    stationary_lag_cov: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Result:
    """Ensemble statistics of (θ, v) from :func:`limitdyn.simulate_sgd` (and the SDE runners).

    Attributes:
        steps: (T,) recorded step indices k.
        mean: (T, 2d) ensemble mean of (θ_k, v_k), v the paper's velocity (θ_k − θ_{k−1})/η.
        cov: (T, 2d, 2d) ensemble covariance of (θ_k, v_k).
        displacement: (T,) mean global displacement ‖θ_k − θ_0‖².
        local_displacement: (T,) mean ‖θ_k − θ_{k−1}‖² = η²‖v_k‖², the local displacement
            δ_{k−1} of theory.md §6.
        stationary_mean: (2d,) mean of (θ, v) over trajectories and the window
            ``burn_in <= k <= n_steps``.
        stationary_cov: (2d, 2d) covariance averaged over trajectories and that window.
        stationary_local_displacement: window average of η²‖v_k‖².
        n_alive: (T,) trajectories not yet diverged at each recorded step; statistics use
            them alone. A trajectory diverges, for good, at the first step where a coordinate
            is non-finite or above 10⁻³·√(float max) (1.8·10¹⁶ in float32, where second
            moments would overflow). ``n_diverged = n_traj − n_alive``.
        stderr: standard errors (:class:`Stderr`).
        trajectories: (T, n_traj, 2d) states at the recorded steps when asked for, else None;
            diverged trajectories are NaN.
        stationary_lag_cov: (2d, 2d) window average of Cov(x_k, x_{k+1}) = E[y_k y_{k+1}ᵀ],
            one runner step apart (``config['lag_steps']`` SGD steps; 1 for SGD). Its
            antisymmetric part in a Hessian eigenplane is the phase-space angular momentum.
        window_groups: the per-group window sums behind the ``stationary_*`` estimates
            (``count``, ``sum``, ``outer``, ``local``, ``lag_count``, ``lag_outer``), for
            batch-means standard errors of any function of them (see :meth:`rotation`).
        traces: per-trajectory traces asked for with ``traces=``: name -> (K, T', …) at
            ``trace_steps`` (NaN once a trajectory has diverged).
        trace_steps: (T',) steps of the traces.
        observed: outputs of further observers, by observer name.
        final: final states (``theta``, ``velocity``, each (K, d)) with ``keep_final``.
        alive: (K,) trajectories that never diverged.
        diverged_at: (K,) the step at which each trajectory was found diverged (−1: never).
        config: what was run (problem, hyperparameters, sampling, sizes, window).
        metadata: timings, versions, backend, PRNG implementation.

    With a ``basis`` V (d, m) the phase-space fields describe (Vᵀθ, Vᵀv) (2m coordinates;
    the displacements stay those of the full θ); without one and for d > 256, ``cov``,
    ``stationary_cov`` and the lag covariance are None.
    """

    steps: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    displacement: np.ndarray
    local_displacement: np.ndarray
    stationary_mean: np.ndarray
    stationary_cov: np.ndarray
    stationary_local_displacement: float
    n_alive: np.ndarray
    stderr: Stderr
    trajectories: np.ndarray | None = None
    stationary_lag_cov: np.ndarray | None = None
    window_groups: dict[str, np.ndarray] | None = None
    traces: dict[str, np.ndarray] | None = None
    trace_steps: np.ndarray | None = None
    observed: dict[str, dict[str, np.ndarray]] | None = None
    final: dict[str, np.ndarray] | None = None
    alive: np.ndarray | None = None
    diverged_at: np.ndarray | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    # --- conveniences -----------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Coordinates per half of the phase space: d, or m with a basis."""
        return self.mean.shape[-1] // 2

    @property
    def n_traj(self) -> int:
        return int(self.config["n_traj"])

    @property
    def n_diverged(self) -> np.ndarray:
        return self.n_traj - self.n_alive

    def block(self, matrix: np.ndarray, which: str) -> np.ndarray:
        """The ``'theta'``/``'tt'``, ``'v'``/``'vv'`` or ``'tv'`` block of a (…, 2d, 2d) array."""
        return phase_block(matrix, which)

    def window_function(self, fn: Any) -> tuple[np.ndarray, np.ndarray]:
        """A function of the window statistics with its batch-means standard error.

        ``fn(cov, lag_cov) -> array`` is applied to the pooled stationary covariance and lag
        covariance (the estimate) and to each independent trajectory group's own pair; the
        spread of the group values over √G is the standard error.
        """
        g = self.window_groups
        if g is None:
            raise ValueError("this result has no per-group window sums")
        ok = (g["count"] > 0) & (g["lag_count"] > 0)
        if ok.sum() < 2:
            raise ValueError("need at least two trajectory groups with window samples")
        estimate = np.asarray(fn(self.stationary_cov, self.stationary_lag_cov))
        per_group = np.stack([np.asarray(fn(g["outer"][i] / g["count"][i],
                                            g["lag_outer"][i] / g["lag_count"][i]))
                              for i in np.flatnonzero(ok)])
        return estimate, per_group.std(axis=0, ddof=1) / np.sqrt(ok.sum())

    def rotation(self, basis: np.ndarray) -> dict[str, np.ndarray]:
        """Phase-space rotation in the planes (a_i, b_i) = (e_iᵀθ, e_iᵀv), e_i = basis[:, i].

        Returns, with batch-means standard errors (``*_se``):

        * ``angular_momentum`` — E[a_k b_{k+1} − b_k a_{k+1}] at stationarity, one runner
          step (``config['lag_steps']`` SGD steps) apart: the lag form of the probability
          current's angular momentum (theory.md §4; negative = clockwise in (θ, v));
        * ``angle`` — rotation per runner step of the normalised lag correlation
          R = S^{-1/2} Λ S^{-1/2}: atan2(R_ab − R_ba, R_aa + R_bb) (≈ η ω_i when underdamped).
        """
        d = self.dim
        E = np.asarray(basis, np.float64).reshape(d, -1)
        P = np.zeros((2 * d, 2 * E.shape[1]))
        P[:d, 0::2], P[d:, 1::2] = E, E

        def planes(cov, lag):
            c = P.T @ cov @ P
            lg = P.T @ lag @ P
            va, vb = np.diagonal(c)[0::2], np.diagonal(c)[1::2]
            ab, ba = np.diagonal(lg, 1)[0::2], np.diagonal(lg, -1)[0::2]
            aa, bb = np.diagonal(lg)[0::2], np.diagonal(lg)[1::2]
            norm = np.sqrt(va * vb)
            return np.stack([ab - ba, np.arctan2((ab - ba) / norm, aa / va + bb / vb)])

        est, se = self.window_function(planes)
        return {"angular_momentum": est[0], "angular_momentum_se": se[0],
                "angle": est[1], "angle_se": se[1]}

    def summary(self) -> str:
        d = self.dim
        sc = self.stationary_cov
        if sc is None:
            sc = np.full((2 * d, 2 * d), np.nan)
        lines = [
            f"{self.config.get('kind', 'sgd')} ensemble: {self.n_traj} trajectories x "
            f"{self.config.get('n_steps')} steps, d = {d}, "
            f"sampling = {self.config.get('sampling')}",
            f"recorded steps: {len(self.steps)} ({self.steps[0]} … {self.steps[-1]}); "
            f"window [{self.config.get('burn_in')}, {self.config.get('n_steps')}] "
            f"with {self.config.get('n_window_samples')} samples",
            f"diverged at the end: {int(self.n_diverged[-1])}",
            f"stationary tr Cov(θ) = {np.trace(sc[:d, :d]):.6g}, tr Cov(v) = "
            f"{np.trace(sc[d:, d:]):.6g}, local displacement = "
            f"{self.stationary_local_displacement:.6g} ± "
            f"{self.stderr.stationary_local_displacement:.2g}",
        ]
        if "run_seconds" in self.metadata:
            lines.append(f"compile {self.metadata['compile_seconds']:.2f} s, run "
                         f"{self.metadata['run_seconds']:.2f} s")
        return "\n".join(lines)

    # --- persistence ------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.npz`` (arrays plus JSON metadata), atomically (temporary file + rename)."""
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("config", "metadata", "stderr") or value is None:
                continue
            if f.name in _DICT_FIELDS:
                for name, arr in value.items():
                    arrays[f"{f.name}.{name}"] = np.asarray(arr)
                continue
            if f.name == "observed":
                for obs, out in value.items():
                    for name, arr in out.items():
                        arrays[f"observed.{obs}.{name}"] = np.asarray(arr)
                continue
            arrays[f.name] = np.asarray(value)
        for f in dataclasses.fields(Stderr):
            if getattr(self.stderr, f.name) is not None:
                arrays["stderr." + f.name] = np.asarray(getattr(self.stderr, f.name))
        header = {"format": _FORMAT, "config": self.config, "metadata": self.metadata}
        arrays["_header"] = np.array(json.dumps(header, default=_json_default))
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o666 & ~_umask())     # mkstemp's 0600 is not what a user expects
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> Result:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            if "_header" not in data:
                raise ValueError(f"{path} is not a limitdyn result file (no header)")
            header = json.loads(str(data["_header"]))
            if header.get("format") != _FORMAT:
                raise ValueError(f"{path}: unknown result format {header.get('format')!r}")
            stderr = Stderr(**{f.name: _unwrap(data["stderr." + f.name])
                               for f in dataclasses.fields(Stderr)
                               if "stderr." + f.name in data.files})
            kwargs = {f.name: _unwrap(data[f.name]) for f in dataclasses.fields(cls)
                      if f.name in data.files}
            for field in _DICT_FIELDS:
                group = {name.split(".", 1)[1]: data[name] for name in data.files
                         if name.startswith(field + ".")}
                if group:
                    kwargs[field] = group
            observed: dict[str, dict[str, np.ndarray]] = {}
            for name in data.files:
                if name.startswith("observed."):
                    _, obs, key = name.split(".", 2)
                    observed.setdefault(obs, {})[key] = data[name]
            if observed:
                kwargs["observed"] = observed
        return cls(stderr=stderr, config=header["config"], metadata=header["metadata"], **kwargs)


_DICT_FIELDS = ("window_groups", "traces", "final")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def phase_block(matrix: np.ndarray, which: str) -> np.ndarray:
    """Block of a phase-space matrix (…, 2d, 2d): 'tt' (θθ), 'vv', 'tv' (θv) or 'all'."""
    d = matrix.shape[-1] // 2
    slices = {"tt": (slice(0, d), slice(0, d)), "theta": (slice(0, d), slice(0, d)),
              "vv": (slice(d, None), slice(d, None)), "v": (slice(d, None), slice(d, None)),
              "tv": (slice(0, d), slice(d, None)), "all": (slice(None), slice(None))}
    if which not in slices:
        raise ValueError(f"block must be one of 'tt', 'vv', 'tv', 'all'; got {which!r}")
    rows, cols = slices[which]
    return matrix[..., rows, cols]


def _unwrap(a: np.ndarray) -> Any:
    return a.item() if a.ndim == 0 else a


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
