"""Sharpness of a loss at a point: top Hessian eigenvalues and the Hessian trace.

Every estimator takes ``loss_fn(params, batch) -> scalar`` and touches the
Hessian only through Hessian-vector products (forward-over-reverse,
``jax.jvp`` of ``jax.grad``), so it costs a few gradients per iteration and
never forms the matrix. Pytree arithmetic uses ``optax.tree``.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

LossFn = Callable[[optax.Params, Any], jax.Array]

# Two passes of Gram-Schmidt keep the Lanczos basis orthogonal to float32
# precision ("twice is enough", Parlett); one pass loses it after ~10 steps.
_REORTHOGONALIZATION_PASSES = 2


class EigenEstimate(NamedTuple):
    """Extreme Hessian eigenvalues with the run that produced them."""

    max_eigenvalue: float  # largest eigenvalue found
    min_eigenvalue: float  # smallest Ritz value (Lanczos); nan for power iteration
    history: np.ndarray  # float64[num_iters]: estimate of max_eigenvalue per step
    residual: float  # ||H v - lambda v|| / |lambda| of the top eigenpair
    num_iters: int  # Hessian-vector products used
    converged: bool  # residual <= tol


class TraceEstimate(NamedTuple):
    """Hutchinson estimate of the Hessian trace with its standard error."""

    trace: float  # mean of the probes' v^T H v
    stderr: float  # sample std / sqrt(num_samples)
    samples: np.ndarray  # float64[num_samples]: v^T H v per Rademacher probe
    running_mean: np.ndarray  # float64[num_samples]: mean of the first i probes


def hvp(
    loss_fn: LossFn, params: optax.Params, batch: Any, tangent: optax.Params
) -> optax.Params:
    """Hessian-vector product of ``loss_fn`` at ``params`` with ``tangent``.

    Args:
      loss_fn: scalar loss ``loss_fn(params, batch)``.
      params: point at which the Hessian is taken.
      batch: data passed through to ``loss_fn``.
      tangent: vector, a pytree shaped like ``params``.

    Returns:
      ``H @ tangent`` as a pytree shaped like ``params``.
    """
    grad_fn = jax.grad(loss_fn)
    return jax.jvp(lambda p: grad_fn(p, batch), (params,), (tangent,))[1]


# Module-level jits with the loss static: analysing many models of one
# architecture with the same ``loss_fn`` object compiles each function once.
_hvp_jit = jax.jit(hvp, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _quadratic_forms(loss_fn: LossFn, params, batch, probes) -> jax.Array:
    def one(v):
        return optax.tree.vdot(v, hvp(loss_fn, params, batch, v))

    return jax.vmap(one)(probes)


def _rademacher_probes(rng: np.random.Generator, params, num: int):
    # Drawn on the host: jax.random under vmap takes tens of seconds to
    # compile on CPU for a model of 10^5 parameters, numpy takes milliseconds.
    def draw(p):
        signs = 2 * rng.integers(0, 2, (num, *p.shape), dtype=np.int8) - 1
        return jnp.asarray(signs, p.dtype)

    return jax.tree.map(draw, params)


def _host_rng(key: jax.Array) -> np.random.Generator:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key).ravel().tolist())


def _unit(tree: optax.Params) -> optax.Params:
    return optax.tree.scale(1.0 / optax.tree.norm(tree), tree)


def _random_unit(key: jax.Array, params: optax.Params) -> optax.Params:
    return _unit(optax.tree.random_like(key, params, jax.random.normal))


def power_iteration(
    loss_fn: LossFn,
    params: optax.Params,
    batch: Any,
    *,
    key: jax.Array,
    num_iters: int = 100,
    tol: float = 1e-3,
) -> EigenEstimate:
    """Top Hessian eigenvalue by power iteration.

    Power iteration converges to the eigenvalue of largest magnitude, which is
    the largest one only when no negative eigenvalue is larger in magnitude;
    :func:`lanczos` has no such caveat and converges faster.

    Args:
      loss_fn: scalar loss ``loss_fn(params, batch)``.
      params: point at which the Hessian is taken.
      batch: data passed through to ``loss_fn``.
      key: PRNG key of the start vector.
      num_iters: most Hessian-vector products (>= 1).
      tol: stop when the relative residual ``||Hv - lv|| / |l|`` is below it.

    Returns:
      An :class:`EigenEstimate` (``min_eigenvalue`` is nan).
    """
    v = _random_unit(key, params)
    history, residual = [], np.inf

    for _ in range(num_iters):
        hv = _hvp_jit(loss_fn, params, batch, v)
        lam = float(optax.tree.vdot(v, hv))
        residual = float(optax.tree.norm(optax.tree.add_scale(hv, -lam, v)))
        residual /= max(abs(lam), np.finfo(np.float32).tiny)
        history.append(lam)
        if residual <= tol:
            break
        v = _unit(hv)

    return EigenEstimate(
        max_eigenvalue=history[-1],
        min_eigenvalue=np.nan,
        history=np.asarray(history),
        residual=residual,
        num_iters=len(history),
        converged=residual <= tol,
    )


@jax.jit
def _project_out(w: optax.Params, q: optax.Params) -> optax.Params:
    return optax.tree.add_scale(w, -optax.tree.vdot(q, w), q)


def _orthogonalize(w: optax.Params, basis: list) -> optax.Params:
    for _ in range(_REORTHOGONALIZATION_PASSES):
        for q in basis:
            w = _project_out(w, q)
    return w


def lanczos(
    loss_fn: LossFn,
    params: optax.Params,
    batch: Any,
    *,
    key: jax.Array,
    num_iters: int = 30,
    tol: float = 1e-3,
) -> EigenEstimate:
    """Extreme Hessian eigenvalues by Lanczos with full reorthogonalization.

    After ``k`` steps the Ritz values of the ``k x k`` tridiagonal matrix
    approximate the extreme eigenvalues; the residual of the top Ritz pair is
    ``beta_k |s_k|`` (the last component of its Ritz vector times the next
    off-diagonal), which needs no extra Hessian-vector product. The basis is
    kept in memory: ``num_iters`` copies of ``params``.

    Args:
      loss_fn: scalar loss ``loss_fn(params, batch)``.
      params: point at which the Hessian is taken.
      batch: data passed through to ``loss_fn``.
      key: PRNG key of the start vector.
      num_iters: most Hessian-vector products (>= 1).
      tol: stop when the relative residual of the top Ritz pair is below it.

    Returns:
      An :class:`EigenEstimate`.
    """
    basis = [_random_unit(key, params)]
    alphas, betas, history = [], [], []
    ritz, residual = np.array([np.nan]), np.inf

    for k in range(num_iters):
        w = _hvp_jit(loss_fn, params, batch, basis[k])
        alphas.append(float(optax.tree.vdot(basis[k], w)))
        w = _orthogonalize(w, basis)
        beta = float(optax.tree.norm(w))

        ritz, vectors = _tridiagonal_eigh(alphas, betas)
        residual = beta * abs(vectors[-1, -1]) / max(abs(ritz[-1]), 1e-30)
        history.append(ritz[-1])
        # A zero beta (invariant Krylov space: the Ritz values are exact)
        # gives a zero residual, so the loop stops before dividing by it.
        if residual <= tol:
            break
        betas.append(beta)
        basis.append(optax.tree.scale(1.0 / beta, w))

    return EigenEstimate(
        max_eigenvalue=float(ritz[-1]),
        min_eigenvalue=float(ritz[0]),
        history=np.asarray(history),
        residual=float(residual),
        num_iters=len(history),
        converged=residual <= tol,
    )


def _tridiagonal_eigh(alphas: list, betas: list) -> tuple[np.ndarray, np.ndarray]:
    t = np.diag(np.asarray(alphas, np.float64))
    off = np.asarray(betas, np.float64)
    t += np.diag(off, 1) + np.diag(off, -1)
    return np.linalg.eigh(t)


def hutchinson_trace(
    loss_fn: LossFn,
    params: optax.Params,
    batch: Any,
    *,
    key: jax.Array,
    num_samples: int = 100,
    chunk_size: int = 10,
) -> TraceEstimate:
    """Hessian trace by Hutchinson's estimator with Rademacher probes.

    ``E[v^T H v] = tr(H)`` for ``v`` with independent +-1 entries; the
    variance is ``2 sum_{i != j} H_ij^2``, so the estimate is exact for a
    diagonal Hessian. Probes are drawn on the host from a generator seeded
    by ``key`` and evaluated ``chunk_size`` at a time under ``jax.vmap``
    (the last chunk is drawn whole and cut, so every call has one shape).

    Args:
      loss_fn: scalar loss ``loss_fn(params, batch)``.
      params: point at which the Hessian is taken.
      batch: data passed through to ``loss_fn``.
      key: PRNG key of the probes.
      num_samples: number of probes (>= 2, for a standard error).
      chunk_size: probes per vectorized Hessian-vector product.

    Returns:
      A :class:`TraceEstimate`.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 for a stderr, got {num_samples=}")

    rng = _host_rng(key)
    chunks = []
    for _ in range(0, num_samples, chunk_size):
        probes = _rademacher_probes(rng, params, chunk_size)
        chunks.append(np.asarray(_quadratic_forms(loss_fn, params, batch, probes)))
    samples = np.concatenate(chunks)[:num_samples].astype(np.float64)

    running = np.cumsum(samples) / np.arange(1, num_samples + 1)
    stderr = samples.std(ddof=1) / np.sqrt(num_samples)
    return TraceEstimate(float(running[-1]), float(stderr), samples, running)


def to_json(estimate: EigenEstimate | TraceEstimate) -> dict:
    """Converts an estimate to plain JSON types (arrays become lists).

    Args:
      estimate: an :class:`EigenEstimate` or :class:`TraceEstimate`.

    Returns:
      A dict of floats, ints, bools and lists of floats.
    """
    out = {}
    for name, value in estimate._asdict().items():
        if isinstance(value, np.ndarray):
            out[name] = [float(x) for x in value]
        elif isinstance(value, bool | np.bool_):
            out[name] = bool(value)
        elif isinstance(value, int | np.integer):
            out[name] = int(value)
        else:
            out[name] = None if np.isnan(value) else float(value)
    return out


__all__ = [
    "EigenEstimate",
    "TraceEstimate",
    "hutchinson_trace",
    "hvp",
    "lanczos",
    "power_iteration",
    "to_json",
]
