"""The minibatch samplers: fused random bits, the whole-batch draw against the per-trajectory
sampler, the reshuffle sampler's law (issue 20), and the invariance of SGD ensembles to
chunks, tiles, devices and per-trajectory hyperparameters (issue 18).

Statistical tests state their false-alarm rate; the last ones show that a sampler with an
off-by-one bias (a valid permutation every epoch, but not a uniform one) is rejected by the
same tests at the same sizes.
"""

import itertools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import limitdyn as ld
from limitdyn import _prng, samplers
from limitdyn.dynamics import HeavyBall
from limitdyn.dynamics import sgd as dyn_sgd

ALPHA = 1e-3          # false-alarm rate of each statistical test (family-wise for max-z tests)


def _keys(n, seed=3, impl=None):
    key = jax.random.key(seed, impl=impl)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n))


# --- the fused generator ---------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 32])
def test_fused_bits_are_jax_random_bits_bit_for_bit(n):
    keys = _keys(13)
    for step in (0, 1, 977, 2**31 - 1):
        want = jax.vmap(lambda k, step=step: jax.random.bits(jax.random.fold_in(k, step),
                                                             (n,), jnp.uint32))(keys)
        got = jax.jit(_prng.trajectory_bits, static_argnums=2)(keys, jnp.int32(step), n)
        np.testing.assert_array_equal(got, want)
    assert _prng.bits_available(keys)
    assert not _prng.bits_available(_keys(4, impl="philox4x32"))


# --- the whole-batch draw is the per-trajectory sampler ------------------------------------

CASES = [("iid", 50, 7), ("iid", 20, 20), ("replacement", 50, 7), ("reshuffle", 23, 5),
         ("reshuffle", 100, 40), ("reshuffle", 200, 70), ("reshuffle", 12, 12),
         ("reshuffle", 12, 1), ("reshuffle", 7, 3)]


