"""Checks of ``sal``'s static arguments, and the normalisation of its key."""

import math
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

INT32_MAX = int(np.iinfo(np.int32).max)


def _concrete(value: Any) -> np.ndarray | None:
    """Returns ``value`` as a NumPy array, or None while it is being traced.

    ``optax.inject_hyperparams`` calls the factory again inside the jitted
    update with traced hyperparameters: those were checked when ``init`` called
    it with concrete values, so they are skipped here.
    """
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def check_int(name: str, value: Any, *, minimum: int) -> None:
    """Raises ``ValueError`` unless ``value`` is an integer >= ``minimum``."""
    array = _concrete(value)
    if array is None:
        return
    if isinstance(value, bool) or array.dtype.kind not in "iu" or array.ndim != 0:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}, got {name}={value!r}."
        )
    if int(array) < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {name}={value!r}.")
    # The state holds counters as int32, which larger values would overflow.
    if int(array) > INT32_MAX:
        raise ValueError(
            f"`{name}` must be <= {INT32_MAX} (an int32 counter), got {name}={value!r}."
        )


def check_real(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite real number >= 0."""
    array = _concrete(value)
    if array is None:
        return
    if isinstance(value, bool) or array.dtype.kind not in "iuf" or array.ndim != 0:
        raise ValueError(f"`{name}` must be a real number >= 0, got {name}={value!r}.")
    if not math.isfinite(float(array)) or float(array) < 0:
        raise ValueError(f"`{name}` must be finite and >= 0, got {name}={value!r}.")


def check_order(name: str, value: Any, lower_name: str, lower: Any) -> None:
    """Raises ``ValueError`` unless ``value >= lower`` (when both are concrete)."""
    array, lower_array = _concrete(value), _concrete(lower)
    if array is None or lower_array is None:
        return
    if int(array) < int(lower_array):
        raise ValueError(
            f"`{name}` must be >= `{lower_name}` ({lower_name}={lower!r}), "
            f"got {name}={value!r}."
        )


def check_bool(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a boolean."""
    array = _concrete(value)
    if array is None:
        return
    if array.dtype != np.bool_ or array.ndim != 0:
        raise ValueError(f"`{name}` must be True or False, got {name}={value!r}.")


def check_axis_name(axis_name: Any) -> None:
    """Raises ``ValueError`` unless ``axis_name`` is None or a hashable name."""
    if axis_name is None:
        return
    if not isinstance(axis_name, Hashable) or isinstance(axis_name, bool | int | float):
        raise ValueError(
            "`axis_name` must be None or the name of a mapped axis (a string), "
            f"got axis_name={axis_name!r}."
        )


def key_data(key: Any) -> tuple[jax.Array, Any]:
    """Returns the raw key data of ``key`` and the PRNG implementation it uses.

    The state stores raw uint32 data rather than a typed key: raw data
    checkpoints with Orbax and survives wrappers that do arithmetic on states.

    Args:
      key: an int seed, a typed key (``jax.random.key``) or a raw key
        (``jax.random.PRNGKey``).

    Returns:
      ``(data, impl)``: uint32 key data and the implementation to re-wrap it.

    Raises:
      ValueError: if ``key`` is none of the accepted forms.
    """
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.ndim != 0:
            raise ValueError(
                f"`key` must be a single key, got an array of {key.shape[0]}"
                f" keys of shape {key.shape}: key={key!r}."
            )
        return jax.random.key_data(key), jax.random.key_impl(key)

    if isinstance(key, bool):
        raise ValueError(f"`key` must be an int seed or a PRNG key, got key={key!r}.")
    if isinstance(key, int | np.integer):
        seed = int(key)
        if not -(2**63) <= seed < 2**63:
            raise ValueError(
                f"`key` must be an int seed in [-2**63, 2**63), got key={key!r}."
            )
        if jax.config.jax_default_prng_impl == "threefry2x32":
            # The data jax.random.key(seed) holds with x64 on. Without x64 it
            # keeps the low 32 bits, and 2**40 would draw seed 0's noise. Built
            # with numpy: the factory may run inside a trace (inject_hyperparams),
            # where turning x64 on for a moment would trace int64 operations.
            bits = seed % 2**64
            data = np.array([bits >> 32, bits & 0xFFFFFFFF], dtype=np.uint32)
            return jnp.asarray(data), "threefry2x32"
        # TODO(sal-optax): other implementations keep only a seed's low 32 bits
        # without x64, as jax.random.key does; pass a typed key to use more.
        typed = jax.random.key(seed)
        return jax.random.key_data(typed), jax.random.key_impl(typed)

    if isinstance(key, jax.core.Tracer):
        # Re-created by inject_hyperparams inside a jitted update: only init's
        # copy of the key is ever used, so any well-formed placeholder will do.
        if jnp.issubdtype(key.dtype, jnp.integer) and key.ndim == 0:
            return jax.random.key_data(jax.random.key(key)), None
        return key.astype(jnp.uint32), None

    array = np.asarray(key) if isinstance(key, np.ndarray | jax.Array) else None
    if array is not None and array.ndim == 0 and array.dtype.kind in "iu":
        return key_data(int(array))
    message = (
        "`key` must be an int seed, a typed key (jax.random.key) or a raw "
        "uint32 key of the default PRNG implementation (jax.random.PRNGKey: "
        f"uint32[2] for threefry), got key={key!r}."
    )
    if array is None or array.dtype != np.uint32 or array.ndim != 1:
        raise ValueError(message)
    # A raw key is what jax.random.PRNGKey makes: data of the default
    # implementation (threefry unless jax_default_prng_impl says otherwise).
    try:
        typed = jax.random.wrap_key_data(jnp.asarray(array))
    except (TypeError, ValueError) as error:
        raise ValueError(message) from error
    return jax.random.key_data(typed), jax.random.key_impl(typed)
