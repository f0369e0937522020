"""``find_state``: the ``SALState`` inside any (wrapped) optimizer state."""

from typing import Any

import jax

from sal_optax._sal import SALState


def find_state(opt_state: Any) -> SALState:
    """Returns the single :class:`SALState` inside an optimizer state.

    Works through any nesting of Optax wrappers (``chain``, ``named_chain``,
    ``MultiSteps``, ``inject_hyperparams``, ``masked``, ``partition``, ...),
    since all of them keep their inner states as pytree children.

    Args:
      opt_state: the state returned by ``init`` or ``update`` of an optimizer
        that contains one ``sal``.

    Returns:
      The ``SALState``; read its ``stress``, ``num_elastic``,
      ``num_spring_back`` and ``num_plastic`` fields for logging.

    Raises:
      ValueError: if the state holds no ``SALState`` or more than one (for
        example one per group of ``optax.partition``).

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> import sal_optax
      >>> tx = optax.chain(optax.adam(1e-3), sal_optax.sal())
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> print(int(sal_optax.find_state(state).stress))
      0
    """
    found = [
        node
        for node in jax.tree.leaves(
            opt_state, is_leaf=lambda node: isinstance(node, SALState)
        )
        if isinstance(node, SALState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"`opt_state` must contain exactly one SALState, found {len(found)}. "
            "With several sal transformations (one per optax.partition group, "
            "say), pick the group's state first, e.g. "
            "`find_state(state.inner_states['group'])`."
        )
    return found[0]
