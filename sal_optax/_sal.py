"""The ``sal`` transformation: stress tracking and elastic/plastic deformation."""

from collections.abc import Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sal_optax import _noise
from sal_optax._validation import (
    check_axis_name,
    check_bool,
    check_int,
    check_order,
    check_real,
    key_data,
)

MISSING_VALUE_MESSAGE = (
    "sal needs the training loss of this step: call "
    "`tx.update(updates, state, params, value=loss)` (and optionally "
    "`accuracy=acc`). With flax NNX: `optimizer.update(model, grads, value=loss)`; "
    "with a Linen TrainState: `sal_optax.apply_gradients(state, grads=grads, "
    "value=loss)`."
)

MISSING_PARAMS_MESSAGE = (
    "sal needs `params` to size its noise (each leaf's RMS): call "
    "`tx.update(updates, state, params, value=loss)`, got params=None."
)


class SALState(NamedTuple):
    """State of :func:`sal`: stagnation counters, group buffers, key, pending event."""

    stress: jax.Array  # int32[]: evaluations without improvement since the reset.
    cooldown_left: jax.Array  # int32[]: evaluations in which stress may not grow.
    num_elastic: jax.Array  # int32[]: elastic deformations so far.
    num_spring_back: jax.Array  # int32[]: elastic deformations reverted so far.
    num_plastic: jax.Array  # int32[]: plastic deformations so far.
    group_step: jax.Array  # int32[]: steps already seen in the current group.
    group_value_count: jax.Array  # int32[]: finite values in the current group.
    group_accuracy_count: jax.Array  # int32[]: finite accuracies in the group.
    group_value_sum: jax.Array  # float32[]: the group's finite values, summed scaled.
    group_accuracy_sum: jax.Array  # float32[]: same for its finite accuracies.
    best_loss: jax.Array  # float32[]: best group mean of `value` (+inf: none).
    best_accuracy: jax.Array  # float32[]: best group mean of `accuracy` (-inf: none).
    noise_key: jax.Array  # uint32[k]: raw key data; fixed, events are folded in.
    elastic_pending: jax.Array  # int32[]: 1 while an elastic deformation is on trial.
    elastic_std: jax.Array  # float32[n]: its noise std, per deformable leaf.


class _Decision(NamedTuple):
    """What one step decides, before any noise is drawn (all scalars)."""

    spring_back: jax.Array  # bool: revert the pending elastic deformation now.
    elastic: jax.Array  # bool: start a new elastic deformation now.
    plastic: jax.Array  # bool: apply a plastic deformation now.
    relative_std: jax.Array  # float32: noise std of the new deformation, or 0.


def _sum_scale(accumulation_steps: Any, axis_name: Hashable | None) -> jax.Array:
    r"""Returns :math:`2^{-k}` with :math:`2^k` above the values a group can sum.

    A group sums up to ``accumulation_steps`` values on each replica. Each is
    multiplied by :math:`2^{-k}` first, so their sum stays within float32's
    range even when every value is near its largest, and the mean of finite
    values is finite, as rule 1 wants. Scaling by a power of two is exact, so
    the mean is bit for bit the plain ``sum / count`` wherever that does not
    overflow. ``accumulation_steps`` may be traced (``inject_hyperparams``).

    .. warning::
      Values of magnitude below :math:`2^{k-126}` (about ``1e-35`` for one
      evaluation per 100 steps) lose precision to float32's subnormals.
    """
    replicas = 1 if axis_name is None else jax.lax.axis_size(axis_name)
    limit = jnp.asarray(accumulation_steps, jnp.float32) * replicas
    _, k = jnp.frexp(limit)  # limit < 2**k exactly, with integer arithmetic.
    return jnp.ldexp(jnp.float32(1.0), -k)