@pytest.mark.parametrize("sampling,n,s", CASES)
@pytest.mark.parametrize("impl", [None, "philox4x32"])
def test_draw_is_vmapped_next_with_the_step_keys(sampling, n, s, impl):
    """``draw`` (fused bits, slot-major; philox: vmapped ``next``) gives every trajectory
    the batches and state that ``next`` gives it with the key fold_in(key_i, k)."""
    keys = _keys(9, impl=impl)
    sampler = samplers.build(sampling, n, s)
    state_a = state_b = jax.vmap(sampler.init)(keys)
    draw = jax.jit(sampler.draw)

    @jax.jit
    def one_by_one(keys, state, k):
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, k)
        return jax.vmap(sampler.next, in_axes=(0, 0, None))(step_keys, state, k)

    for k in range(2 * max(1, n // s) + 3):
        a, state_a = draw(keys, state_a, jnp.int32(k))
        b, state_b = one_by_one(keys, state_b, jnp.int32(k))
        assert a.shape == (9, s) and a.dtype == jnp.int32
        np.testing.assert_array_equal(a, b)
        for x, y in zip(jax.tree_util.tree_leaves(state_a), jax.tree_util.tree_leaves(state_b),
                        strict=True):
            np.testing.assert_array_equal(x, y)


def _iid_before_issue_18(bits, n, s):
    """iid's per-trajectory algorithm as it was (multiply-high, Floyd, in Python)."""
    bits = bits.astype(np.uint64)
    chosen = []
    for i, top in enumerate(range(n - s, n)):
        bound = top + 1
        draw = int(((bits[i] >> 16) * bound + (((bits[i] & 0xFFFF) * bound) >> 16)) >> 16)
        chosen.append(top if draw in chosen else draw)
    return chosen


def test_iid_stream_is_unchanged():
    n, s = 37, 9
    sampler = samplers.iid(n, s)
    keys = _keys(40)
    got = np.asarray(jax.vmap(lambda k: sampler.next(k, (), 0)[0])(keys))
    bits = np.asarray(jax.vmap(lambda k: jax.random.bits(k, (s,), jnp.uint32))(keys))
    for row_bits, row in zip(bits, got, strict=True):
        assert list(row) == _iid_before_issue_18(row_bits, n, s)


# --- reshuffle: structure --------------------------------------------------------------------

def _epochs(sampler, n, s, n_traj, n_epochs, seed=0):
    """Batch index of every example in every epoch: (n_epochs, K, N), E = n // s meaning
    dropped; and the final pools."""
    per_epoch = n // s
    keys = _keys(n_traj, seed)

    @jax.jit
    def run(keys):
        state = jax.vmap(sampler.init)(keys)

        def body(k, carry):
            state, out = carry
            batch, state = sampler.draw(keys, state, k)
            return state, out.at[k].set(batch)

        out = jnp.zeros((per_epoch * n_epochs, n_traj, s), jnp.int32)
        return jax.lax.fori_loop(0, per_epoch * n_epochs, body, (state, out))

    state, batches = run(keys)
    batches = np.asarray(batches).reshape(n_epochs, per_epoch, n_traj, s)
    where = np.full((n_epochs, n_traj, n), per_epoch)
    e_idx, j_idx, k_idx, _ = np.indices(batches.shape)
    where[e_idx, k_idx, batches] = j_idx
    return where, batches, state


@pytest.mark.parametrize("n,s", [(23, 5), (24, 6), (9, 9), (10, 1)])
def test_reshuffle_epochs_are_permutations_and_the_pool_stays_one(n, s):
    sampler = samplers.reshuffle(n, s)
    where, batches, pool = _epochs(sampler, n, s, 64, 3)
    per_epoch = n // s
    for e in range(3):
        seen = batches[e].transpose(1, 0, 2).reshape(64, -1)
        assert all(len(set(row)) == per_epoch * s for row in seen)   # no repeat in an epoch
        assert (where[e] == per_epoch).sum(axis=1).tolist() == [n % s] * 64   # drop_last
    assert np.array_equal(np.sort(np.asarray(pool), axis=1),
                          np.broadcast_to(np.arange(n), (64, n)))
    assert np.asarray(pool).dtype == np.int16
    if per_epoch > 1:
        assert not np.array_equal(where[0], where[1])


# --- reshuffle: the law --------------------------------------------------------------------

def _full_law_pvalue(where, n, s):
    """χ² of the epochs' complete outcomes (ordered batches as sets, the dropped set)
    against the uniform law over all N!/(S!^E (N mod S)!) of them."""
    per_epoch = n // s
    outcomes = {}
    for row in where.reshape(-1, n):
        outcomes[tuple(row)] = outcomes.get(tuple(row), 0) + 1
    n_outcomes = len(set(itertools.permutations([j for j in range(per_epoch) for _ in range(s)]
                                                + [per_epoch] * (n % s))))
    observed = np.array(list(outcomes.values()) + [0] * (n_outcomes - len(outcomes)))
    return stats.chisquare(observed).pvalue, n_outcomes


def _marginal_pvalue(where, n, s):
    """Every position (batch index, or dropped) of every example: Pearson's χ² over the
    N × J table. Each epoch is one random N × J allocation with fixed margins, so the
    statistic times (N − 1)/N is asymptotically χ² with (N − 1)(J − 1) degrees of freedom
    (checked by simulation with numpy permutations: mean and variance agree)."""
    per_epoch = n // s
    cells = per_epoch + (1 if n % s else 0)
    p = np.array([s / n] * per_epoch + ([(n % s) / n] if n % s else []))
    flat = where.reshape(-1, n)
    m = flat.shape[0]
    counts = np.stack([np.bincount(flat[:, e], minlength=cells) for e in range(n)])
    x2 = (((counts - m * p) ** 2) / (m * p)).sum() * (n - 1) / n
    return stats.chi2.sf(x2, (n - 1) * (cells - 1))


def _pairs_max_z(where, n, s, alpha=ALPHA):
    """Largest |z| of (a) the number of epochs in which two examples share a batch, over
    all N(N−1)/2 pairs, and (b) the number in which example a's batch comes right before
    b's, over all N(N−1) ordered pairs; and the Bonferroni bound for family-wise alpha."""
    per_epoch = n // s
    flat = where.reshape(-1, n)
    m = flat.shape[0]
    used = flat < per_epoch
    onehot = np.zeros((m, n, per_epoch), np.float32)
    i, e = np.nonzero(used)
    onehot[i, e, flat[i, e]] = 1
    same = np.einsum("mej,mfj->ef", onehot, onehot)            # co-occurrence
    after = np.einsum("mej,mfj->ef", onehot[:, :, :-1], onehot[:, :, 1:])   # a then b
    q_same = per_epoch * s * (s - 1) / (n * (n - 1))
    q_after = (per_epoch - 1) * s * s / (n * (n - 1))
    iu = np.triu_indices(n, 1)
    off = ~np.eye(n, dtype=bool)
    z_same = (same[iu] - m * q_same) / np.sqrt(m * q_same * (1 - q_same))
    z_after = (after[off] - m * q_after) / np.sqrt(m * q_after * (1 - q_after))
    bound = stats.norm.isf(alpha / 2 / (len(z_same) + len(z_after)))
    return max(np.abs(z_same).max(), np.abs(z_after).max()), bound


def _check_law(sampler_factory, full, medium):
    """Run the three tests; returns their p-values / max-z's."""
    out = {}
    for n, s, k in full:      # small: the complete law of an epoch, first and second epoch
        where, _, _ = _epochs(sampler_factory(n, s), n, s, k, 2, seed=n)
        out[f"full {n}/{s}"] = 2 * min(_full_law_pvalue(where[e:e + 1], n, s)[0]  # Bonferroni
                                       for e in (0, 1))
    for n, s, k in medium:    # positions of every example, pairs, order of batches
        where, _, _ = _epochs(sampler_factory(n, s), n, s, k, 2, seed=n + 1)
        # the first epoch (from the initial pool, where a bias in positions is a bias in
        # examples) and the second (from a used pool), each tested: Bonferroni over both
        out[f"marginal {n}/{s}"] = 2 * min(_marginal_pvalue(where[e], n, s) for e in (0, 1))
        pairs = [_pairs_max_z(where[e], n, s, ALPHA / 2) for e in (0, 1)]
        out[f"pairs {n}/{s}"] = (max(z for z, _ in pairs), pairs[0][1])
    return out


FULL = [(6, 2, 20_000), (7, 2, 30_000)]       # 90 and 630 outcomes, ≥ 47 expected per cell
MEDIUM = [(64, 8, 16_384), (60, 8, 16_384)]   # 16384 epochs each; 4 examples dropped in 60/8


def test_reshuffle_is_a_uniform_epoch_permutation():
    """At ALPHA = 10⁻³ each: the complete law of an epoch (N = 6, S = 2: 90 outcomes; N = 7,
    S = 2 with one dropped: 630 outcomes; 2·10⁴ and 3·10⁴ epochs), every example's batch
    index (N = 64, S = 8 and N = 60, S = 8 with 4 dropped; 16384 epochs), and pairs (same
    batch; a's batch right before b's) — each for the first epoch (from the initial pool)
    and the second (from a used one)."""
    out = _check_law(samplers.reshuffle, FULL, MEDIUM)
    for name, value in out.items():
        if name.startswith("pairs"):
            z, bound = value
            assert z < bound, (name, z, bound)
        else:
            assert value > ALPHA, (name, value)


def _off_by_one(n, s):
    """A reshuffle sampler with Floyd's draws on [0, top) instead of [0, top]: every epoch is
    still a permutation, but the top position is picked only on a collision."""
    real = samplers._below

    def biased(bits, bound):
        return real(bits, jnp.maximum(jnp.asarray(bound) - 1, 1))

    sampler = samplers.reshuffle(n, s)

    def draw(keys, state, k):
        samplers._below = biased
        try:
            return sampler.draw(keys, state, k)
        finally:
            samplers._below = real

    return samplers.Sampler(sampler.init, sampler.next, draw)


def _rotation(n, s):
    """Epochs that walk 0 … N − 1 from a uniformly random start: every example's batch
    index is uniform, but neighbours always travel together."""
    per_epoch = n // s

    def draw(keys, state, k):
        bits = _prng.trajectory_bits(keys, k - k % per_epoch, 1)[:, 0]
        start = samplers._below(bits, n)[:, None]
        slots = (k % per_epoch) * s + jnp.arange(s)[None, :]
        return (start + slots) % n, state

    return samplers.Sampler(lambda key: (), None, draw)


def test_the_uniformity_tests_reject_biased_samplers():
    """The same tests at the same sizes reject two biased samplers whose epochs are valid
    permutations: Floyd's draws off by one (caught by the complete law and by the positions;
    the pairs do not see it at this size) and a rotation of a fixed order (every example's
    batch index uniform, neighbours together: caught by all three — the positions' χ² too,
    its null being the uniform permutation's, under which examples are nearly independent)."""
    where, _, _ = _epochs(_off_by_one(7, 2), 7, 2, 30_000, 1, seed=7)
    assert len(set(map(tuple, where[0]))) > 1
    assert _full_law_pvalue(where, 7, 2)[0] < 1e-12
    out = _check_law(_off_by_one, [], [(64, 8, 16_384)])
    assert out["marginal 64/8"] < 1e-12

    out = _check_law(_rotation, [(7, 2, 30_000)], [(64, 8, 16_384)])
    assert out["full 7/2"] < 1e-12
    assert out["marginal 64/8"] < 1e-12
    z, bound = out["pairs 64/8"]
    assert z > 10 * bound


# --- ensembles: chunks, tiles, devices, per-trajectory hyperparameters -----------------------

def _problem(n=96, d=3):
    return ld.LinearRegression.synthetic(jax.random.key(0), n=n, d=d)


@pytest.mark.parametrize("sampling", ["iid", "reshuffle"])
def test_trajectories_do_not_depend_on_chunks_or_on_the_other_trajectories(sampling):
    """Trajectory i depends on its own key only: 384 trajectories (12 tiles of 32 at d = 64,
    S = 32) in one chunk or seven give the same states bit for bit, and so do their first
    100 run alone (4 tiles of 25)."""
    prob, hp = _problem(d=64), ld.Hyper(lr=0.02, momentum=0.8, batch_size=32)
    tile = dyn_sgd.tile_size(32, 64, 4)
    assert dyn_sgd.n_tiles(384, tile) == 12 and dyn_sgd.n_tiles(100, tile) == 4
    kw = dict(sampling=sampling, keep_final=True, n_record=5, progress=False)
    a = ld.simulate_sgd(prob, hp, jax.random.key(5), 384, 50, n_chunks=1, **kw)
    b = ld.simulate_sgd(prob, hp, jax.random.key(5), 384, 50, n_chunks=7, **kw)
    c = ld.simulate_sgd(prob, hp, jax.random.key(5), 100, 50, **kw)
    np.testing.assert_array_equal(a.final["theta"], b.final["theta"])
    np.testing.assert_array_equal(a.final["velocity"], b.final["velocity"])
    np.testing.assert_array_equal(a.final["theta"][:100], c.final["theta"])


@pytest.mark.parametrize("sampling", ["iid", "replacement", "reshuffle"])
def test_tiled_step_is_the_vmapped_step(sampling):
    """HeavyBall.batched_step (fused draw, tiles of trajectories) against vmapping its
    per-trajectory step with the keys fold_in(key_i, k), for 20 steps (2 tiles of 128 at
    d = 32, S = 16)."""
    prob = _problem(n=64, d=32)
    hp = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32),
                                ld.Hyper(lr=0.02, momentum=0.9, weight_decay=0.01,
                                         batch_size=16))
    dyn = HeavyBall(sampling, 64, 16)
    assert dyn_sgd.n_tiles(256, dyn_sgd.tile_size(16, 32, 4)) == 2
    keys = _keys(256)
    theta = jax.random.normal(jax.random.key(1), (256, 32))
    state = ld.sgd.State(theta, jnp.zeros_like(theta))
    aux = jax.vmap(dyn.init_aux)(keys)

    @jax.jit
    def tiled(state, aux, k):
        return dyn.batched_step(keys, state, aux, k, (prob, hp))

    @jax.jit
    def vmapped(state, aux, k):
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, k)
        return jax.vmap(dyn.step, in_axes=(0, 0, 0, None, None))(step_keys, state, aux, k,
                                                                   (prob, hp))

    a = b = (state, aux)
    for k in range(20):
        a = tiled(*a, jnp.int32(k))
        b = vmapped(*b, jnp.int32(k))
    np.testing.assert_allclose(a[0].theta, b[0].theta, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a[0].velocity, b[0].velocity, rtol=1e-6, atol=1e-6)
    for x, y in zip(jax.tree_util.tree_leaves(a[1]), jax.tree_util.tree_leaves(b[1]),
                    strict=True):
        np.testing.assert_array_equal(x, y)


