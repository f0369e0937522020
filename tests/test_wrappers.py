"""Contract suite: sal inside Optax's combinators and wrappers behaves the same."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sal_optax
from tests import helpers
from tests.helpers import (
    WORKED_STRESS,
    WORKED_TOTALS,
    WRAPPER_PARAMS,
    counters,
    sal_kwargs,
    toy_params,
)


def _grads(params):
    return helpers.scaled(params, 0.1)


@pytest.mark.parametrize("wrapper", WRAPPER_PARAMS)
def test_worked_example_compiled_once_with_unknown_kwargs(wrapper):
    # One compiled step serves three contract checks: the counters follow the
    # worked example, unknown extra kwargs are ignored, and nothing retraces.
    params = toy_params()
    tx = wrapper.build(sal_kwargs())
    grads = _grads(params)
    extra = dict(unknown_array=jnp.ones((3,)), unknown_tag="tag")
    traces = []

    @jax.jit
    def step(params, state, value):
        traces.append(None)
        updates, state = tx.update(grads, state, params, value=value, **extra)
        return optax.apply_updates(params, updates), state, updates

    state = tx.init(params)
    k = wrapper.steps_per_eval
    emitted = []
    for i in range(10 * k):
        params, state, updates = step(params, state, 1.0)
        assert helpers.all_finite(updates)
        if i % k == k - 1:
            emitted.append(counters(state))

    assert [c["stress"] for c in emitted] == list(WORKED_STRESS)
    assert {n: emitted[-1][n] for n in WORKED_TOTALS} == WORKED_TOTALS
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert len(traces) == 1
    assert step._cache_size() == 1


def _abstract(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), tree)


@pytest.mark.parametrize("wrapper", WRAPPER_PARAMS)
def test_state_is_stable_under_lax_cond(wrapper):
    params = toy_params()
    tx = wrapper.build(sal_kwargs())
    state = tx.init(params)
    grads = _grads(params)

    @jax.jit
    def maybe_update(state, take):
        def do(state):
            return tx.update(grads, state, params, value=1.0)[1]

        return jax.lax.cond(take, do, lambda state: state, state)

    assert _abstract(jax.eval_shape(maybe_update, state, True)) == _abstract(state)
    k = wrapper.steps_per_eval
    for take in [True, False] * (3 * k):
        state = maybe_update(state, take)
    assert counters(state)["stress"] == WORKED_STRESS[2]
    assert counters(state)["num_elastic"] == 1


@pytest.mark.parametrize("wrapper", WRAPPER_PARAMS)
def test_update_dtypes_follow_parameters(wrapper):
    dtype = jnp.bfloat16
    params = toy_params(dtype)
    tx = wrapper.build(sal_kwargs(patience=1, yield_stress=2))
    k = wrapper.steps_per_eval
    records, _ = helpers.run(tx, params, [1.0] * (4 * k), grads=_grads(params))

    assert records[-1].counters["num_plastic"] == 1
    for record in records:
        assert all(x.dtype == dtype for x in jax.tree.leaves(record.updates))
        assert helpers.all_finite(record.updates)


@pytest.mark.standard_promotion
def test_multi_steps_sal_sees_only_the_emitting_value():
    # Values of the non-emitting mini-steps keep improving; sal must ignore them.
    k = 3
    tx = optax.MultiSteps(
        optax.chain(optax.sgd(0.1), sal_optax.sal(**sal_kwargs())), every_k_schedule=k
    )
    values = []
    for i in range(10):
        values += [-10.0 * (i + 1), np.nan, 1.0]
    params = toy_params()
    records, state = helpers.run(tx, params, values, grads=_grads(params))

    assert helpers.stresses(records[k - 1 :: k]) == list(WORKED_STRESS)
    assert {n: counters(state)[n] for n in WORKED_TOTALS} == WORKED_TOTALS


@pytest.mark.standard_promotion
def test_multi_steps_counters_advance_once_per_emitted_step():
    k = 2
    tx = optax.MultiSteps(
        optax.chain(optax.sgd(0.1), sal_optax.sal(**sal_kwargs())), every_k_schedule=k
    )
    params = toy_params()
    records, _ = helpers.run(tx, params, [1.0] * 8, grads=_grads(params))

    assert helpers.stresses(records) == [0, 0, 0, 1, 1, 2, 2, 3]
    for mid, end in zip(records[0::2], records[1::2], strict=True):
        # Nothing moves on a mini-step (MultiSteps emits 0 * update, maybe -0.0).
        helpers.assert_trees_close(mid.updates, helpers.zeros_like(params), 0, 0)
        assert helpers.all_finite(end.updates)


def test_inject_hyperparams_changes_noise_scale():
    params = {"w": jnp.asarray(np.linspace(-1, 1, 64, dtype=np.float32))}
    tx = optax.inject_hyperparams(sal_optax.sal)(
        **sal_kwargs(patience=1, yield_stress=10, noise_scale=0.1)
    )
    update = jax.jit(tx.update)
    zeros = helpers.zeros_like(params)

    def first_elastic_noise(noise_scale):
        state = tx.init(params)
        _, state = update(zeros, state, params, value=1.0)
        state.hyperparams["noise_scale"] = jnp.asarray(noise_scale, jnp.float32)
        noise, state = update(zeros, state, params, value=1.0)
        assert counters(state)["num_elastic"] == 1
        return np.asarray(noise["w"])

    base, doubled = first_elastic_noise(0.1), first_elastic_noise(0.2)
    assert np.std(base) > 0
    np.testing.assert_allclose(doubled, 2 * base, rtol=1e-5, atol=1e-7)


def test_inject_hyperparams_runs_the_worked_example():
    tx = optax.inject_hyperparams(sal_optax.sal)(**sal_kwargs())
    records, _ = helpers.run(tx, toy_params(), [1.0] * 10)

    assert helpers.stresses(records) == list(WORKED_STRESS)


def test_map_params_treats_sal_state_as_non_parameters():
    params = toy_params()
    tx = optax.chain(optax.sgd(0.1, momentum=0.9), sal_optax.sal(**sal_kwargs()))
    state = tx.init(params)

    mapped = optax.tree.map_params(
        tx, lambda _: "param", state, transform_non_params=lambda _: "other"
    )

    assert jax.tree.structure(mapped) == jax.tree.structure(state)
    momentum = mapped[0][0].trace
    assert set(jax.tree.leaves(momentum)) == {"param"}
    assert set(jax.tree.leaves(sal_optax.find_state(mapped))) == {"other"}


def test_map_params_builds_usable_shardings():
    params = toy_params()
    tx = optax.chain(optax.sgd(0.1, momentum=0.9), sal_optax.sal(**sal_kwargs()))
    state = tx.init(params)
    replicated = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    shardings = optax.tree.map_params(
        tx, lambda _: replicated, state, transform_non_params=lambda _: replicated
    )
    placed = jax.device_put(state, shardings)

    helpers.assert_trees_bitwise_equal(placed, state)
