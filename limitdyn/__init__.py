"""limitdyn: SGD-with-momentum ensembles, their Langevin limits, and exact theory.

>>> import jax, limitdyn as ld
>>> prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16)
>>> hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
>>> res = ld.simulate_sgd(prob, hp, jax.random.key(1), n_traj=4096, n_steps=2000)
>>> print(ld.compare(res, ld.theory.discrete_stationary_cov(prob, hp)))

Your own loss is a :class:`FiniteSum` (or :class:`Problem`) subclass; a flax network is
``ld.nn.FlaxProblem.from_module(module, params, x, y)``. Every problem goes through the
same dynamics (:mod:`limitdyn.dynamics`), runner and observers (:mod:`limitdyn.observers`).
"""

from importlib.metadata import PackageNotFoundError, version

from . import (
    checkpoint,
    convergence,
    dynamics,
    hessian,
    limiting,
    mlnoise,
    nn,
    noise,
    observers,
    problems,
    samplers,
    sde,
    sgd,
    theory,
)
from ._devices import use_all_cores
from .compare import Comparison, compare
from .hyper import Hyper
from .problems import FiniteSum, LinearRegression, Problem, Quadratic, UnsupportedError
from .result import Result, Stderr
from .runner import simulate_sgd
from .sde import simulate_sde
from .sgd import State
from .stability import DivergenceError, StabilityWarning
from .suggest import RunPlan, suggest_run

try:
    __version__ = version("limitdyn")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "Comparison",
    "DivergenceError",
    "FiniteSum",
    "Hyper",
    "LinearRegression",
    "Problem",
    "Quadratic",
    "Result",
    "RunPlan",
    "StabilityWarning",
    "State",
    "Stderr",
    "UnsupportedError",
    "__version__",
    "checkpoint",
    "compare",
    "convergence",
    "dynamics",
    "hessian",
    "limiting",
    "mlnoise",
    "nn",
    "noise",
    "observers",
    "problems",
    "samplers",
    "sde",
    "sgd",
    "simulate_sde",
    "simulate_sgd",
    "suggest_run",
    "theory",
    "use_all_cores",
]
