"""Tests of benchmarks/regimes.py: each regime's transformation of a run."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.config import Config
from benchmarks.data import Dataset
from benchmarks.regimes import REGIMES, apply_regime, shift_epoch, symmetric_noise
from benchmarks.train import make_optimizer

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(0)

    def split(n):
        x = rng.random((n, 6), dtype=np.float32)
        return x, rng.integers(0, NUM_CLASSES, n).astype(np.int32)

    return Dataset("toy", "test", NUM_CLASSES, *split(2000), *split(500), *split(300))


CONFIG = Config(dataset="digits", epochs=6, progress=False)


def test_stable_changes_nothing(dataset):
    config, data, hooks = apply_regime("stable", CONFIG, dataset, seed=0)
    assert config == CONFIG and data is dataset
    assert hooks.train_inputs is None and hooks.updates_per_batch == 1


@pytest.mark.parametrize(
    "name,rate", [("label_noise_20", 0.2), ("label_noise_40", 0.4)]
)
def test_label_noise_flips_train_and_val_labels_only(dataset, name, rate):
    _, noisy, _ = apply_regime(name, CONFIG, dataset, seed=3)

    for clean, dirty in (
        (dataset.y_train, noisy.y_train),
        (dataset.y_val, noisy.y_val),
    ):
        assert abs(np.mean(clean != dirty) - rate) < 0.06
        assert dirty.min() >= 0 and dirty.max() < NUM_CLASSES
    np.testing.assert_array_equal(noisy.y_test, dataset.y_test)
    np.testing.assert_array_equal(noisy.x_train, dataset.x_train)


def test_label_noise_is_paired_by_seed(dataset):
    # Every method of one seed must see the same noisy labels.
    first = apply_regime("label_noise_40", CONFIG, dataset, seed=1)[1]
    again = apply_regime("label_noise_40", CONFIG, dataset, seed=1)[1]
    other = apply_regime("label_noise_40", CONFIG, dataset, seed=2)[1]
    np.testing.assert_array_equal(first.y_train, again.y_train)
    assert np.any(first.y_train != other.y_train)


def test_symmetric_noise_never_keeps_a_flipped_label():
    labels = np.arange(1000, dtype=np.int32) % NUM_CLASSES
    flipped = symmetric_noise(labels, NUM_CLASSES, 1.0, np.random.default_rng(0))
    assert np.all(flipped != labels)
    counts = np.bincount(flipped, minlength=NUM_CLASSES)
    assert counts.min() > 50  # uniform over the other classes


def test_lr_shock_multiplies_one_epoch_by_ten(dataset):
    config, _, _ = apply_regime("lr_shock", CONFIG.replace(optimizer="sgd"), dataset, 0)
    steps_per_epoch = 2
    tx = make_optimizer(config.replace(momentum=0.0), steps_per_epoch=steps_per_epoch)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)

    sizes = []
    for _ in range(CONFIG.epochs * steps_per_epoch):
        updates, state = tx.update({"w": jnp.ones(3)}, state, params, value=0.0)
        sizes.append(float(jnp.abs(updates["w"][0])))
    per_epoch = np.asarray(sizes).reshape(CONFIG.epochs, steps_per_epoch)[:, 0]
    shocked = shift_epoch(CONFIG)  # 0-based index of epoch shift_epoch + 1
    expected = np.full(CONFIG.epochs, CONFIG.learning_rate)
    expected[shocked] *= 10
    np.testing.assert_allclose(per_epoch, expected, rtol=1e-6)


def test_shift_switches_training_inputs_mid_run(dataset):
    config, data, hooks = apply_regime("shift", CONFIG, dataset, seed=0)
    switch = shift_epoch(config) + 1
    before, after = hooks.train_inputs(switch - 1), hooks.train_inputs(switch)

    np.testing.assert_array_equal(after, dataset.x_train)
    assert before.shape == dataset.x_train.shape
    mirror = np.broadcast_to(2 * dataset.x_train.mean(0), before.shape)
    np.testing.assert_allclose(before + dataset.x_train, mirror, atol=1e-5)
    np.testing.assert_array_equal(hooks.train_inputs(1), before)
    assert data.x_test is dataset.x_test and data.x_val is dataset.x_val


def test_every_regime_keeps_shapes(dataset):
    for name in REGIMES:
        _, data, _ = apply_regime(name, CONFIG, dataset, seed=0)
        for field in dataclasses.fields(Dataset):
            value = getattr(data, field.name)
            if isinstance(value, np.ndarray):
                assert value.shape == getattr(dataset, field.name).shape


def test_unknown_regime_is_named():
    with pytest.raises(ValueError, match="unknown regime 'storm'"):
        apply_regime("storm", CONFIG, None, 0)
