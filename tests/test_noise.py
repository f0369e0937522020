"""Tests of the pure helpers in sal_optax/_noise.py (RMS, leaf ids, noise draws)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sal_optax import _noise


@pytest.mark.parametrize(
    "leaf, expected",
    [
        (jnp.ones((2,), jnp.float16), True),
        (jnp.ones((2,), jnp.bfloat16), True),
        (jnp.ones((2,), jnp.float32), True),
        (np.ones((2,), np.float32), True),
        (1.5, True),
        (jnp.ones((2,), jnp.int32), False),
        (jnp.ones((2,), jnp.uint8), False),
        (jnp.ones((2,), bool), False),
        (jnp.ones((2,), jnp.complex64), False),
        (object(), False),
    ],
    ids=["f16", "bf16", "f32", "numpy-f32", "float", "i32", "u8", "bool", "c64", "obj"],
)
def test_is_deformable(leaf, expected):
    assert _noise.is_deformable(leaf) is expected


def _paths(tree):
    return [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


# CRC-32 of the leaf paths as `jax.tree_util.keystr` writes them.
ID_A, ID_B, ID_AB = 839819387, 810032674, 1840947583


def test_tree_ids_are_distinct_stable_and_31_bit():
    trees = [{"a": 0}, {"b": 0}, {"a": 0, "b": 0}, {"a": {"b": 0}}, [0, 0], (0,)]
    ids = [_noise.tree_id(_paths(tree)) for tree in trees]

    assert len(set(ids)) == len(ids)
    assert all(0 <= i < 2**31 for i in ids)
    assert ids == [_noise.tree_id(_paths(tree)) for tree in trees]
    # Pinned, so that noise stays the same across processes and releases
    # (Python's salted `hash` would pass the checks above).
    assert ids[:3] == [ID_A, ID_B, ID_AB]


@pytest.mark.parametrize(
    "dtype", [np.float16, jnp.bfloat16, np.float32], ids=["f16", "bf16", "f32"]
)
def test_leaf_rms_matches_numpy_in_float32(dtype):
    x = np.linspace(-3.0, 5.0, 101).astype(dtype)
    rms = _noise.leaf_rms(jnp.asarray(x))

    assert rms.dtype == jnp.float32
    expected = np.sqrt(np.mean(np.square(x.astype(np.float64))))
    assert float(rms) == pytest.approx(expected, rel=1e-6)


def test_leaf_rms_of_large_float16_does_not_overflow():
    rms = _noise.leaf_rms(jnp.full((8,), 60000.0, jnp.float16))

    assert float(rms) == pytest.approx(60000.0, rel=1e-3)


def test_leaf_rms_of_an_empty_leaf_is_zero():
    assert float(_noise.leaf_rms(jnp.zeros((0, 3)))) == 0.0


def test_leaf_rms_is_float64_under_x64():
    with jax.enable_x64(True):
        rms = _noise.leaf_rms(jnp.asarray(np.ones(3)))
        assert rms.dtype == jnp.float64


@pytest.mark.parametrize(
    "values, relative, min_rms, expected",
    [
        (np.full(4, 2.0), 0.5, 0.1, 1.0),
        (np.zeros(4), 0.5, 0.1, 0.05),
        (np.zeros(4), 0.5, 0.0, 0.0),
        (np.full(4, 2.0), 0.0, 0.1, 0.0),
        (np.array([np.inf, 1.0, 1.0, 1.0]), 0.5, 0.1, 0.0),
    ],
    ids=["rms", "floor", "no-floor", "zero-scale", "inf-leaf"],
)
def test_noise_std(values, relative, min_rms, expected):
    leaf = jnp.asarray(values.astype(np.float32))
    std = _noise.noise_std(leaf, jnp.float32(relative), min_rms)

    assert std.dtype == jnp.float32
    assert float(std) == pytest.approx(expected, rel=1e-6)


def _leaves():
    return {
        "a": jnp.zeros((3, 4), jnp.bfloat16),
        "b": jnp.zeros((50_000,), jnp.float32),
        "c": jnp.zeros((50_000,), jnp.float16),
        "d": jnp.zeros((0,), jnp.float32),
    }


def _draw(key, tree):
    leaves = jax.tree.leaves(tree)
    return [np.asarray(z) for z in _noise.standard_noise(key, _paths(tree), leaves)]


def test_standard_noise_shapes_dtypes_and_determinism():
    tree = _leaves()
    first = _draw(jax.random.key(0), tree)

    for z, leaf in zip(first, jax.tree.leaves(tree), strict=True):
        assert z.shape == leaf.shape
        assert z.dtype == np.float32
    for z, again in zip(first, _draw(jax.random.key(0), tree), strict=True):
        np.testing.assert_array_equal(z, again)
    other = _draw(jax.random.key(1), tree)
    assert not np.array_equal(first[1], other[1])


def test_standard_noise_is_standard_and_independent_between_leaves():
    _, b, c, _ = _draw(jax.random.key(2), _leaves())

    for z in (b, c):
        assert abs(z.mean()) < 0.02
        assert z.std() == pytest.approx(1.0, rel=0.02)
    assert abs(np.corrcoef(b, c)[0, 1]) < 0.03


def test_standard_noise_depends_on_the_paths():
    key = jax.random.key(3)
    x = {"x": jnp.zeros((50_000,))}
    y = {"y": jnp.zeros((50_000,))}

    (zx,), (zy,) = _draw(key, x), _draw(key, y)
    assert abs(np.corrcoef(zx, zy)[0, 1]) < 0.03


def test_add_without_overflow():
    update = jnp.asarray(np.array([1.0, 65000.0, np.inf, -0.0], np.float16))
    delta = jnp.asarray(np.array([0.5, 60000.0, 1.0, 2.0], np.float32))

    out = np.asarray(_noise.add_without_overflow(update, delta))

    assert out.dtype == np.float16
    np.testing.assert_array_equal(
        out, np.array([1.5, 65000.0, np.inf, 2.0], np.float16)
    )
