"""Contract suite: sal inside Optax's combinators and wrappers behaves the same."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sal_optax
from tests import helpers
from tests.helpers import (
    WORKED_EVENTS,
    WORKED_STRESS,
    WORKED_TOTALS,
    WRAPPER_PARAMS,
    counters,
    sal_kwargs,
    toy_params,
)


def _grads(params):
    return helpers.scaled(params, 0.1)


def _abstract(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), tree)


@pytest.mark.parametrize("wrapper", WRAPPER_PARAMS)
def test_worked_example_compiled_once_under_lax_cond(wrapper):
    # One compiled step serves every contract check of a wrapper (a compile per
    # check would dominate the suite's time): the counters follow the worked
    # example, unknown extra kwargs are ignored, nothing retraces, the state
    # keeps its types under lax.cond, and updates keep bfloat16 parameters' dtype.
    dtype = jnp.bfloat16
    params = toy_params(dtype)
    tx = wrapper.build(sal_kwargs())
    # Zero gradients: every non-zero update is sal's deformation, so the test
    # sees whether the wrapper passes sal's deltas through, and to which leaves.
    grads = helpers.zeros_like(params)
    extra = dict(unknown_array=jnp.ones((3,)), unknown_tag="tag")
    traces = []

    @jax.jit
    def step(params, state, value, take):
        traces.append(None)

        def update(state):
            return tx.update(grads, state, params, value=value, **extra)

        def skip(state):
            return jax.tree.map(jnp.zeros_like, grads), state

        updates, state = jax.lax.cond(take, update, skip, state)
        return optax.apply_updates(params, updates), state, updates

    state = tx.init(params)
    assert _abstract(jax.eval_shape(step, params, state, 1.0, True)[1]) == _abstract(
        state
    )
    k = wrapper.steps_per_eval
    emitted, deformed = [], []
    for i in range(10 * k):
        # A skipped step (the false branch of lax.cond) leaves the state as it was.
        _, skipped, _ = step(params, state, 1.0, False)
        helpers.assert_trees_bitwise_equal(skipped, state)
        params, state, updates = step(params, state, 1.0, True)
        assert all(x.dtype == dtype for x in jax.tree.leaves(updates))
        assert all(x.dtype == dtype for x in jax.tree.leaves(params))
        assert helpers.all_finite(updates)
        if i % k == k - 1:
            emitted.append(counters(state))
            deformed.append({n: bool(jnp.any(u != 0)) for n, u in updates.items()})
        else:
            assert not any(jnp.any(u != 0) for u in jax.tree.leaves(updates))

    assert [c["stress"] for c in emitted] == list(WORKED_STRESS)
    # The worked example deforms at evaluations 3, 4, 5, 8, 9 and 10 (1-based);
    # the masked and partitioned wrappers keep sal away from "b".
    events = [any(e) for e in WORKED_EVENTS]
    assert [d["w"] for d in deformed] == events
    sal_on_b = wrapper.id not in ("masked", "partition")
    assert [d["b"] for d in deformed] == [e and sal_on_b for e in events]
    assert {n: emitted[-1][n] for n in WORKED_TOTALS} == WORKED_TOTALS
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert _abstract(state) == _abstract(tx.init(params))
    assert len(traces) == 1
    assert step._cache_size() == 1


@pytest.mark.standard_promotion
def test_multi_steps_sal_sees_only_the_emitting_value():
    # Values of the non-emitting mini-steps keep improving (or are NaN); sal must
    # ignore them, and its counters advance once per emitted step.
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
    for i, record in enumerate(records):
        if i % k != k - 1:
            # Nothing moves on a mini-step (MultiSteps emits 0 * update, maybe -0.0).
            previous = records[i - 1].counters if i else counters(tx.init(params))
            assert record.counters == previous
            helpers.assert_trees_close(record.updates, helpers.zeros_like(params), 0, 0)
        assert helpers.all_finite(record.updates)


def test_inject_hyperparams_runs_the_worked_example_and_changes_noise_scale():
    params = toy_params()
    tx = optax.inject_hyperparams(sal_optax.sal)(**sal_kwargs())
    update = jax.jit(tx.update)
    zeros = helpers.zeros_like(params)

    state = tx.init(params)
    stresses = []
    for _ in range(10):
        _, state = update(zeros, state, params, value=1.0)
        stresses.append(counters(state)["stress"])
    assert stresses == list(WORKED_STRESS)

    def first_elastic_noise(noise_scale):
        # Evaluation 3 of the worked example starts the first elastic deformation.
        state = tx.init(params)
        for _ in range(2):
            _, state = update(zeros, state, params, value=1.0)
        state.hyperparams["noise_scale"] = jnp.asarray(noise_scale, jnp.float32)
        noise, state = update(zeros, state, params, value=1.0)
        assert counters(state)["num_elastic"] == 1
        return jax.tree.map(np.asarray, noise)

    base, doubled = first_elastic_noise(0.1), first_elastic_noise(0.2)
    assert all(np.std(x) > 0 for x in jax.tree.leaves(base))
    twice = jax.tree.map(lambda x: 2 * x, base)
    helpers.assert_trees_close(doubled, twice, rtol=1e-5, atol=1e-7)


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
