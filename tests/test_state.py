"""Tests of SALState and find_state()."""

import inspect

import jax
import jax.numpy as jnp
import optax
import pytest

import sal_optax
from tests import helpers
from tests.helpers import WRAPPER_PARAMS, counters, sal_kwargs, toy_params


def _optax_state_fields() -> set[str]:
    """Field names of every NamedTuple state that optax exports."""
    names = set()
    for module in (optax, optax.contrib, optax.transforms, optax.schedules):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, tuple) and hasattr(obj, "_fields"):
                names |= set(obj._fields)
    return names


def test_state_is_a_named_tuple_with_int32_counters():
    state = sal_optax.sal().init(toy_params())

    assert isinstance(state, sal_optax.SALState)
    assert isinstance(state, tuple) and hasattr(sal_optax.SALState, "_fields")
    for name in helpers.COUNTERS:
        assert getattr(state, name).dtype == jnp.int32
        assert int(getattr(state, name)) == 0


def test_field_names_do_not_collide_with_optax():
    collisions = set(sal_optax.SALState._fields) & _optax_state_fields()

    assert not collisions


def test_optax_tree_get_finds_each_counter():
    tx = optax.chain(optax.adam(1e-3), sal_optax.sal(**sal_kwargs()))
    state = tx.init(toy_params())
    for name in helpers.COUNTERS:
        assert optax.tree.get(state, name) is getattr(sal_optax.find_state(state), name)


@pytest.mark.parametrize("wrapper", WRAPPER_PARAMS)
def test_find_state_inside_wrappers(wrapper):
    state = wrapper.build(sal_kwargs()).init(toy_params())

    found = sal_optax.find_state(state)
    assert isinstance(found, sal_optax.SALState)
    assert counters(state) == dict.fromkeys(helpers.COUNTERS, 0)


def test_find_state_inside_inject_hyperparams():
    tx = optax.inject_hyperparams(sal_optax.sal)(**sal_kwargs())

    assert isinstance(sal_optax.find_state(tx.init(toy_params())), sal_optax.SALState)


def test_find_state_returns_a_bare_state_itself():
    state = sal_optax.sal().init(toy_params())

    assert sal_optax.find_state(state) is state


def test_find_state_sees_updated_counters():
    tx = optax.chain(optax.sgd(0.1), sal_optax.sal(**sal_kwargs()))
    records, state = helpers.run(tx, toy_params(), [1.0] * 3)

    assert counters(state) == records[-1].counters
    assert counters(state)["num_elastic"] == 1


@pytest.mark.parametrize(
    "state",
    [
        optax.adam(1e-3).init(toy_params()),
        {},
        None,
        jnp.zeros(()),
    ],
    ids=["adam", "empty", "none", "array"],
)
def test_find_state_raises_without_a_sal_state(state):
    with pytest.raises(ValueError, match="SALState"):
        sal_optax.find_state(state)


def test_find_state_raises_with_two_sal_states():
    chained = optax.chain(sal_optax.sal(), sal_optax.sal(key=1))
    partitioned = optax.partition(
        {"sal": sal_optax.sal(), "plain": sal_optax.sal(key=2)}, helpers.TOY_LABELS
    )
    for tx in (chained, partitioned):
        with pytest.raises(ValueError, match="2"):
            sal_optax.find_state(tx.init(toy_params()))


def test_find_state_inside_a_jitted_function():
    tx = optax.chain(optax.sgd(0.1), sal_optax.sal(**sal_kwargs()))
    state = tx.init(toy_params())

    stress = jax.jit(lambda s: sal_optax.find_state(s).stress + 1)(state)
    assert int(stress) == 1
