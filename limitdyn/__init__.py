"""limitdyn: SGD-with-momentum ensembles, their Langevin limits, and exact theory.

>>> import jax, limitdyn as ld
>>> prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16)
>>> hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
>>> res = ld.simulate_sgd(prob, hp, jax.random.key(1), n_traj=4096, n_steps=2000)
>>> print(ld.compare(res, ld.theory.discrete_stationary_cov(prob, hp)))
"""

from importlib.metadata import PackageNotFoundError, version

from . import (
    checkpoint,
    convergence,
    hessian,
    limiting,
    mlnoise,
    nn,
    noise,
    samplers,
    sde,
    sgd,
    theory,
)
from .compare import Comparison, compare
from .hyper import Hyper
from .problems import LinearRegression, Quadratic
from .result import Result, Stderr
from .runner import simulate_sgd
from .sde import simulate_sde
from .sgd import State
from .stability import DivergenceError, StabilityWarning

try:
    __version__ = version("limitdyn")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "Comparison",
    "DivergenceError",
    "Hyper",
    "LinearRegression",
    "Quadratic",
    "Result",
    "StabilityWarning",
    "State",
    "Stderr",
    "__version__",
    "checkpoint",
    "compare",
    "convergence",
    "hessian",
    "limiting",
    "mlnoise",
    "nn",
    "noise",
    "samplers",
    "sde",
    "sgd",
    "simulate_sde",
    "simulate_sgd",
    "theory",
]
