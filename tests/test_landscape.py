"""Tests of filter-normalized directions, loss slices and their plots."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import landscape


def _params(scale=1.0):
    keys = jax.random.split(jax.random.key(0), 2)
    return {
        "conv": {"kernel": scale * jax.random.normal(keys[0], (3, 3, 2, 4))},
        "dense": {
            "kernel": scale * jax.random.normal(keys[1], (5, 3)),
            "bias": jnp.ones(3),
        },
    }


def test_direction_matches_filter_norms_and_ignores_biases():
    params = _params()

    d = landscape.filter_normalized_direction(jax.random.key(1), params)

    for name, axes in (("conv", (0, 1, 2)), ("dense", (0,))):
        w, dk = params[name]["kernel"], d[name]["kernel"]
        np.testing.assert_allclose(
            jnp.linalg.norm(dk.reshape(-1, dk.shape[-1]), axis=0),
            jnp.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0),
            rtol=1e-5,
        )
        assert dk.shape == w.shape and len(axes) == w.ndim - 1
    np.testing.assert_array_equal(d["dense"]["bias"], 0.0)


def test_same_key_gives_same_direction_up_to_filter_scale():
    d1 = landscape.filter_normalized_direction(jax.random.key(1), _params())
    d2 = landscape.filter_normalized_direction(jax.random.key(1), _params(scale=3.0))
    d3 = landscape.filter_normalized_direction(jax.random.key(2), _params())

    np.testing.assert_allclose(
        3.0 * d1["conv"]["kernel"], d2["conv"]["kernel"], rtol=1e-5
    )
    assert not np.allclose(d1["conv"]["kernel"], d3["conv"]["kernel"])


def test_slice_2d_of_quadratic_matches_closed_form():
    matrix = np.diag([1.0, 4.0, 9.0])
    params = jnp.array([0.5, -1.0, 0.2])
    d1, d2 = jnp.array([1.0, 0.0, 1.0]), jnp.array([0.0, 1.0, -1.0])
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-2, 2, 3)

    def metric_fn(p, batch):
        return {"loss": 0.5 * p @ jnp.asarray(matrix, jnp.float32) @ p, "one": batch}

    got = landscape.slice_2d(metric_fn, params, 1.0, (d1, d2), alphas, betas)

    x = np.asarray(params) + alphas[:, None, None] * np.asarray(d1)
    x = x + betas[None, :, None] * np.asarray(d2)
    expected = 0.5 * np.einsum("abi,ij,abj->ab", x, matrix, x)
    np.testing.assert_allclose(got["loss"], expected, rtol=1e-5)
    assert got["one"].shape == (5, 3)


def test_slice_1d_is_loss_at_centre_for_zero_step():
    params = _params()
    d = landscape.filter_normalized_direction(jax.random.key(1), params)

    def loss_fn(p, batch):
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(p)) + batch

    got = landscape.slice_1d(loss_fn, params, 0.5, d, np.array([-1.0, 0.0, 1.0]))

    assert got.shape == (3,)
    assert got[1] == pytest.approx(float(loss_fn(params, 0.5)), rel=1e-6)
    assert got[0] > got[1] and got[2] > got[1]


def test_plots_write_png_files(tmp_path):
    alphas = np.linspace(-1, 1, 4)
    z = np.add.outer(alphas**2, alphas**2)
    surfaces = {"baseline": z, "sal": 2 * z}

    landscape.plot_surfaces(surfaces, alphas, alphas, str(tmp_path / "s.png"))
    landscape.plot_lines({"sal train": z[0] + 0.1}, alphas, str(tmp_path / "l.png"))

    assert (tmp_path / "s.png").stat().st_size > 0
    assert (tmp_path / "l.png").stat().st_size > 0
