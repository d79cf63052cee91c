"""Experiment ``diffusion`` (placeholder: being written)."""

from __future__ import annotations

import dataclasses

from . import Context, register


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    n_traj: int = 1024

    def validate(self) -> None:
        if self.n_traj < 2:
            raise ValueError(f"n_traj must be >= 2, got {self.n_traj}")


@register("diffusion", "anomalous diffusion on power-law Hessian spectra (being written)",
          DiffusionConfig, {"n_traj": 256})
def run_diffusion(cfg: DiffusionConfig, ctx: Context):
    raise NotImplementedError("diffusion experiment not written yet")
