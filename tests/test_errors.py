"""Tests of sal()'s input checks: bad hyperparameters, missing or bad arguments."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sal_optax
from tests.helpers import sal_kwargs, toy_params, zeros_like

BAD_ARGUMENTS = [
    # (argument name, overrides); the message must show `name=repr(value)`.
    ("patience", dict(patience=0)),
    ("patience", dict(patience=-1)),
    ("patience", dict(patience=1.5)),
    ("patience", dict(patience=True)),
    ("yield_stress", dict(patience=3, yield_stress=2)),
    ("noise_scale", dict(noise_scale=-0.1)),
    ("noise_scale", dict(noise_scale=math.nan)),
    ("plastic_scale", dict(plastic_scale=-1.0)),
    ("plastic_scale", dict(plastic_scale=math.inf)),
    ("accumulation_steps", dict(accumulation_steps=0)),
    ("accumulation_steps", dict(accumulation_steps=2.0)),
    ("rtol", dict(rtol=-1e-3)),
    ("rtol", dict(rtol=math.nan)),
    ("atol", dict(atol=-1.0)),
    ("atol", dict(atol=math.inf)),
    ("cooldown", dict(cooldown=-1)),
    ("yield_stress", dict(yield_stress=2**31)),
    ("cooldown", dict(cooldown=2**32)),
    ("min_rms", dict(min_rms=-1e-6)),
    ("min_rms", dict(min_rms=math.nan)),
    ("spring_back", dict(spring_back=1)),
    ("spring_back", dict(spring_back="yes")),
    ("axis_name", dict(axis_name=3)),
    ("axis_name", dict(axis_name=["batch"])),
    ("key", dict(key="abc")),
    ("key", dict(key=1.5)),
    ("key", dict(key=2**64)),
    ("key", dict(key=np.zeros((3,), np.uint32))),
    ("key", dict(key=jax.random.split(jax.random.key(0)))),
]


@pytest.mark.parametrize(
    "name, overrides",
    BAD_ARGUMENTS,
    ids=[f"{name}={overrides[name]!r}"[:40] for name, overrides in BAD_ARGUMENTS],
)
def test_bad_hyperparameter_raises_value_error(name, overrides):
    with pytest.raises(ValueError) as info:
        sal_optax.sal(**sal_kwargs(**overrides))

    assert f"{name}={overrides[name]!r}" in str(info.value)


def test_boundary_values_are_accepted():
    sal_optax.sal(
        patience=1,
        yield_stress=1,
        noise_scale=0.0,
        plastic_scale=0.0,
        accumulation_steps=1,
        rtol=0.0,
        atol=0.0,
        cooldown=0,
        min_rms=0.0,
    )


@pytest.mark.parametrize(
    "tx",
    [
        sal_optax.sal(**sal_kwargs()),
        optax.chain(optax.sgd(1e-3), sal_optax.sal(**sal_kwargs())),
    ],
    ids=["alone", "chain"],
)
def test_missing_value_raises_type_error_showing_how(tx):
    params = toy_params()
    state = tx.init(params)

    with pytest.raises(TypeError, match="value="):
        tx.update(zeros_like(params), state, params)
    with pytest.raises(TypeError, match="value="):
        tx.update(zeros_like(params), state, params, accuracy=0.5)


def test_missing_params_raises_value_error():
    tx = sal_optax.sal(**sal_kwargs())
    params = toy_params()
    state = tx.init(params)

    with pytest.raises(ValueError, match="params"):
        tx.update(zeros_like(params), state, None, value=1.0)


@pytest.mark.parametrize("argument", ["value", "accuracy"])
@pytest.mark.parametrize(
    "bad", ["abc", None.__class__, object()], ids=["str", "type", "object"]
)
def test_non_numeric_metric_raises_type_error(argument, bad):
    tx = sal_optax.sal(**sal_kwargs())
    params = toy_params()
    state = tx.init(params)
    metrics = {"value": 1.0, argument: bad}

    with pytest.raises(TypeError, match=argument):
        tx.update(zeros_like(params), state, params, **metrics)


def test_complex_value_raises_type_error():
    tx = sal_optax.sal(**sal_kwargs())
    params = toy_params()

    with pytest.raises(TypeError, match="value"):
        tx.update(zeros_like(params), tx.init(params), params, value=1.0 + 2.0j)


def test_state_from_other_parameters_is_rejected():
    tx = sal_optax.sal(**sal_kwargs())
    state = tx.init({"w": jnp.ones((2,))})
    params = toy_params()

    with pytest.raises(ValueError, match="call `init` with the same parameter"):
        tx.update(zeros_like(params), state, params, value=1.0)


def test_updates_and_params_of_different_trees_are_rejected():
    params = {"a": jnp.ones((2,)), "b": jnp.ones((3,))}
    tx = sal_optax.sal(patience=1, yield_stress=1)
    state = tx.init(params)
    updates = {"a": jnp.ones((2,)), "c": jnp.ones((3,))}

    with pytest.raises(ValueError, match=r"`params` must have the tree structure"):
        tx.update(updates, state, params, value=1.0)
