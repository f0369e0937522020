"""Tests of benchmarks/models.py and benchmarks/train.py on tiny digits data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import report, train
from benchmarks.config import Config
from benchmarks.data import get_dataset
from benchmarks.models import count_params, make_model
from benchmarks.train import (
    BASE_OPTIMIZERS,
    METHODS,
    make_optimizer,
    train_and_evaluate,
)

# Stagnation on purpose: no evaluation after the first can beat the best loss or
# accuracy by atol = 10, so SAL deforms as in SPEC's worked example.
STAGNANT = dict(patience=1, yield_stress=2, atol=10.0)
TINY = dict(
    dataset="digits",
    model="mlp",
    hidden_sizes=(16,),
    epochs=3,
    batch_size=50,
    max_train_examples=220,
    max_test_examples=60,
    progress=False,
)


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", max_train_examples=220, max_test_examples=60)


@pytest.fixture(scope="module")
def runs(digits):
    """One baseline run (with an epoch hook) and two stagnant SAL runs, the second
    with scrambled test labels; several tests inspect them."""
    seen = []
    baseline = train_and_evaluate(
        Config(**TINY),
        digits,
        seed=0,
        method="baseline",
        on_epoch_end=lambda epoch, model, row: seen.append((epoch, model, row)),
    )
    stagnant = Config(**TINY, **STAGNANT).replace(epochs=4)
    scrambled = dataclasses.replace(digits, y_test=(digits.y_test + 1) % 10)
    return {
        "baseline": baseline,
        "hook": seen,
        "sal": train_and_evaluate(stagnant, digits, 0, method="sal"),
        "sal_scrambled": train_and_evaluate(stagnant, scrambled, 0, method="sal"),
    }


# The main job's models (the suite's architectures have test_architectures.py):
# the MLP flattens any shape; the CNN has a 1-D and a 2-D convolution path.
@pytest.mark.parametrize(
    ("name", "shape"),
    [("mlp", (8, 8, 1)), ("cnn", (40,)), ("cnn", (28, 28, 1))],
    ids=["mlp-8x8x1", "cnn-40", "cnn-28x28x1"],
)
def test_models_map_any_input_shape_to_logits(name, shape):
    def forward():
        model = make_model(name, shape, 7, rngs=nnx.Rngs(0))
        return model(jnp.zeros((3, *shape)))

    # Traced, not run: shapes are what is checked, and tracing compiles nothing.
    assert jax.eval_shape(forward).shape == (3, 7)


def test_dropout_follows_train_and_eval_mode():
    model = make_model("mlp", (8,), 4, rngs=nnx.Rngs(0), dropout_rate=0.5)
    x = jnp.ones((2, 8))
    assert not np.array_equal(model(x), model(x))  # train mode: fresh masks

    model.eval()
    np.testing.assert_array_equal(model(x), model(x))


def test_build_model_passes_the_config_model_options(digits):
    # 64 inputs -> 16 hidden -> 10 classes; the registry's default is 256-256.
    model = train.build_model(Config(model="mlp", hidden_sizes=(16,)), digits, 0)
    assert count_params(model) == 64 * 16 + 16 + 16 * 10 + 10


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown model 'resnet999'"):
        make_model("resnet999", (4,), 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        make_optimizer(Config(), "magic")
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs2'"):
        make_optimizer(Config(optimizer="lbfgs2"))


# optax's Adam and Nadam bias correction raises a Python float to an int32 power.
@pytest.mark.standard_promotion
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("optimizer", sorted(BASE_OPTIMIZERS))
def test_every_method_wraps_every_base_optimizer(method, optimizer):
    tx = make_optimizer(Config(optimizer=optimizer), method, steps_per_epoch=3)
    params = {"w": jnp.ones(3)}

    # Traced, not compiled: building and shaping the chain is what is checked.
    def step(params):
        return tx.update(params, tx.init(params), params, value=jnp.float32(1.0))

    updates, _ = jax.eval_shape(step, params)
    assert updates["w"].shape == (3,)


def test_train_and_evaluate_records_every_epoch_and_calls_the_hook(runs):
    result, seen = runs["baseline"], runs["hook"]

    assert [row[report.EPOCH] for row in result.history] == [1, 2, 3]
    assert set(result.history[0]) == set(report.HISTORY_COLUMNS)
    assert [epoch for epoch, _, _ in seen] == [1, 2, 3]
    assert all(model is result.model for _, model, _ in seen)
    assert result.events == dict.fromkeys(report.EVENTS, 0)
    assert result.wall_time > 0
    # Learning happens: the loss falls from the first epoch to the last.
    assert result.history[-1][report.TRAIN_LOSS] < result.history[0][report.TRAIN_LOSS]


def test_sal_deforms_a_stagnant_run_and_counts_each_event(runs):
    # Epoch 1 sets the reference; 2: elastic; 3: spring back and plastic;
    # 4: reference again after the plastic event. (The CLI test checks sal_first.)
    result = runs["sal"]
    counts = [tuple(row[k] for k in report.EVENTS) for row in result.history]
    assert counts == [(0, 0, 0), (1, 0, 0), (1, 1, 1), (1, 1, 1)]
    assert result.events == dict(zip(report.EVENTS, (1, 1, 1), strict=True))


def test_test_split_never_steers_training(runs):
    # Same run with the test labels scrambled: training, validation and every
    # SAL decision must be identical; only the test columns may change.
    plain, scrambled = runs["sal"], runs["sal_scrambled"]

    steering = (report.TRAIN_LOSS, report.VAL_ACCURACY, report.STRESS, *report.EVENTS)
    for a, b in zip(plain.history, scrambled.history, strict=True):
        assert [a[k] for k in steering] == [b[k] for k in steering]
    assert plain.history[-1][report.TEST_ACCURACY] != pytest.approx(
        scrambled.history[-1][report.TEST_ACCURACY]
    )


@nnx.jit
def _sal_step(model, optimizer, grads):
    optimizer.update(model, grads, value=jnp.float32(1.0), accuracy=jnp.nan)


def _elastic_params(seed: int) -> np.ndarray:
    # Identical model and zero gradients: only SAL's noise can move the weights.
    model = make_model("mlp", (4,), 2, rngs=nnx.Rngs(0), hidden_sizes=(3,))
    config = Config(optimizer="sgd", **STAGNANT)
    optimizer = train._seeded_optimizer(config, "sal", model, 1, seed)
    grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    for _ in range(2):  # a reference evaluation, then an elastic deformation
        _sal_step(model, optimizer, grads)
    return np.asarray(model.head.kernel[...])


def test_each_seed_draws_its_own_noise_through_one_shared_step():
    # The step's transformation is shared across seeds (one compilation), so the
    # seed must reach SAL through the state it initialised.
    first, again, other = (_elastic_params(s) for s in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
