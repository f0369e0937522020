"""Pure helpers for SAL's deformations: per-leaf RMS, leaf identities, noise draws."""

import zlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def is_deformable(leaf: Any) -> bool:
    """Returns whether a parameter leaf can be deformed (real floating point).

    Integer, boolean and complex leaves are never deformed: noise has no meaning
    for a step counter or a mask, and the paper only perturbs real weights.
    Leaves without a dtype (for example the placeholders that
    ``optax.tree.map_params`` passes to ``init``) are not deformable either.
    """
    if isinstance(leaf, float):
        return True
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return False
    return bool(jnp.issubdtype(dtype, jnp.floating))


def path_id(path: Sequence[Any]) -> int:
    """Returns a stable 31-bit identifier of a leaf's path in its tree.

    The identifier is folded into the noise key, so that two leaves (or two
    groups of ``optax.partition`` sharing one seed) never draw the same noise.
    CRC-32 of the path's string form is used instead of ``hash``, which Python
    salts per process: noise must be the same after a restart.
    """
    text = jax.tree_util.keystr(tuple(path))
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def leaf_rms(leaf: jax.Array) -> jax.Array:
    r"""Returns :math:`\sqrt{\mathrm{mean}(p^2)}` of a leaf in float32 (or wider).

    An empty leaf has RMS zero rather than the NaN of an empty mean.
    """
    dtype = jnp.promote_types(leaf.dtype, jnp.float32)
    if leaf.size == 0:
        return jnp.zeros((), dtype)
    return jnp.sqrt(jnp.mean(jnp.square(leaf.astype(dtype))))


def noise_std(
    leaf: jax.Array, relative_std: jax.Array, min_rms: float | jax.Array
) -> jax.Array:
    r"""Returns the absolute noise std of a leaf, as float32.

    .. math::
        \sigma = s \cdot \max(\mathrm{rms}(p), \mathrm{min\_rms})

    A non-finite :math:`\sigma` (a leaf that already holds inf or NaN) becomes
    zero, so a deformation never makes an update non-finite.
    """
    rms = leaf_rms(leaf).astype(jnp.float32)
    std = relative_std * jnp.maximum(rms, jnp.asarray(min_rms, jnp.float32))
    return jnp.where(jnp.isfinite(std), std, 0.0).astype(jnp.float32)


def standard_noise(
    event_key: jax.Array, leaf_id: int, shape: tuple[int, ...], dtype: Any
) -> jax.Array:
    """Draws standard normal noise for one leaf and one deformation event.

    Args:
      event_key: a typed PRNG key already specific to the event.
      leaf_id: the leaf's :func:`path_id`.
      shape: the leaf's shape.
      dtype: the leaf's dtype; noise is drawn in float32 or wider.

    Returns:
      An array of ``shape`` in ``promote_types(dtype, float32)``.
    """
    draw_dtype = jnp.promote_types(dtype, jnp.float32)
    return jax.random.normal(jax.random.fold_in(event_key, leaf_id), shape, draw_dtype)


def add_without_overflow(update: jax.Array, delta: jax.Array) -> jax.Array:
    """Adds ``delta`` to ``update`` in the update's dtype, never creating inf/NaN.

    An element that was finite and would stop being finite (a float16 update
    near its largest value, say) keeps its old value instead.
    """
    deformed = update + delta.astype(update.dtype)
    return jnp.where(jnp.isfinite(deformed) | ~jnp.isfinite(update), deformed, update)