def test_per_trajectory_learning_rates_in_tiles():
    """A learning-rate grid in one tiled kernel (384 trajectories, 12 tiles of 32 at
    d = 64, S = 32): trajectory i is the trajectory i of the run with that learning rate for
    everyone — the same batches, the same arithmetic up to float32 roundoff (XLA may
    contract η·v + θ differently when η is a per-row array)."""
    prob, hp = _problem(d=64), ld.Hyper(lr=0.02, momentum=0.8, batch_size=32)
    assert dyn_sgd.n_tiles(384, dyn_sgd.tile_size(32, 64, 4)) == 12
    etas = np.array([0.01, 0.02, 0.04])[np.arange(384) % 3]
    kw = dict(sampling="reshuffle", keep_final=True, n_record=5, progress=False,
              check_stability=False)
    grid = ld.simulate_sgd(prob, hp, jax.random.key(2), 384, 40, per_trajectory={"lr": etas},
                           **kw)
    assert int(np.sum(grid.n_diverged)) == 0
    for j, eta in enumerate((0.01, 0.02, 0.04)):
        one = ld.simulate_sgd(prob, hp.replace(lr=eta), jax.random.key(2), 384, 40, **kw)
        np.testing.assert_allclose(grid.final["theta"][j::3], one.final["theta"][j::3],
                                   rtol=1e-5, atol=1e-6)


