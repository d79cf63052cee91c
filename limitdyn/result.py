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
        config: what was run (problem, hyperparameters, sampling, sizes, window).
        metadata: timings, versions, backend, PRNG implementation.
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
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    # --- conveniences -----------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of parameters d (phase space has 2d coordinates)."""
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

    def summary(self) -> str:
        d = self.dim
        sc = self.stationary_cov
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
            arrays[f.name] = np.asarray(value)
        for f in dataclasses.fields(Stderr):
            arrays["stderr." + f.name] = np.asarray(getattr(self.stderr, f.name))
        header = {"format": _FORMAT, "config": self.config, "metadata": self.metadata}
        arrays["_header"] = np.array(json.dumps(header, default=_json_default))
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
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
                               for f in dataclasses.fields(Stderr)})
            kwargs = {f.name: _unwrap(data[f.name]) for f in dataclasses.fields(cls)
                      if f.name in data.files}
        return cls(stderr=stderr, config=header["config"], metadata=header["metadata"], **kwargs)


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
