"""Tests of sal with Flax: NNX's nnx.Optimizer and the Linen TrainState helper."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sal_optax
from tests import helpers
from tests.helpers import counters, sal_kwargs

nnx = pytest.importorskip("flax.nnx")
train_state = pytest.importorskip("flax.training.train_state")

# Flax mixes dtypes inside its own layers and optimizer wrapper.
pytestmark = pytest.mark.standard_promotion

X = jnp.asarray(np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3))
Y = jnp.asarray(np.array([0, 1, 1, 0]))


def _tx():
    # Learning rate 0: only sal moves the weights, so the loss only changes at
    # events and the counters are known: plastic at evaluations 2, 4 and 6.
    return optax.chain(
        optax.sgd(0.0), sal_optax.sal(**sal_kwargs(patience=1, yield_stress=1))
    )


def _loss(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_nnx_optimizer_sees_events_under_nnx_jit():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, _tx(), wrt=nnx.Param)
    kernel0 = np.asarray(model.kernel[...])

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return _loss(logits, y), logits

        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        accuracy = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
        optimizer.update(model, grads, value=loss, accuracy=accuracy)
        return loss

    plastic = []
    for _ in range(6):
        train_step(model, optimizer, X, Y)
        plastic.append(counters(optimizer.opt_state)["num_plastic"])

    assert plastic == [0, 1, 1, 2, 2, 3]
    assert not np.array_equal(np.asarray(model.kernel[...]), kernel0)
    assert model.kernel[...].dtype == jnp.float32


class _Model:
    """A Linen-style apply function: one dense layer as a plain function."""

    @staticmethod
    def apply(params, x):
        return x @ params["w"] + params["b"][None, :]


def _linen_state(cls=train_state.TrainState, **fields):
    params = {
        "w": jnp.asarray(np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)),
        "b": jnp.zeros((2,)),
    }
    return cls.create(apply_fn=_Model.apply, params=params, tx=_tx(), **fields)


def _grads_and_metrics(state):
    def loss_fn(params):
        logits = state.apply_fn(params, X)
        return _loss(logits, Y), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean((jnp.argmax(logits, -1) == Y).astype(jnp.float32))
    return grads, loss, accuracy


class _StateWithStats(train_state.TrainState):
    batch_stats: dict


def test_linen_apply_gradients_matches_a_manual_step():
    with_accuracy = True

    @jax.jit
    def helper_step(state):
        grads, loss, accuracy = _grads_and_metrics(state)
        accuracy = accuracy if with_accuracy else None
        return sal_optax.apply_gradients(
            state, grads=grads, value=loss, accuracy=accuracy
        )

    @jax.jit
    def manual_step(state):
        grads, loss, accuracy = _grads_and_metrics(state)
        accuracy = accuracy if with_accuracy else None
        updates, opt_state = state.tx.update(
            grads, state.opt_state, state.params, value=loss, accuracy=accuracy
        )
        params = optax.apply_updates(state.params, updates)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state)

    # A subclass with an extra field: the helper must keep both.
    stats = {"mean": jnp.ones((2,))}
    state = reference = _linen_state(_StateWithStats, batch_stats=stats)
    for _ in range(4):
        state, reference = helper_step(state), manual_step(reference)

    assert isinstance(state, _StateWithStats)
    helpers.assert_trees_bitwise_equal(state.batch_stats, stats)
    assert int(state.step) == 4
    assert counters(state.opt_state)["num_plastic"] == 2
    helpers.assert_trees_bitwise_equal(state.params, reference.params)
    helpers.assert_trees_bitwise_equal(state.opt_state, reference.opt_state)


def test_linen_apply_gradients_needs_value():
    state = _linen_state()
    grads, _, _ = _grads_and_metrics(state)

    with pytest.raises(TypeError, match="value="):
        sal_optax.apply_gradients(state, grads=grads)
