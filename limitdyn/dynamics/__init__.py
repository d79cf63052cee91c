"""Dynamics: pure, hashable kernels the runner advances (design.md, "dynamics").

A dynamics object is a frozen dataclass (its fields are the static configuration: they
key the compile cache and the checkpoint fingerprint); its hyperparameters arrive as a
traced ``params`` pytree, so a sweep never recompiles. The runner calls, per trajectory
(vmapped) or for the whole batch::

    aux = dyn.init_aux(key)                                   # per-trajectory extra state
    state, aux = dyn.step(key, state, aux, k, params)         # step k -> k + 1
    state, aux = dyn.batched_step(traj_keys, state, aux, k, params)   # optional, whole batch
    dyn.step_size(params)     # η: local displacement η²‖v‖², scalar or per trajectory
    dyn.params_axes(params)   # vmap in_axes of params (per-trajectory hyperparameters)
    dyn.clock(state, aux, k, params) -> (t, dt)   # optional: time and next step's length

Implementations: :class:`HeavyBall` (SGD with momentum and the three samplers),
:class:`Langevin` (underdamped Langevin / SME integrators), :class:`DiffraxLangevin`
(cross-check), :class:`MLNoiseSDE` (noise of machine-learning type).
"""

from .langevin import DiffraxLangevin, Langevin
from .mlnoise import MLNoiseSDE
from .sgd import HeavyBall

__all__ = ["DiffraxLangevin", "HeavyBall", "Langevin", "MLNoiseSDE"]