def _finite_sum(
    x: jax.Array, axis_name: Hashable | None, scale: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Returns the scaled sum and the count of ``x``'s finite entries over replicas.

    Summing finite values and counts separately (instead of averaging) keeps one
    replica's NaN from poisoning the decision that every replica must share.
    """
    finite = jnp.isfinite(x)
    total = jnp.where(finite, x, 0.0) * scale
    count = finite.astype(jnp.int32)
    if axis_name is not None:
        total = jax.lax.psum(total, axis_name)
        count = jax.lax.psum(count, axis_name)
    return total, count


def _as_metric(name: str, x: Any) -> jax.Array:
    """Converts ``value`` or ``accuracy`` to a float32 scalar, or raises."""
    try:
        array = jnp.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be a real number, got {x!r}.") from error
    real = jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(
        array.dtype, jnp.floating
    )
    if not real:
        raise TypeError(f"`{name}` must be a real number, got dtype {array.dtype}.")
    if array.ndim != 0:
        raise ValueError(
            f"`{name}` must be a scalar (a mean over the batch), "
            f"got an array of shape {array.shape}."
        )
    return array.astype(jnp.float32)


def _group_mean(total: jax.Array, count: jax.Array, scale: jax.Array) -> jax.Array:
    """Mean of a group's finite entries; 0 for an empty group (never used then).

    ``total`` is the sum scaled by ``scale`` (see :func:`_sum_scale`); the mean
    is scaled back after the division, when it can no longer overflow. The
    count is cast to float32 explicitly: strict dtype promotion never mixes
    int32 and float32.
    """
    mean = total / jnp.maximum(count, 1).astype(jnp.float32)
    return mean / scale


def _improves(
    mean: jax.Array, best: jax.Array, rtol: Any, atol: Any, *, higher_is_better: bool
) -> jax.Array:
    r"""Returns whether ``mean`` improves on ``best`` by more than the threshold.

    .. math::
        \mathrm{improved} = L < L^* - \max(\mathrm{atol}, \mathrm{rtol}\,|L^*|)

    (mirrored for accuracy). An infinite ``best`` (nothing recorded yet) is
    beaten by any finite ``mean``; ``inf - inf`` is never evaluated.
    """
    known = jnp.isfinite(best)
    safe_best = jnp.where(known, best, 0.0)
    threshold = jnp.maximum(
        jnp.asarray(atol, jnp.float32),
        jnp.asarray(rtol, jnp.float32) * jnp.abs(safe_best),
    )
    if higher_is_better:
        beats = mean > safe_best + threshold
    else:
        beats = mean < safe_best - threshold
    return jnp.where(known, beats, True)


def _num_deformable(params: Any) -> int:
    """Returns how many leaves of ``params`` can be deformed."""
    return sum(_noise.is_deformable(leaf) for leaf in jax.tree.leaves(params))


def _decide(
    state: SALState,
    mean_value: jax.Array,
    has_value: jax.Array,
    mean_accuracy: jax.Array,
    has_accuracy: jax.Array,
    hyper: dict[str, Any],
) -> tuple[SALState, _Decision]:
    """Applies rules 2-5 of the trigger arithmetic to one evaluated group.

    Returns the state after the evaluation (group buffers untouched) and the
    deformations to apply; the caller keeps the old state for skipped groups.
    """
    improved_loss = has_value & _improves(
        mean_value,
        state.best_loss,
        hyper["rtol"],
        hyper["atol"],
        higher_is_better=False,
    )
    improved_accuracy = has_accuracy & _improves(
        mean_accuracy,
        state.best_accuracy,
        hyper["rtol"],
        hyper["atol"],
        higher_is_better=True,
    )
    improved = improved_loss | improved_accuracy

    pending = state.elastic_pending > 0
    spring_back = pending & ~improved & jnp.asarray(hyper["spring_back"])

    cooling = ~improved & (state.cooldown_left > 0)
    stress = jnp.where(improved, 0, jnp.where(cooling, state.stress, state.stress + 1))
    cooldown_left = jnp.where(cooling, state.cooldown_left - 1, state.cooldown_left)

    plastic = stress >= hyper["yield_stress"]
    elastic = ~plastic & (stress >= hyper["patience"])
    growth = (stress - hyper["patience"] + 1).astype(jnp.float32)
    relative_std = jnp.where(
        plastic,
        jnp.asarray(hyper["plastic_scale"], jnp.float32),
        jnp.where(
            elastic, jnp.asarray(hyper["noise_scale"], jnp.float32) * growth, 0.0
        ),
    )

    best_loss = jnp.where(improved_loss, mean_value, state.best_loss)
    best_accuracy = jnp.where(improved_accuracy, mean_accuracy, state.best_accuracy)
    evaluated = state._replace(
        stress=jnp.where(plastic, 0, stress).astype(jnp.int32),
        cooldown_left=jnp.where(plastic, hyper["cooldown"], cooldown_left).astype(
            jnp.int32
        ),
        num_elastic=state.num_elastic + elastic.astype(jnp.int32),
        num_spring_back=state.num_spring_back + spring_back.astype(jnp.int32),
        num_plastic=state.num_plastic + plastic.astype(jnp.int32),
        best_loss=jnp.where(plastic, jnp.inf, best_loss).astype(jnp.float32),
        best_accuracy=jnp.where(plastic, -jnp.inf, best_accuracy).astype(jnp.float32),
        elastic_pending=elastic.astype(jnp.int32),
    )
    return evaluated, _Decision(spring_back, elastic, plastic, relative_std)


def _event_key(noise_key: jax.Array, impl: Any, event_index: jax.Array) -> jax.Array:
    """Returns the typed key of the deformation numbered ``event_index``."""
    key = jax.random.wrap_key_data(noise_key, impl=impl)
    return jax.random.fold_in(key, event_index)


def _deform(
    updates: optax.Updates,
    params: optax.Params,
    state: SALState,
    decision: _Decision,
    min_rms: Any,
    impl: Any,
) -> tuple[optax.Updates, jax.Array]:
    """Adds the new deformation (and subtracts a reverted one) to the updates.

    Returns the deformed updates and the per-leaf noise std to keep pending.
    Spring-back regenerates the pending noise from the key, the event number
    and the stored per-leaf std: the state never holds a copy of the noise.
    """
    # A None update (a frozen leaf, or an integer one some optimizers skip) is
    # kept as a leaf here, so that ``params`` still lines up with ``updates``.
    update_leaves, treedef = jax.tree_util.tree_flatten_with_path(
        updates, is_leaf=lambda x: x is None
    )
    try:
        param_leaves = treedef.flatten_up_to(params)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`params` must have the tree structure of the updates (a None update "
            f"may stand for a whole leaf): got params {jax.tree.structure(params)} "
            f"for updates {treedef}."
        ) from error
    slots = [
        i
        for i, ((_, update), param) in enumerate(
            zip(update_leaves, param_leaves, strict=True)
        )
        if update is not None and _noise.is_deformable(param)
    ]
    paths = [update_leaves[i][0] for i in slots]
    targets = [update_leaves[i][1] for i in slots]
    num_events = state.num_elastic + state.num_plastic
    new_key = _event_key(state.noise_key, impl, num_events)
    old_key = _event_key(state.noise_key, impl, num_events - 1)

    stds = [
        _noise.noise_std(param_leaves[i], decision.relative_std, min_rms) for i in slots
    ]
    new_noise = _noise.standard_noise(new_key, paths, targets)
    deltas = [std.astype(z.dtype) * z for std, z in zip(stds, new_noise, strict=True)]

    def spring_back(deltas):
        old_noise = _noise.standard_noise(old_key, paths, targets)
        return [
            delta - state.elastic_std[slot].astype(z.dtype) * z
            for slot, (delta, z) in enumerate(zip(deltas, old_noise, strict=True))
        ]

    deltas = jax.lax.cond(decision.spring_back, spring_back, lambda d: d, deltas)
    leaves = [leaf for _, leaf in update_leaves]
    for slot, delta in zip(slots, deltas, strict=True):
        leaves[slot] = _noise.add_without_overflow(leaves[slot], delta)

    # Leaves without an update take no slot, so the stds may be fewer than the
    # state's deformable leaves: the rest of the vector stays zero.
    elastic_std = jnp.zeros_like(state.elastic_std)
    if stds:
        elastic_std = elastic_std.at[: len(stds)].set(jnp.stack(stds))
    elastic_std = jnp.where(decision.elastic, elastic_std, 0.0).astype(jnp.float32)
    return jax.tree_util.tree_unflatten(treedef, leaves), elastic_std


def sal(
    *,
    patience: int = 1,
    yield_stress: int = 3,
    noise_scale: float = 0.02,
    plastic_scale: float = 0.05,
    accumulation_steps: int = 1,
    rtol: float = 0.05,
    atol: float = 1e-4,
    cooldown: int = 0,
    spring_back: bool = True,
    min_rms: float = 1e-3,
    axis_name: Hashable | None = None,
    key: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
    r"""Stress-Aware Learning: deforms the model when training stagnates.

    Steps are grouped into evaluations of ``accumulation_steps`` steps (one
    epoch, say). At the end of each group, with :math:`L` the mean of its
    finite ``value`` s and :math:`A` the mean of its finite ``accuracy`` s,
    the group improves when

    .. math::
        L < L^* - \max(\mathrm{atol}, \mathrm{rtol}\,|L^*|)
        \quad\text{or}\quad
        A > A^* + \max(\mathrm{atol}, \mathrm{rtol}\,|A^*|),

    where :math:`L^*` and :math:`A^*` are the best means so far. A group with
    no finite ``value`` is skipped: nothing but the group buffers changes. The stress
    :math:`\sigma` is reset to 0 by an improvement, and otherwise grows by one
    (or, during a cooldown, consumes one cooldown evaluation). Then

    .. math::
        \text{plastic if } \sigma \ge \sigma_y, \qquad
        \text{elastic if } \sigma_p \le \sigma < \sigma_y,

    with :math:`\sigma_p` = ``patience`` and :math:`\sigma_y` = ``yield_stress``.
    A deformation adds to each real floating-point leaf :math:`p` of the
    parameters the noise :math:`\mathcal{N}(0, (s \max(\mathrm{rms}(p),
    \mathrm{min\_rms}))^2)`, with relative std
    :math:`s = \mathrm{noise\_scale}\,(\sigma - \sigma_p + 1)` for an elastic
    deformation and :math:`s = \mathrm{plastic\_scale}` for a plastic one. An
    elastic deformation is on trial until the next evaluation: if that one does
    not improve, the same noise is subtracted again (spring-back). A plastic
    deformation is permanent, releases the stress, resets :math:`L^*` and
    :math:`A^*` (the deformed model is the new reference) and starts a cooldown.

    Placed last in a chain, ``optax.chain(optax.adam(1e-3), sal())``, the noise
    moves the parameters themselves (the paper's mechanism). Placed first, it
    perturbs the gradient that the base optimizer then rescales.

    The defaults come from a validation sweep on the main job (MNIST-1D, a 1-D
    CNN, Adam, one evaluation per epoch): among the settings that deformed
    the model at all, they scored best on the validation split. The evidence,
    including that they did not beat plain Adam there, is in the "Main job"
    section of ``benchmarks/RESULTS.md``. They assume one evaluation per epoch:
    set ``accumulation_steps`` to the number of steps per epoch.

    Args:
      patience: stress at which elastic deformation starts (>= 1).
      yield_stress: stress of plastic deformation (>= ``patience``).
      noise_scale: elastic noise std relative to each leaf's RMS, at stress =
        ``patience``; it grows linearly with the stress (>= 0).
      plastic_scale: plastic noise std relative to each leaf's RMS (>= 0).
      accumulation_steps: steps averaged into one evaluation, e.g. the number of
        steps per epoch (>= 1).
      rtol: relative improvement threshold (>= 0).
      atol: absolute improvement threshold (>= 0).
      cooldown: evaluations after a plastic deformation in which the stress
        does not grow (>= 0).
      spring_back: whether an elastic deformation that did not help is
        reverted.
      min_rms: floor for a leaf's RMS, so zero-initialised leaves (biases) still
        get noise (>= 0).
      axis_name: if given, ``value`` and ``accuracy`` are averaged over this
        mapped axis (``pmap``, ``shard_map``), so that all replicas take the
        same decisions and draw the same noise.
      key: seed of the noise: an int, a typed key (``jax.random.key``) or a raw
        key (``jax.random.PRNGKey``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes
      ``value=`` (required: the training loss of the step, lower is better) and
      ``accuracy=`` (optional: a score, higher is better).

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> import sal_optax
      >>> params = {"w": jnp.ones(3)}
      >>> tx = optax.chain(optax.sgd(0.1), sal_optax.sal(patience=2, yield_stress=4))
      >>> state = tx.init(params)
      >>> update = jax.jit(tx.update)
      >>> for _ in range(10):  # a loss that never improves
      ...   grads = {"w": jnp.zeros(3)}
      ...   updates, state = update(grads, state, params, value=1.0)
      ...   params = optax.apply_updates(params, updates)
      >>> counters = sal_optax.find_state(state)
      >>> print(int(counters.num_elastic), int(counters.num_spring_back),
      ...       int(counters.num_plastic))
      4 4 2

    References:
      Shakarami et al., `Stress-Aware Resilient Neural Training
      <https://arxiv.org/abs/2508.00098>`_, arXiv 2508.00098, 2025.

    .. warning::
      Inside ``optax.MultiSteps``, ``sal`` only runs on the steps that emit an
      update: it sees the ``value`` of those steps alone, and its counters
      (``accumulation_steps`` included) advance once per emitted step.

      A spring-back subtracts exactly the noise that was added, but parameters
      in bfloat16 or float16 round after each addition, so they return to within
      a rounding step of where they were, not always bit for bit.

      Under ``optax.inject_hyperparams`` the injected values are traced inside
      a jitted update, so they cannot be checked: a negative ``noise_scale``
      or a ``patience`` of 0 set there is used as it is. ``key`` is read once,
      by ``init``; injecting another key later changes nothing.

      A leaf that holds inf or NaN gets no noise (its RMS is not finite), so
      that a deformation never makes an update non-finite.

    .. seealso:: :func:`find_state` to read the stress and event counters.
    """
    check_int("patience", patience, minimum=1)
    check_int("yield_stress", yield_stress, minimum=1)
    check_order("yield_stress", yield_stress, "patience", patience)
    check_real("noise_scale", noise_scale)
    check_real("plastic_scale", plastic_scale)
    check_int("accumulation_steps", accumulation_steps, minimum=1)
    check_real("rtol", rtol)
    check_real("atol", atol)
    check_int("cooldown", cooldown, minimum=0)
    check_bool("spring_back", spring_back)
    check_real("min_rms", min_rms)
    check_axis_name(axis_name)
    seed_data, impl = key_data(key)

    hyper = dict(
        patience=patience,
        yield_stress=yield_stress,
        noise_scale=noise_scale,
        plastic_scale=plastic_scale,
        rtol=rtol,
        atol=atol,
        cooldown=cooldown,
        spring_back=spring_back,
    )

    def init_fn(params: optax.Params) -> SALState:
        # A new array per field: donating the state needs unshared buffers.
        def int_zero():
            return jnp.zeros((), jnp.int32)

        def float_zero():
            return jnp.zeros((), jnp.float32)

        return SALState(
            stress=int_zero(),
            cooldown_left=int_zero(),
            num_elastic=int_zero(),
            num_spring_back=int_zero(),
            num_plastic=int_zero(),
            group_step=int_zero(),
            group_value_count=int_zero(),
            group_accuracy_count=int_zero(),
            group_value_sum=float_zero(),
            group_accuracy_sum=float_zero(),
            best_loss=jnp.full((), jnp.inf, jnp.float32),
            best_accuracy=jnp.full((), -jnp.inf, jnp.float32),
            noise_key=jnp.array(seed_data, dtype=jnp.uint32, copy=True),
            elastic_pending=int_zero(),
            elastic_std=jnp.zeros((_num_deformable(params),), jnp.float32),
        )

    def update_fn(
        updates: optax.Updates,
        state: SALState,
        params: optax.Params | None = None,
        *,
        value: jax.typing.ArrayLike | None = None,
        accuracy: jax.typing.ArrayLike | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SALState]:
        del extra_args
        if value is None:
            raise TypeError(MISSING_VALUE_MESSAGE)
        if params is None:
            raise ValueError(MISSING_PARAMS_MESSAGE)
        _check_leaf_count(state, params)

        scale = _sum_scale(accumulation_steps, axis_name)
        value_sum, value_count = _finite_sum(
            _as_metric("value", value), axis_name, scale
        )
        if accuracy is None:
            accuracy_sum = jnp.zeros((), jnp.float32)
            accuracy_count = jnp.zeros((), jnp.int32)
        else:
            accuracy_sum, accuracy_count = _finite_sum(
                _as_metric("accuracy", accuracy), axis_name, scale
            )
        group = state._replace(
            group_step=state.group_step + 1,
            group_value_count=state.group_value_count + value_count,
            group_accuracy_count=state.group_accuracy_count + accuracy_count,
            group_value_sum=state.group_value_sum + value_sum,
            group_accuracy_sum=state.group_accuracy_sum + accuracy_sum,
        )

        closes_group = group.group_step >= accumulation_steps
        mean_value = _group_mean(group.group_value_sum, group.group_value_count, scale)
        mean_accuracy = _group_mean(
            group.group_accuracy_sum, group.group_accuracy_count, scale
        )
        has_value = group.group_value_count > 0
        has_accuracy = group.group_accuracy_count > 0
        evaluated, decision = _decide(
            group, mean_value, has_value, mean_accuracy, has_accuracy, hyper
        )
        # Rule 1: a group without a finite value changes nothing but its buffers.
        is_evaluation = closes_group & has_value
        decision = _Decision(
            *(jnp.where(is_evaluation, d, jnp.zeros_like(d)) for d in decision)
        )
        new_state = jax.tree.map(
            lambda new, old: jnp.where(is_evaluation, new, old), evaluated, group
        )
        new_state = _reset_group(new_state, closes_group)

        def deform(operands):
            return _deform(*operands, min_rms=min_rms, impl=impl)

        def keep(operands):
            updates, _, state, _ = operands
            return updates, jnp.where(is_evaluation, 0.0, state.elastic_std)

        # TODO(sal-optax): on XLA CPU a step without an event still pays for the
        # untaken deform branch: with ResNet-18-sized parameters it costs about
        # 1.3x Adam's update, against 1.12x for a bare lax.cond whose branch
        # only adds two trees. A branch holding a single normal draw costs
        # nearly as much, so the draw's temporaries, not SAL's arithmetic, look
        # to be the cause; drawing in smaller pieces (per leaf, or in chunks)
        # recovers only part of it.
        deforms = decision.spring_back | decision.elastic | decision.plastic
        updates, elastic_std = jax.lax.cond(
            deforms, deform, keep, (updates, params, state, decision)
        )
        return updates, new_state._replace(elastic_std=elastic_std)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _reset_group(state: SALState, closes_group: jax.Array) -> SALState:
    """Empties the group buffers once a group closes, evaluated or skipped."""
    int_zero = jnp.zeros((), jnp.int32)
    float_zero = jnp.zeros((), jnp.float32)
    return state._replace(
        group_step=jnp.where(closes_group, int_zero, state.group_step),
        group_value_count=jnp.where(closes_group, int_zero, state.group_value_count),
        group_accuracy_count=jnp.where(
            closes_group, int_zero, state.group_accuracy_count
        ),
        group_value_sum=jnp.where(closes_group, float_zero, state.group_value_sum),
        group_accuracy_sum=jnp.where(
            closes_group, float_zero, state.group_accuracy_sum
        ),
    )


def _check_leaf_count(state: SALState, params: optax.Params) -> None:
    """Raises if ``params`` does not have the deformable leaves seen by ``init``."""
    expected = state.elastic_std.shape[0]
    found = _num_deformable(params)
    if found != expected:
        raise ValueError(
            f"`params` has {found} floating-point leaves but the state was "
            f"initialised with {expected}; call `init` with the same parameter tree "
            "that you pass to `update`."
        )
