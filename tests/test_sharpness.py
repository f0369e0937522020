"""Tests of the Hessian estimators against closed-form and dense answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from benchmarks import sharpness

_EIGENVALUES = np.array([9.0, 4.0, 2.5, 1.0, 0.5, 0.0, -0.3, -2.0])


def _quadratic(eigenvalues, seed=0):
    """Loss 0.5 x^T A x on a two-leaf pytree, with A = Q diag(eigenvalues) Q^T."""
    n = len(eigenvalues)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    matrix = (q * eigenvalues) @ q.T
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(n - 6)}
    _, unravel = ravel_pytree(params)

    def loss_fn(p, batch):
        del batch
        x = ravel_pytree(p)[0]
        return 0.5 * x @ jnp.asarray(matrix, jnp.float32) @ x

    return loss_fn, params, matrix


def _tiny_network():
    """A 3-4-2 tanh network with cross-entropy on 16 fixed examples."""
    keys = jax.random.split(jax.random.key(0), 4)
    params = {
        "hidden": {
            "kernel": jax.random.normal(keys[0], (3, 4)),
            "bias": jnp.zeros(4),
        },
        "out": {"kernel": jax.random.normal(keys[1], (4, 2)), "bias": jnp.zeros(2)},
    }
    batch = (
        jax.random.normal(keys[2], (16, 3)),
        jax.random.bernoulli(keys[3], 0.5, (16,)),
    )

    def loss_fn(p, b):
        x, y = b
        h = jnp.tanh(x @ p["hidden"]["kernel"] + p["hidden"]["bias"][None])
        logits = h @ p["out"]["kernel"] + p["out"]["bias"][None]
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(
            jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), 1)
        )

    flat, unravel = ravel_pytree(params)
    dense = jax.jit(jax.hessian(lambda f: loss_fn(unravel(f), batch)))(flat)
    return loss_fn, params, batch, np.linalg.eigvalsh(np.asarray(dense, np.float64))


def test_hvp_matches_matrix_product():
    loss_fn, params, matrix = _quadratic(_EIGENVALUES)
    flat, unravel = ravel_pytree(params)
    tangent = unravel(jnp.arange(flat.size, dtype=jnp.float32))

    got = ravel_pytree(sharpness.hvp(loss_fn, params, None, tangent))[0]

    np.testing.assert_allclose(got, matrix @ np.arange(flat.size), rtol=1e-4, atol=1e-4)


def test_lanczos_finds_both_extreme_eigenvalues_of_quadratic():
    loss_fn, params, _ = _quadratic(_EIGENVALUES)

    est = sharpness.lanczos(loss_fn, params, None, key=jax.random.key(1), tol=1e-5)

    assert est.converged
    assert est.num_iters <= len(_EIGENVALUES)
    np.testing.assert_allclose(est.max_eigenvalue, 9.0, rtol=1e-4)
    np.testing.assert_allclose(est.min_eigenvalue, -2.0, rtol=1e-3)
    assert len(est.history) == est.num_iters


def test_power_iteration_finds_top_eigenvalue_of_quadratic():
    loss_fn, params, _ = _quadratic(_EIGENVALUES)

    est = sharpness.power_iteration(
        loss_fn, params, None, key=jax.random.key(1), num_iters=300, tol=1e-5
    )

    assert est.converged
    np.testing.assert_allclose(est.max_eigenvalue, 9.0, rtol=1e-4)
    assert np.isnan(est.min_eigenvalue)


def test_power_iteration_finds_largest_magnitude_not_largest():
    # The documented caveat: a dominant negative eigenvalue wins, Lanczos does not.
    loss_fn, params, _ = _quadratic(np.array([3.0, 1.0, 0.5, 0, 0, 0, -1.0, -8.0]))
    key = jax.random.key(2)

    power = sharpness.power_iteration(loss_fn, params, None, key=key, num_iters=300)
    lanczos = sharpness.lanczos(loss_fn, params, None, key=key)

    np.testing.assert_allclose(power.max_eigenvalue, -8.0, rtol=1e-3)
    np.testing.assert_allclose(lanczos.max_eigenvalue, 3.0, rtol=1e-3)


def test_hutchinson_trace_of_quadratic_within_its_error():
    loss_fn, params, matrix = _quadratic(_EIGENVALUES)

    est = sharpness.hutchinson_trace(
        loss_fn, params, None, key=jax.random.key(3), num_samples=400
    )

    # Rademacher variance of v^T A v is 2 * sum_{i != j} A_ij^2.
    off_diagonal = matrix - np.diag(np.diag(matrix))
    expected_stderr = np.sqrt(2 * np.sum(off_diagonal**2) / 400)
    assert abs(est.trace - np.trace(matrix)) < 4 * expected_stderr
    np.testing.assert_allclose(est.stderr, expected_stderr, rtol=0.25)
    assert est.running_mean[-1] == pytest.approx(est.trace)


def test_hutchinson_trace_is_exact_for_diagonal_hessian():
    def loss_fn(p, batch):
        del batch
        return 0.5 * jnp.sum(jnp.arange(1.0, 7.0) * p["x"] ** 2)

    est = sharpness.hutchinson_trace(
        loss_fn, {"x": jnp.ones(6)}, None, key=jax.random.key(4), num_samples=5
    )

    np.testing.assert_allclose(est.trace, 21.0, rtol=1e-6)
    assert est.stderr == pytest.approx(0.0, abs=1e-5)


def test_estimators_match_dense_hessian_of_small_network():
    loss_fn, params, batch, eigenvalues = _tiny_network()
    key = jax.random.key(5)

    top = sharpness.lanczos(loss_fn, params, batch, key=key, tol=1e-5)
    power = sharpness.power_iteration(loss_fn, params, batch, key=key, num_iters=500)
    trace = sharpness.hutchinson_trace(loss_fn, params, batch, key=key, num_samples=300)

    np.testing.assert_allclose(top.max_eigenvalue, eigenvalues[-1], rtol=1e-3)
    np.testing.assert_allclose(top.min_eigenvalue, eigenvalues[0], rtol=1e-2, atol=1e-4)
    np.testing.assert_allclose(power.max_eigenvalue, eigenvalues[-1], rtol=1e-2)
    assert abs(trace.trace - eigenvalues.sum()) < 4 * trace.stderr


def test_hutchinson_rejects_single_sample():
    loss_fn, params, _ = _quadratic(_EIGENVALUES)

    with pytest.raises(ValueError, match="num_samples"):
        sharpness.hutchinson_trace(
            loss_fn, params, None, key=jax.random.key(0), num_samples=1
        )


def test_to_json_gives_plain_types():
    loss_fn, params, _ = _quadratic(_EIGENVALUES)
    est = sharpness.power_iteration(
        loss_fn, params, None, key=jax.random.key(0), num_iters=3
    )

    out = sharpness.to_json(est)

    assert out["min_eigenvalue"] is None
    assert isinstance(out["history"], list) and len(out["history"]) == 3
    assert isinstance(out["converged"], bool)
