"""Pure helpers for SAL's deformations: per-leaf RMS, leaf identities, noise draws."""

import zlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


def noise_dtype(dtype: Any) -> jnp.dtype:
    """Returns the dtype noise is drawn in for a leaf: float32, or float64 if wider.

    Chosen by size rather than with ``jnp.promote_types``, which refuses to mix
    float16 and float32 under strict dtype promotion.
    """
    return jnp.dtype(jnp.float64 if jnp.dtype(dtype).itemsize > 4 else jnp.float32)


def leaf_rms(leaf: jax.Array) -> jax.Array:
    r"""Returns :math:`\sqrt{\mathrm{mean}(p^2)}` of a leaf in float32 (or wider).

    The leaf is divided by its largest magnitude before squaring, so a float32
    leaf of magnitude 1e20 has a finite RMS instead of an overflowed one. An
    empty leaf has RMS zero rather than the NaN of an empty mean.
    """
    dtype = noise_dtype(leaf.dtype)
    if leaf.size == 0:
        return jnp.zeros((), dtype)
    values = leaf.astype(dtype)
    peak = jnp.max(jnp.abs(values))
    safe_peak = jnp.where(peak > 0, peak, 1.0).astype(dtype)
    return safe_peak * jnp.sqrt(jnp.mean(jnp.square(values / safe_peak)))


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


def tree_id(paths: Sequence[Sequence[Any]]) -> int:
    """Returns a stable 31-bit identifier of a set of leaf paths.

    Two trees with different paths (the groups of ``optax.partition`` or two
    ``optax.masked`` copies) get different identifiers, hence different noise
    from the same key. CRC-32 is used instead of ``hash``, which Python salts
    per process: the noise must be the same after a restart.
    """
    text = "|".join(jax.tree_util.keystr(tuple(path)) for path in paths)
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def standard_noise(
    event_key: jax.Array, paths: Sequence[Sequence[Any]], leaves: Sequence[jax.Array]
) -> list[jax.Array]:
    """Draws independent standard normal noise shaped like each leaf.

    One draw per distinct noise dtype covers all leaves (each gets its own
    slice): per-leaf draws give the same distribution but make XLA compile one
    random-number kernel per leaf, which took a minute for a ResNet-18 on CPU.
    The key is folded with :func:`tree_id` of the leaves' paths, so the noise
    depends on the key, the event and where the leaves sit in the tree.

    Args:
      event_key: a typed PRNG key already specific to the event.
      paths: the paths of the leaves in their tree.
      leaves: arrays (or shape-dtype structs); noise is drawn in float32 or
        wider (:func:`noise_dtype`).

    Returns:
      One array per leaf, of the leaf's shape and the noise dtype.
    """
    key = jax.random.fold_in(event_key, tree_id(paths))
    draw_dtypes = [noise_dtype(leaf.dtype) for leaf in leaves]
    noise: list[jax.Array | None] = [None] * len(leaves)
    for group, dtype in enumerate(sorted(set(draw_dtypes), key=str)):
        members = [i for i, d in enumerate(draw_dtypes) if d == dtype]
        sizes = [leaves[i].size for i in members]
        flat = jax.random.normal(jax.random.fold_in(key, group), (sum(sizes),), dtype)
        offsets = np.cumsum([0, *sizes])
        for i, start, stop in zip(members, offsets[:-1], offsets[1:], strict=True):
            noise[i] = flat[start:stop].reshape(leaves[i].shape)
    return noise  # type: ignore[return-value]


def add_without_overflow(update: jax.Array, delta: jax.Array) -> jax.Array:
    """Adds ``delta`` to ``update`` in the update's dtype, never creating inf/NaN.

    An element that was finite and would stop being finite (a float16 update
    near its largest value, say) keeps its old value instead.
    """
    deformed = update + delta.astype(update.dtype)
    return jnp.where(jnp.isfinite(deformed) | ~jnp.isfinite(update), deformed, update)
