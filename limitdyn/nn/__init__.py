"""Small flax networks, datasets, losses and many-networks-at-once training (theory.md §7).

Models (:func:`make_model`): :class:`FCN` (depth, width, ReLU/tanh, standard/NTK/μP,
optional zero-initialised readout), :class:`CNN` (Myrtle-style), :class:`UV` (the uv model).
Data (:func:`load_dataset`): ``"teacher-student"`` (generated, the default) and
``"digits"`` (scikit-learn's bundled 8×8 digits); inputs standardised per example, one-hot
targets. Losses: :func:`mse` (½ mean over examples × classes), :func:`cross_entropy`.
Problems: :class:`FlaxProblem` (a network and its data on flat parameters, for every
dynamics of the library).
Training: :func:`train_grid` (seeds × c-grid, η = c/λᴴ_0 traced, one compiled kernel) and
:func:`thresholds` (c_loss, c_sharp, c_barrier, c_max per seed).
"""

from .data import (
    DATASETS,
    LOSSES,
    Dataset,
    cross_entropy,
    digits,
    load_dataset,
    loss_function,
    mse,
    standardise_rows,
    teacher_student,
)
from .models import (
    CNN,
    FCN,
    MODELS,
    PARAMETRISATIONS,
    UV,
    count_params,
    init_params,
    make_model,
)
from .problem import FlaxProblem
from .train import GridResult, Sharpness, Thresholds, thresholds, train_grid

__all__ = [
    "CNN",
    "DATASETS",
    "FCN",
    "LOSSES",
    "MODELS",
    "PARAMETRISATIONS",
    "UV",
    "Dataset",
    "FlaxProblem",
    "GridResult",
    "Sharpness",
    "Thresholds",
    "count_params",
    "cross_entropy",
    "digits",
    "init_params",
    "load_dataset",
    "loss_function",
    "make_model",
    "mse",
    "standardise_rows",
    "teacher_student",
    "thresholds",
    "train_grid",
]
