"""``apply_gradients``: a Flax Linen ``TrainState`` step that forwards the loss."""

from typing import Any

import jax
import optax

from sal_optax._sal import MISSING_VALUE_MESSAGE


def apply_gradients(
    state: Any,
    *,
    grads: optax.Updates,
    value: jax.typing.ArrayLike | None = None,
    accuracy: jax.typing.ArrayLike | None = None,
    **replacements: Any,
) -> Any:
    """Applies one optimizer step to a Linen ``TrainState``, passing ``value``.

    ``flax.training.train_state.TrainState.apply_gradients`` calls
    ``tx.update(grads, opt_state, params)`` without extra arguments, so ``sal``
    would never see the loss. This function does the same step with
    ``value=`` (and ``accuracy=``) forwarded. It needs nothing from Flax
    itself: any state with ``step``, ``params``, ``tx``, ``opt_state`` and a
    ``replace`` method works.

    Args:
      state: a ``flax.training.train_state.TrainState`` (or subclass).
      grads: gradients with the structure of ``state.params``.
      value: the training loss of this step (lower is better); required.
      accuracy: optional score of this step (higher is better).
      **replacements: other fields to replace, as in ``TrainState.replace``
        (``batch_stats=...``, say).

    Returns:
      The new state, with ``step`` incremented.

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> import sal_optax
      >>> from flax.training import train_state
      >>> state = train_state.TrainState.create(
      ...     apply_fn=None, params={"w": jnp.ones(2)},
      ...     tx=optax.chain(optax.sgd(0.1), sal_optax.sal()))
      >>> state = sal_optax.apply_gradients(
      ...     state, grads={"w": jnp.ones(2)}, value=0.5)
      >>> print(int(state.step))
      1
    """
    if value is None:
        raise TypeError(MISSING_VALUE_MESSAGE)
    updates, opt_state = state.tx.update(
        grads, state.opt_state, state.params, value=value, accuracy=accuracy
    )
    return state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        **replacements,
    )
