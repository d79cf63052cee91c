"""Every core by default: one XLA host device per CPU core.

XLA runs a kernel's independent work on one CPU device's thread pool, which keeps a
2-core machine's second core mostly idle for limitdyn's kernels; sharding the
trajectories over one host device per core uses them all (measured: 1.6× on 2 cores for
the B1 SGD kernel, benchmarks/README.md). The command line does this before JAX starts
(:func:`configure_host_devices`); in Python write, before anything touches a device::

    import jax
    jax.config.update("jax_num_cpu_devices", os.cpu_count())   # or ld.use_all_cores()

Results do not depend on the device count (trajectory i always draws from its own key),
up to the order of floating-point sums.
"""

from __future__ import annotations

import os
import warnings

ENV = "LIMITDYN_HOST_DEVICES"
_WARNED = [False]


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):       # not on Linux
        return max(1, os.cpu_count() or 1)


def user_chose() -> bool:
    """Whether the user already set the host device count (XLA flag, JAX option or ours)."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return True
    if os.environ.get("JAX_NUM_CPU_DEVICES") or os.environ.get(ENV):
        return True
    return False


def configure_host_devices(count: int | None = None) -> int | None:
    """Ask JAX for ``count`` CPU devices (default: one per core; ``LIMITDYN_HOST_DEVICES``
    overrides) unless the user chose already or JAX's backends are running. Returns the
    count set, or None when nothing was changed."""
    import jax

    env = os.environ.get(ENV)
    if count is None and env:
        try:
            count = int(env)
        except ValueError:
            raise ValueError(f"{ENV} must be a positive integer, got {env!r}") from None
    elif count is None:
        if user_chose():
            return None
        count = _cores()
    if count < 1:
        raise ValueError(f"the host device count must be >= 1, got {count}")
    if _backends_started():
        return None
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except Exception:          # an older JAX without the option, or backends already up
        return None
    return int(count)


def use_all_cores() -> int | None:
    """One CPU device per core for this process (call before anything runs on a device)."""
    return configure_host_devices(_cores())


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:          # private API moved: assume started (do nothing)
        return True


def warn_if_one_device() -> None:
    """Once per process: the run uses one CPU device on a machine with several cores."""
    if _WARNED[0] or os.environ.get("LIMITDYN_NO_DEVICE_WARNING"):
        return
    import jax

    try:
        if jax.default_backend() != "cpu" or jax.device_count() > 1 or _cores() < 2:
            return
    except RuntimeError:
        return
    _WARNED[0] = True
    warnings.warn(f"limitdyn runs on one CPU device of a {_cores()}-core machine; for every "
                  "core call ld.use_all_cores() (or jax.config.update('jax_num_cpu_devices', "
                  "os.cpu_count())) before anything runs on a device — the command line does "
                  "this itself", RuntimeWarning, stacklevel=3)