DEVICES_SCRIPT = textwrap.dedent("""
    import sys
    import jax, numpy as np
    import limitdyn as ld
    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=96, d=64)
    hp = ld.Hyper(lr=0.02, momentum=0.8, batch_size=32)
    out = {}
    for sampling in ("iid", "reshuffle"):
        for devices in (1, 2):
            res = ld.simulate_sgd(prob, hp, jax.random.key(5), 512, 60, sampling=sampling,
                                  devices=devices, keep_final=True, n_chunks=3,
                                  progress=False)
            out[f"{sampling}_{devices}"] = res.final["theta"]
            out[f"{sampling}_{devices}_cov"] = res.cov
    np.savez(sys.argv[1], **out)
""")


def test_two_forced_host_devices_give_the_trajectories_of_one(tmp_path):
    """512 trajectories at d = 64, S = 32 (16 tiles of 32 on one device; 8 tiles of 64, 32
    rows of each per device, on two) sharded over two host devices: every trajectory bit
    for bit as on one device."""
    tile = dyn_sgd.tile_size(32, 64, 4)
    assert dyn_sgd.n_tiles(512, tile) == 16
    assert dyn_sgd.n_tiles(512, dyn_sgd.tile_size(32, 64, 4, devices=2)) == 8
    path = tmp_path / "devices.npz"
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    run = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT, str(path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    with np.load(path) as data:
        for sampling in ("iid", "reshuffle"):
            np.testing.assert_array_equal(data[f"{sampling}_2"], data[f"{sampling}_1"])
            scale = np.abs(data[f"{sampling}_1_cov"]).max()
            np.testing.assert_allclose(data[f"{sampling}_2_cov"], data[f"{sampling}_1_cov"],
                                       rtol=0, atol=1e-5 * scale)
