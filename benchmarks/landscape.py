"""Loss landscapes: slices of a loss along filter-normalized random directions.

Follows Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS
2018 (https://arxiv.org/abs/1712.09913): a Gaussian direction is rescaled
filter by filter to the norm of the matching filter of the weights, so that
the slice is comparable between networks whose weights have different scales.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

MetricFn = Callable[[optax.Params, Any], Any]

# Points of the grid evaluated in one vectorized call: large enough to keep
# both CPU cores busy, small enough that the activations fit in memory.
_GRID_CHUNK = 16
# Low enough that a run's figures stay small in git.
_DPI = 80


@functools.partial(jax.jit, static_argnums=0)
def _evaluate_plane(metric_fn: MetricFn, params, batch, d1, d2, grid: jax.Array):
    # metric_fn is static so that models of one architecture share one compile.
    def at(ab):
        moved = optax.tree.add_scale(optax.tree.add_scale(params, ab[0], d1), ab[1], d2)
        return metric_fn(moved, batch)

    return jax.lax.map(at, grid, batch_size=_GRID_CHUNK)


def filter_normalized_direction(key: jax.Array, params: optax.Params) -> optax.Params:
    """Draws a Gaussian direction normalized filter by filter to ``params``.

    A filter is one output unit: the last axis of a Flax ``Dense`` or ``Conv``
    kernel. Leaves with fewer than two dimensions (biases, normalization
    scales) get a zero direction, as in Li et al.'s ``ignore='biasbn'``.
    Leaves are drawn from ``key`` by their position in the tree, so two
    models with the same architecture get the same raw Gaussian draw.

    Args:
      key: PRNG key.
      params: weights that set the norm of each filter.

    Returns:
      A direction shaped like ``params``.
    """
    raw = optax.tree.random_like(key, params, jax.random.normal)

    def normalize(d, w):
        if w.ndim < 2:
            return jnp.zeros_like(w)
        axes = tuple(range(w.ndim - 1))
        d_norm = jnp.sqrt(jnp.sum(d**2, axis=axes, keepdims=True))
        w_norm = jnp.sqrt(jnp.sum(w**2, axis=axes, keepdims=True))
        return d * w_norm / jnp.maximum(d_norm, 1e-12)

    return jax.tree.map(normalize, raw, params)


def slice_2d(
    metric_fn: MetricFn,
    params: optax.Params,
    batch: Any,
    directions: tuple[optax.Params, optax.Params],
    alphas: Sequence[float],
    betas: Sequence[float],
) -> Any:
    """Evaluates ``metric_fn`` on the plane ``params + a d1 + b d2``.

    Args:
      metric_fn: ``metric_fn(params, batch)`` returning a scalar or a pytree
        of scalars (for example a dict with loss and accuracy).
      params: centre of the plane.
      batch: data passed through to ``metric_fn``.
      directions: the two directions ``(d1, d2)``, shaped like ``params``.
      alphas: coefficients of ``d1`` (rows of the result).
      betas: coefficients of ``d2`` (columns of the result).

    Returns:
      The output pytree of ``metric_fn`` with each leaf a float64 numpy array
      of shape ``(len(alphas), len(betas))``.
    """
    a, b = np.meshgrid(np.asarray(alphas), np.asarray(betas), indexing="ij")
    coords = jnp.asarray(np.stack([a.ravel(), b.ravel()], axis=1), jnp.float32)

    values = _evaluate_plane(metric_fn, params, batch, *directions, coords)
    return jax.tree.map(lambda v: np.asarray(v, np.float64).reshape(a.shape), values)


def slice_1d(
    metric_fn: MetricFn,
    params: optax.Params,
    batch: Any,
    direction: optax.Params,
    alphas: Sequence[float],
) -> Any:
    """Evaluates ``metric_fn`` on the line ``params + a d``.

    Args:
      metric_fn: ``metric_fn(params, batch)`` returning a scalar or a pytree.
      params: centre of the line.
      batch: data passed through to ``metric_fn``.
      direction: direction shaped like ``params``.
      alphas: coefficients of ``direction``.

    Returns:
      The output pytree of ``metric_fn`` with float64 leaves of shape
      ``(len(alphas),)``.
    """
    zero = optax.tree.zeros_like(direction)
    values = slice_2d(metric_fn, params, batch, (direction, zero), alphas, [0.0])
    return jax.tree.map(lambda v: v[:, 0], values)


def plot_surfaces(
    surfaces: Mapping[str, np.ndarray],
    alphas: np.ndarray,
    betas: np.ndarray,
    path: str,
    *,
    zlabel: str = "train loss",
    log: bool = True,
) -> None:
    """Draws each 2D slice as a 3D surface above its contour plot.

    All panels share one color scale and one z range, so that the surfaces of
    different methods can be compared by eye.

    Args:
      surfaces: name to array of shape ``(len(alphas), len(betas))``.
      alphas: coefficients of the first direction.
      betas: coefficients of the second direction.
      path: PNG file to write.
      zlabel: name of the plotted quantity.
      log: plot ``log10`` of the values: a loss spans orders of magnitude
        between the minimum and the edges of the plane.
    """
    if log:
        surfaces = {k: np.log10(np.maximum(z, 1e-12)) for k, z in surfaces.items()}
        zlabel = f"log10 {zlabel}"
    lo = min(float(np.min(z)) for z in surfaces.values())
    hi = max(float(np.max(z)) for z in surfaces.values())
    levels = np.linspace(lo, hi, 21)
    a, b = np.meshgrid(alphas, betas, indexing="ij")
    n = len(surfaces)
    fig = plt.figure(figsize=(3.6 * n + 1.0, 6.8), layout="constrained")

    for i, (name, z) in enumerate(surfaces.items()):
        ax = fig.add_subplot(2, n, i + 1, projection="3d")
        ax.plot_surface(a, b, z, cmap="viridis", vmin=lo, vmax=hi, linewidth=0)
        ax.set(title=name, zlim=(lo, hi), xlabel="d1", ylabel="d2")
        ax = fig.add_subplot(2, n, n + i + 1)
        filled = ax.contourf(a, b, z, levels=levels, cmap="viridis")
        ax.contour(a, b, z, levels=levels, colors="k", linewidths=0.3)
        ax.plot(0, 0, "r+")
        ax.set(xlabel="d1", ylabel="d2", aspect="equal")

    fig.colorbar(filled, ax=fig.axes, shrink=0.6, label=zlabel)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def plot_lines(
    lines: Mapping[str, np.ndarray],
    alphas: np.ndarray,
    path: str,
    *,
    ylabel: str = "loss",
) -> None:
    """Draws 1D slices, one curve per name, on shared axes.

    Args:
      lines: name (e.g. ``"sal train"``) to array of shape ``(len(alphas),)``.
      alphas: coefficients of the direction.
      path: PNG file to write.
      ylabel: name of the plotted quantity.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, values in lines.items():
        ax.plot(alphas, values, label=name, ls="--" if "test" in name else "-")
    ax.set(xlabel="step along filter-normalized direction", ylabel=ylabel)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
