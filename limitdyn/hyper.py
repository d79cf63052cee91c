"""Optimiser hyperparameters: validated on the host, traced inside kernels."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from . import _checks


@dataclasses.dataclass(frozen=True)
class Hyper:
    """Hyperparameters of SGD with heavy-ball momentum and coupled weight decay.

    The update they parametrise is theory.md §1 (identical to
    ``torch.optim.SGD(lr, momentum, weight_decay)``)::

        v_{k+1} = β v_k − g_B(θ_k) − λ θ_k
        θ_{k+1} = θ_k + η v_{k+1}

    Args:
        lr: learning rate η > 0.
        momentum: heavy-ball momentum β in [0, 1).
        weight_decay: coupled L2 coefficient λ >= 0.
        batch_size: minibatch size S (an integer in [1, N] for finite-sum problems;
            ``None`` means the full training set). It fixes array shapes, so it is the
            one static field; ``lr``, ``momentum`` and ``weight_decay`` are pytree leaves
            and become traced arrays inside kernels, so a sweep over them never recompiles.
    """

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "lr", _checks.finite_float("Hyper.lr", self.lr, low=0.0, low_open=True))
        set_(self, "momentum", _checks.finite_float("Hyper.momentum", self.momentum, low=0.0,
                                                    high=1.0, high_open=True))
        set_(self, "weight_decay", _checks.finite_float("Hyper.weight_decay", self.weight_decay,
                                                        low=0.0))
        if self.batch_size is not None:
            set_(self, "batch_size", _checks.integer("Hyper.batch_size", self.batch_size, low=1))

    def replace(self, **changes: Any) -> Hyper:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _flatten(hp: Hyper):
    return (hp.lr, hp.momentum, hp.weight_decay), hp.batch_size


def _unflatten(batch_size, leaves) -> Hyper:
    # Inside a trace the leaves are tracers: skip host-side validation.
    hp = object.__new__(Hyper)
    for name, value in zip(("lr", "momentum", "weight_decay"), leaves, strict=True):
        object.__setattr__(hp, name, value)
    object.__setattr__(hp, "batch_size", batch_size)
    return hp


jax.tree_util.register_pytree_node(Hyper, _flatten, _unflatten)
