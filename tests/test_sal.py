"""Tests of sal(): trigger arithmetic (SPEC section 3), noise, purity, dtypes, keys."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sal_optax
from tests import helpers
from tests.helpers import (
    WORKED_EVENTS,
    WORKED_STRESS,
    WORKED_TOTALS,
    counters,
    event_list,
    run,
    run_scan,
    sal_kwargs,
    stresses,
    toy_params,
    zeros_like,
)

# Rules that never deform (stress stays below patience) isolate the arithmetic.
NO_EVENTS = dict(patience=100, yield_stress=100)


def _sal_last(**overrides):
    """sal after a base optimizer that emits zeros: updates are sal's own deltas."""
    return _cached_sal_last(tuple(sorted(overrides.items())))


@functools.cache
def _cached_sal_last(overrides):
    # One object per configuration, so that helpers.make_step compiles it once.
    kwargs = sal_kwargs(**dict(overrides))
    return optax.chain(optax.set_to_zero(), sal_optax.sal(**kwargs))


# ---------------------------------------------------------------------------------
# Worked example of SPEC section 3.


def _last(kw):
    return optax.chain(optax.sgd(0.1), sal_optax.sal(**kw))


def _first(kw):
    return optax.chain(sal_optax.sal(**kw), optax.sgd(0.1))


@pytest.mark.parametrize(
    "build, value, tolerances",
    [
        # Other tolerances and signs: the threshold tests below.
        (_last, 1.0, dict(rtol=0.0, atol=0.0)),
        (_first, -3.0, dict(rtol=1e-3, atol=1e-3)),
    ],
    ids=["sal-last", "sal-first-negative-tol"],
)
def test_worked_example_evaluation_by_evaluation(build, value, tolerances):
    params = toy_params()
    tx = build(sal_kwargs(**tolerances))
    records, _ = run(tx, params, [value] * 10)

    assert stresses(records) == list(WORKED_STRESS)
    assert event_list(records) == list(WORKED_EVENTS)
    final = records[-1].counters
    assert {k: final[k] for k in WORKED_TOTALS} == WORKED_TOTALS

    # Zero gradients: only an event can move the parameters, and every event does.
    for record, events in zip(records, WORKED_EVENTS, strict=True):
        moved = helpers.trees_differ(record.updates, zeros_like(params))
        assert moved == any(events)
        assert helpers.all_finite(record.updates)


def test_worked_example_moves_parameters_by_the_drawn_noise():
    params0 = toy_params()
    records = run_scan(params0, [1.0] * 5, plastic_scale=0.0)

    # Evaluation 5 springs back evaluation 4's elastic noise and adds a plastic
    # deformation of scale 0, so the parameters return to where they started.
    helpers.assert_trees_bitwise_equal(records[1].params, params0)
    assert helpers.trees_differ(records[2].params, params0)
    assert helpers.trees_differ(records[3].params, records[2].params)
    helpers.assert_trees_close(records[4].params, params0, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------
# Rule 1: groups without a finite value are skipped.


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_skipped_group_changes_nothing_but_group_buffers(bad):
    tx = _sal_last()
    params = toy_params()
    step = helpers.make_step(tx)
    grads = zeros_like(params)
    state = tx.init(params)
    for _ in range(3):  # Evaluation 3 starts an elastic deformation (stress 2).
        params, state, _ = step(params, state, grads, 1.0)
    assert counters(state)["num_elastic"] == 1

    skipped_params, skipped_state, updates = step(params, state, grads, bad)

    # With accumulation_steps=1 the group buffers are empty again after the step.
    helpers.assert_trees_bitwise_equal(skipped_state, state)
    helpers.assert_trees_bitwise_equal(updates, zeros_like(params))
    helpers.assert_trees_bitwise_equal(skipped_params, params)

    # The pending elastic deformation survives the skip: the next stagnating
    # evaluation springs it back, as evaluation 4 of the worked example.
    _, state, _ = step(params, skipped_state, grads, 1.0)
    assert counters(state) == dict(
        stress=3, num_elastic=2, num_plastic=0, num_spring_back=1
    )


def test_skipped_group_with_accumulation_keeps_counters():
    values = [1.0, 1.0, np.nan, np.nan, 1.0, 1.0]
    records = run_scan(toy_params(), values, accumulation_steps=2, **NO_EVENTS)

    assert stresses(records) == [0, 0, 0, 0, 0, 1]


def test_group_mean_uses_only_finite_values():
    # Each group's finite mean is 1.0; a NaN that poisoned the mean would skip it.
    values = [1.0, np.nan, np.nan, 1.0, 1.0, 1.0]
    records = run_scan(toy_params(), values, accumulation_steps=2, **NO_EVENTS)

    assert stresses(records)[1::2] == [0, 1, 2]


# ---------------------------------------------------------------------------------
# Rule 2: improvement thresholds.

LOSS_CASES = [
    # (best L, next L, rtol, atol, improved)
    (1.0, 1.0, 0.0, 0.0, False),
    (1.0, 0.999, 0.0, 0.0, True),
    (1.0, 0.95, 0.0, 0.1, False),
    (1.0, 0.85, 0.0, 0.1, True),
    (10.0, 9.5, 0.1, 0.0, False),
    (10.0, 8.9, 0.1, 0.0, True),
    (100.0, 99.5, 0.01, 0.1, False),  # max(atol, rtol*|best|) = 1.0
    (100.0, 98.9, 0.01, 0.1, True),
    (0.01, 0.0, 0.01, 0.1, False),  # max(...) = atol
    (-5.0, -5.0, 0.01, 0.0, False),  # |best|: a negative constant stagnates
    (-5.0, -5.04, 0.01, 0.0, False),
    (-5.0, -5.06, 0.01, 0.0, True),
    (-5.0, -4.0, 0.0, 0.0, False),
]
ACCURACY_CASES = [
    # (best A, next A, rtol, atol, improved)
    (0.5, 0.5, 0.0, 0.0, False),
    (0.5, 0.501, 0.0, 0.0, True),
    (0.5, 0.55, 0.0, 0.1, False),
    (0.5, 0.65, 0.0, 0.1, True),
    (10.0, 10.9, 0.1, 0.0, False),
    (10.0, 11.1, 0.1, 0.0, True),
    (-3.0, -3.0, 0.01, 0.0, False),
    (-3.0, -2.98, 0.01, 0.0, False),
    (-3.0, -2.96, 0.01, 0.0, True),
]


def _case_id(case):
    best, new, rtol, atol, improved = case
    return f"{best}->{new}-rtol{rtol}-atol{atol}-{'up' if improved else 'flat'}"


@pytest.mark.parametrize("case", LOSS_CASES, ids=[_case_id(c) for c in LOSS_CASES])
def test_loss_improvement_threshold(case):
    best, new, rtol, atol, improved = case
    records = run_scan(toy_params(), [best, new], rtol=rtol, atol=atol, **NO_EVENTS)

    assert stresses(records) == [0, 0 if improved else 1]


@pytest.mark.parametrize(
    "case", ACCURACY_CASES, ids=[_case_id(c) for c in ACCURACY_CASES]
)
def test_accuracy_improvement_threshold(case):
    best, new, rtol, atol, improved = case
    kw = dict(rtol=rtol, atol=atol, **NO_EVENTS)
    records = run_scan(toy_params(), [1.0, 1.0], [best, new], **kw)

    assert stresses(records) == [0, 0 if improved else 1]


def test_constant_negative_loss_counts_as_stagnation():
    records = run_scan(toy_params(), [-7.0] * 5, rtol=1e-2, **NO_EVENTS)

    assert stresses(records) == [0, 1, 2, 3, 4]


def test_accuracy_improving_alone_resets_stress():
    accuracies = [0.1, 0.2, 0.3, 0.3, 0.3, 0.4, 0.4]
    records = run_scan(toy_params(), [1.0] * 7, accuracies)

    assert stresses(records) == [0, 0, 0, 1, 2, 0, 1]
    # The elastic deformation of evaluation 5 helped (accuracy rose): it is kept.
    final = records[-1].counters
    assert (final["num_elastic"], final["num_spring_back"]) == (1, 0)


# ---------------------------------------------------------------------------------
# Accumulation of steps into evaluations.


def test_accumulation_averages_each_group():
    # Alternating values whose group mean is always 1.0: the worked example, with
    # the counters moving only at the last step of each group.
    # Multiples of 1/4, so that every group's float32 sum is exactly 2.
    rng = np.random.default_rng(0)
    values = []
    for a in rng.integers(-12, 20, size=10) / 4:
        values += [float(a), float(2.0 - a)]
    records = run_scan(toy_params(), values, num_steps=20, accumulation_steps=2)

    assert stresses(records)[1::2] == list(WORKED_STRESS)
    assert event_list(records)[1::2] == list(WORKED_EVENTS)
    for i in range(1, 10):  # Mid-group steps leave the counters alone.
        assert records[2 * i].counters == records[2 * i - 1].counters


# ---------------------------------------------------------------------------------
# Rules 3-5: spring-back, cooldown, plastic reset.


def test_elastic_deformation_that_helped_is_kept():
    records = run_scan(toy_params(), [1.0, 1.0, 1.0, 0.5])

    assert stresses(records) == [0, 1, 2, 0]
    assert records[-1].counters["num_spring_back"] == 0
    helpers.assert_trees_bitwise_equal(records[-1].updates, zeros_like(toy_params()))
    helpers.assert_trees_bitwise_equal(records[-1].params, records[2].params)


def test_spring_back_returns_parameters_to_where_they_were():
    params0 = toy_params()
    kw = dict(patience=2, yield_stress=3, plastic_scale=0.0)
    records = run_scan(params0, [1.0] * 4, **kw)

    assert helpers.trees_differ(records[2].params, params0)
    assert event_list(records)[3] == (0, 1, 1)
    helpers.assert_trees_close(records[3].params, params0, rtol=1e-6, atol=1e-6)
    # The update itself is exact: the regenerated noise is the noise added.
    undo = jax.tree.map(lambda u: -u, records[2].updates)
    helpers.assert_trees_bitwise_equal(records[3].updates, undo)


def test_spring_back_with_sgd_and_zero_gradients():
    params0 = toy_params()
    tx = optax.chain(
        optax.sgd(0.5),
        sal_optax.sal(**sal_kwargs(patience=1, yield_stress=2, plastic_scale=0.0)),
    )
    records, _ = run(tx, params0, [1.0] * 3)

    assert helpers.trees_differ(records[1].params, params0)
    helpers.assert_trees_close(records[2].params, params0, rtol=1e-6, atol=1e-6)


def test_without_spring_back_the_deformation_stays():
    params0 = toy_params()
    kw = dict(patience=2, yield_stress=3, plastic_scale=0.0, spring_back=False)
    records = run_scan(params0, [1.0] * 4, **kw)

    assert records[-1].counters["num_spring_back"] == 0
    assert records[-1].counters["num_plastic"] == 1
    assert helpers.trees_differ(records[2].params, params0)
    helpers.assert_trees_close(records[3].params, records[2].params, 0.0, 0.0)


def test_cooldown_follows_rule_4_literally():
    # patience=1, yield_stress=2, cooldown=2.
    values = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    records = run_scan(toy_params(), values, patience=1, yield_stress=2, cooldown=2)

    # 1: first value improves. 2: stress 1, elastic. 3: stress 2, spring-back and
    # plastic, cooldown 2. 4: improves on the reset best, cooldown untouched.
    # 5: no improvement, cooldown 2->1. 6: improves (0.5), cooldown stays 1.
    # 7: cooldown 1->0. 8: stress 1, elastic. 9: stress 2, spring-back, plastic.
    assert stresses(records) == [0, 1, 0, 0, 0, 0, 0, 1, 0]
    assert event_list(records) == [
        (0, 0, 0),
        (1, 0, 0),
        (0, 1, 1),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (1, 0, 0),
        (0, 1, 1),
    ]


def test_plastic_deformation_resets_best_values():
    # patience=yield_stress=1: every stagnating evaluation is plastic. After the
    # plastic deformation of evaluation 2, the worse value 5.0 still improves.
    records = run_scan(toy_params(), [1.0, 1.0, 5.0, 5.0], patience=1, yield_stress=1)

    assert [r.counters["num_plastic"] for r in records] == [0, 1, 1, 2]
    assert records[-1].counters["num_elastic"] == 0


# ---------------------------------------------------------------------------------
# Rule 6: noise statistics.

BIG = 200_000


def _full(value, dtype=np.float32, size=BIG):
    return jnp.asarray(np.full((size,), value, dtype))


def _big(a=1.0, b=1.0, c=1.0, h=1.0, g=1.0):
    """Leaves of BIG entries (constants or arrays): float32 a, b, c, float16 h and
    bfloat16 g.

    Every noise test uses this one tree, so that they share one compilation.
    """
    leaves = dict(a=a, b=b, c=c, h=h, g=g)
    dtypes = dict(h=jnp.float16, g=jnp.bfloat16)
    return {
        k: jnp.asarray(
            np.broadcast_to(np.float32(v), (BIG,)), dtypes.get(k, jnp.float32)
        )
        for k, v in leaves.items()
    }


def _random(scale, seed):
    return scale * np.random.default_rng(seed).standard_normal(BIG)


def _run_big(params, values, **overrides):
    return run_scan(params, values, num_steps=4, **overrides)


def _rms(x):
    return float(np.sqrt(np.mean(np.square(np.asarray(x, np.float64)))))


def _corr(x, y):
    return float(np.corrcoef(np.asarray(x), np.asarray(y))[0, 1])


def _assert_normal(noise, expected_std, rel=0.02):
    noise = np.asarray(noise, np.float64)
    std = noise.std()
    assert std == pytest.approx(expected_std, rel=rel)
    assert abs(noise.mean()) < 5 * expected_std / np.sqrt(noise.size)
    within = np.mean(np.abs(noise) < expected_std)
    assert within == pytest.approx(0.6827, abs=0.01)


def test_elastic_noise_std_grows_with_stress():
    noise_scale = 0.05
    params0 = _big(a=_random(3.0, 0), b=_random(3.0, 1))
    kw = dict(patience=1, yield_stress=10, noise_scale=noise_scale)
    records = _run_big(params0, [1.0] * 4, **kw)

    # Evaluations 2, 3, 4 have stress 1, 2, 3: relative std 1, 2, 3 x noise_scale.
    # Each update after the first springs back the previous noise and adds new.
    previous = zeros_like(params0)
    for index, multiple in ((1, 1), (2, 2), (3, 3)):
        inputs = records[index - 1].params
        noise = jax.tree.map(np.add, records[index].updates, previous)
        for name in ("a", "b"):
            expected = noise_scale * multiple * _rms(inputs[name])
            _assert_normal(noise[name], expected)
        previous = noise
    assert records[-1].counters["num_spring_back"] == 2


def test_plastic_noise_std():
    params0 = _big(a=_random(0.7, 0), b=_random(0.7, 1))
    records = _run_big(
        params0, [1.0, 1.0], patience=1, yield_stress=1, plastic_scale=0.2
    )

    assert event_list(records)[1] == (0, 0, 1)
    for name in ("a", "b"):
        _assert_normal(records[1].updates[name], 0.2 * _rms(params0[name]))


def test_min_rms_floors_a_zero_leaf():
    kw = dict(patience=1, yield_stress=1, plastic_scale=0.5, min_rms=0.1)
    records = _run_big(_big(a=0.0, b=2.0), [1.0, 1.0], **kw)

    _assert_normal(records[1].updates["a"], 0.5 * 0.1)
    _assert_normal(records[1].updates["b"], 0.5 * 2.0)


def test_zero_leaf_without_floor_gets_no_noise():
    kw = dict(patience=1, yield_stress=1, plastic_scale=0.5, min_rms=0.0)
    records = _run_big(_big(a=0.0, b=1.0), [1.0, 1.0], **kw)

    np.testing.assert_array_equal(records[1].updates["a"], 0.0)
    assert np.std(records[1].updates["b"]) > 0.4


def test_noise_is_independent_between_leaves():
    records = _run_big(_big(), [1.0, 1.0], patience=1, yield_stress=1)

    noise = records[1].updates
    for x, y in (("a", "b"), ("a", "c"), ("b", "c"), ("a", "h")):
        assert abs(_corr(noise[x], noise[y])) < 0.02


def test_noise_is_independent_between_events():
    kw = dict(patience=1, yield_stress=1, plastic_scale=0.1)
    records = _run_big(_big(), [1.0, 1.0, 1.0, 1.0], **kw)

    assert [r.counters["num_plastic"] for r in records] == [0, 1, 1, 2]
    assert abs(_corr(records[1].updates["a"], records[3].updates["a"])) < 0.02


def test_noise_is_independent_between_elastic_events():
    kw = dict(patience=1, yield_stress=10, noise_scale=0.1)
    records = _run_big(_big(), [1.0] * 3, **kw)

    first = records[1].updates["a"]
    second = np.add(records[2].updates["a"], first)
    assert abs(_corr(first, second)) < 0.02


def test_noise_is_independent_between_partition_groups_with_one_key():
    params = {"x": _full(1.0), "y": _full(1.0)}
    kw = sal_kwargs(patience=1, yield_stress=1, key=0)
    tx = optax.partition(
        {
            "first": optax.chain(optax.set_to_zero(), sal_optax.sal(**kw)),
            "second": optax.chain(optax.set_to_zero(), sal_optax.sal(**kw)),
        },
        {"x": "first", "y": "second"},
    )
    state = tx.init(params)
    step = jax.jit(lambda s, v: tx.update(zeros_like(params), s, params, value=v))
    _, state = step(state, 1.0)
    updates, _ = step(state, 1.0)

    assert np.std(updates["x"]) > 0.1
    assert abs(_corr(updates["x"], updates["y"])) < 0.02


# ---------------------------------------------------------------------------------
# Steps without an event return their input bit for bit.


def _special_updates():
    quiet_nan_payload = np.array([0x7FC01234, 0xFFC00042], np.uint32).view(np.float32)
    f32 = np.concatenate(
        [
            np.array([-0.0, 0.0, np.inf, -np.inf, 1e-45, -1.5], np.float32),
            quiet_nan_payload,
        ]
    )
    return {
        "w": jnp.asarray(f32.reshape(2, 4)),
        "b": jnp.asarray(np.array([-0.0, 1e-40, np.nan, 3.0], np.float32)),
        "h": jnp.asarray(np.array([-0.0, 65504.0], np.float16)),
    }


def _special_params():
    return {
        "w": jnp.ones((2, 4), jnp.float32),
        "b": jnp.ones((4,), jnp.float32),
        "h": jnp.ones((2,), jnp.float16),
    }


def test_updates_unchanged_bit_for_bit_without_event():
    updates, params = _special_updates(), _special_params()
    tx = sal_optax.sal(**sal_kwargs(patience=3, yield_stress=4, accumulation_steps=2))
    update = jax.jit(tx.update)
    state = tx.init(params)

    # Three evaluations, stress 0, 1, 2: all below patience, and half of the steps
    # are mid-group.
    for _ in range(6):
        out, state = update(updates, state, params, value=1.0)
        helpers.assert_trees_bitwise_equal(out, updates)
    assert counters(state)["stress"] == 2


def test_eager_update_keeps_updates_and_state_types():
    # Eager steps are slow (every operation dispatches alone): two steps check the
    # eager path, the first without an event, the second plastic.
    with jax.enable_x64(True):
        updates, params = _special_updates(), _special_params()
        tx = sal_optax.sal(**sal_kwargs(patience=1, yield_stress=1))
        state = tx.init(params)
        out, new_state = tx.update(updates, state, params, value=1.0)
        helpers.assert_trees_bitwise_equal(out, updates)
        _, new_state = tx.update(updates, new_state, params, value=1)

        assert counters(new_state)["num_plastic"] == 1
        assert _abstract(new_state) == _abstract(state)


# ---------------------------------------------------------------------------------
# Purity: one compilation, no transfers.


_FORMS = dict(python=float, jax=lambda v: jnp.asarray(v, jnp.float32), numpy=np.float32)


# Each value form once, with and without accuracy (accuracy in another form).
@pytest.mark.parametrize(
    "value_form, accuracy_form",
    [("python", None), ("jax", "python"), ("numpy", "jax")],
    ids=["python-loss", "jax-loss+python-acc", "numpy-loss+jax-acc"],
)
def test_compiles_once_for_a_run(value_form, accuracy_form):
    tx = optax.chain(
        optax.sgd(1e-2, momentum=0.9),
        sal_optax.sal(**sal_kwargs(patience=1, yield_stress=2)),
    )
    params = toy_params()
    traces = []

    @jax.jit
    def step(params, state, value, accuracy):
        traces.append(None)
        grads = jax.tree.map(lambda p: p * 0.1, params)
        updates, state = tx.update(grads, state, params, value=value, accuracy=accuracy)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(8):
        accuracy = None if accuracy_form is None else _FORMS[accuracy_form](0.5)
        params, state = step(params, state, _FORMS[value_form](1.0), accuracy)

    assert counters(state)["num_plastic"] >= 2
    assert len(traces) == 1
    assert step._cache_size() == 1


def test_update_runs_under_disallowed_transfers_and_deterministically():
    def trajectory(guard):
        # A new transformation each time: equal runs do not come from one object.
        tx = optax.chain(
            optax.sgd(1e-2, momentum=0.9),
            sal_optax.sal(**sal_kwargs(patience=1, yield_stress=2)),
        )
        params = jax.device_put(toy_params())
        grads = jax.device_put(helpers.scaled(toy_params(), 0.1))
        values = [jax.device_put(jnp.float32(v)) for v in [1.0, 0.9] * 4]
        accuracy = jax.device_put(jnp.float32(0.5))
        state = jax.device_put(tx.init(params))
        step = helpers.make_step(tx)
        trace = []
        with jax.transfer_guard(guard):
            for value in values:
                params, state, _ = step(params, state, grads, value, accuracy)
                trace.append(params)
        return trace, state

    first, state = trajectory("disallow")
    assert counters(state)["num_plastic"] >= 2
    helpers.assert_trees_bitwise_equal((first, state), trajectory("allow"))


# ---------------------------------------------------------------------------------
# Dtypes.

EVENTFUL = dict(patience=1, yield_stress=2)


@pytest.mark.parametrize(
    "x64, dtype",
    [(False, jnp.float16), (False, jnp.bfloat16), (True, jnp.float64)],
    ids=["f16", "bf16", "x64-f64"],
)
def test_parameter_dtype_is_kept_and_state_dtypes_are_fixed(x64, dtype):
    with jax.enable_x64(x64):
        params = toy_params(dtype)
        tx = optax.chain(optax.sgd(0.1), sal_optax.sal(**sal_kwargs(**EVENTFUL)))
        grads = helpers.scaled(params, 0.01)
        records, state = run(tx, params, [1.0] * 6, grads=grads)

        assert records[-1].counters["num_plastic"] == 2
        for record in records:
            for tree in (record.updates, record.params):
                assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(tree))
            assert helpers.all_finite(record.params)
        assert helpers.trees_differ(records[-1].params, params)
        _assert_state_dtypes(sal_optax.find_state(state))
        assert _abstract(state) == _abstract(tx.init(params))


_STATE_DTYPES = {jnp.dtype(d) for d in (jnp.int32, jnp.uint32, jnp.float32, bool)}


def _assert_state_dtypes(sal_state):
    for name in helpers.COUNTERS:
        leaf = getattr(sal_state, name)
        assert leaf.dtype == jnp.int32, name
        assert leaf.shape == ()
    leaves = jax.tree.leaves(sal_state)
    for leaf in leaves:
        assert jnp.dtype(leaf.dtype) in _STATE_DTYPES, leaf.dtype
        assert not leaf.weak_type
    assert any(leaf.dtype == jnp.uint32 for leaf in leaves)  # raw key data


def _abstract(tree):
    return jax.tree.map(
        lambda x: (jnp.shape(x), jnp.asarray(x).dtype, x.weak_type), tree
    )


@pytest.mark.parametrize(
    "x64, dtype",
    # Other parameter dtypes: test_parameter_dtype_is_kept_and_state_dtypes_are_fixed.
    [(True, jnp.float32)],
    ids=["x64-f32"],
)
def test_state_dtypes_are_fixed(x64, dtype):
    with jax.enable_x64(x64):
        params = toy_params(dtype)
        tx = sal_optax.sal(**sal_kwargs(**EVENTFUL))
        state = tx.init(params)
        _assert_state_dtypes(state)

        update = jax.jit(tx.update)
        for value in (1.0, 1.0, 1.0):
            _, new_state = update(zeros_like(params), state, params, value=value)
            _assert_state_dtypes(new_state)
            assert _abstract(new_state) == _abstract(state)
            state = new_state


def test_integer_boolean_and_complex_leaves_are_untouched():
    params = {
        "f": jnp.ones((3,)),
        "i": jnp.arange(3, dtype=jnp.int32),
        "u": jnp.arange(2, dtype=jnp.uint8),
        "b": jnp.array([True, False]),
        "c": jnp.array([1 + 2j, -1j], jnp.complex64),
    }
    updates = {
        "f": jnp.zeros((3,)),
        "i": jnp.array([1, -2, 3], jnp.int32),
        "u": jnp.array([7, 9], jnp.uint8),
        "b": jnp.array([False, True]),
        "c": jnp.array([0.5 - 1j, -0.0 + 0j], jnp.complex64),
    }
    tx = sal_optax.sal(**sal_kwargs(patience=1, yield_stress=1))
    state = tx.init(params)
    update = jax.jit(tx.update)
    _, state = update(updates, state, params, value=1.0)
    out, state = update(updates, state, params, value=1.0)

    assert counters(state)["num_plastic"] == 1
    assert helpers.trees_differ(out["f"], updates["f"])
    for name in ("i", "u", "b", "c"):
        helpers.assert_trees_bitwise_equal(out[name], updates[name])


def test_none_leaves_pass_through():
    params = {"a": jnp.ones((3,)), "b": None, "c": (None, jnp.ones((2,)))}
    updates = {"a": jnp.zeros((3,)), "b": None, "c": (None, jnp.zeros((2,)))}
    tx = sal_optax.sal(**sal_kwargs(patience=1, yield_stress=1))
    state = tx.init(params)
    for _ in range(2):
        out, state = jax.jit(tx.update)(updates, state, params, value=1.0)

    assert counters(state)["num_plastic"] == 1
    assert jax.tree.structure(out) == jax.tree.structure(updates)
    assert out["b"] is None and out["c"][0] is None
    assert helpers.trees_differ(out["a"], updates["a"])


def _run_with_frozen_leaf(spring_back):
    params = {"w": jnp.ones((3,)), "frozen": jnp.ones((2,)), "v": jnp.ones((4,))}
    updates = {"w": jnp.zeros((3,)), "frozen": None, "v": jnp.zeros((4,))}
    kwargs = sal_kwargs(patience=1, yield_stress=3, spring_back=spring_back)
    tx = sal_optax.sal(**kwargs)
    state = tx.init(params)
    outs = []
    for _ in range(3):
        out, state = jax.jit(tx.update)(updates, state, params, value=1.0)
        outs.append(out)
    return outs, state


def test_none_updates_of_real_parameters_pass_through():
    # A frozen leaf: the parameter exists but its update is None, as plain
    # optax.sgd allows. The other leaves still get noise, and the spring-back
    # at evaluation 3 subtracts exactly evaluation 2's elastic noise.
    outs, state = _run_with_frozen_leaf(spring_back=True)
    kept, _ = _run_with_frozen_leaf(spring_back=False)

    assert counters(state) == dict(
        stress=2, num_elastic=2, num_spring_back=1, num_plastic=0
    )
    assert all(out["frozen"] is None for out in outs)
    for name in ("w", "v"):
        assert helpers.trees_differ(outs[1][name], jnp.zeros_like(outs[1][name]))
        np.testing.assert_allclose(
            outs[2][name] - kept[2][name], -outs[1][name], rtol=0, atol=1e-6
        )


@pytest.mark.parametrize("params", [{}, (), []], ids=["dict", "tuple", "list"])
def test_empty_tree_passes_through(params):
    tx = sal_optax.sal(**sal_kwargs())
    state = tx.init(params)
    for _ in range(10):
        out, state = jax.jit(tx.update)(params, state, params, value=1.0)
        assert out == params

    assert counters(state) == dict(stress=0, **WORKED_TOTALS)


# ---------------------------------------------------------------------------------
# Robustness to non-finite metrics and awkward parameters.


def test_infinite_values_never_become_the_best():
    # If -inf had been recorded as the best loss, 0.5 would not improve.
    records = run_scan(toy_params(), [1.0, -np.inf, 0.5, np.nan, 0.25], **NO_EVENTS)

    assert stresses(records) == [0, 0, 0, 0, 0]


@pytest.mark.parametrize("bad", [np.inf, np.nan], ids=["inf", "nan"])
def test_nonfinite_accuracy_never_becomes_the_best(bad):
    records = run_scan(toy_params(), [1.0] * 3, [0.5, bad, 0.6], **NO_EVENTS)

    # Evaluation 2 has no finite accuracy and a stagnating loss; 0.6 improves.
    assert stresses(records) == [0, 1, 0]


def test_group_of_large_finite_values_is_evaluated():
    # 3e38 + 3e38 overflows float32, but the group's mean, 3e38, does not:
    # rule 1 skips only a group without a finite value, so this one counts.
    big = 3e38
    values = [big, big, big, big, -big, big]
    records = run_scan(toy_params(), values, accumulation_steps=2, **NO_EVENTS)
    # 3e38 sets the best; 3e38 again stagnates; the mean 0 improves on it.
    assert stresses(records)[1::2] == [0, 1, 0]

    # The large accuracy is the best: 0.5 and 0.6 do not improve on it.
    accuracies = [big, big, 0.5, 0.5, 0.6, 0.6]
    records = run_scan(
        toy_params(), [1.0] * 6, accuracies, accumulation_steps=2, **NO_EVENTS
    )
    assert stresses(records)[1::2] == [0, 1, 2]


def test_large_finite_values_never_enter_the_state_as_inf():
    big = 3e38
    tx = sal_optax.sal(**sal_kwargs(accumulation_steps=3, **NO_EVENTS))
    params = toy_params()
    state = tx.init(params)
    for value in (big, big):
        _, state = jax.jit(tx.update)(params, state, params, value=value)

    # Two of three steps: the scaled sum holds 6e38 without overflowing.
    assert np.isfinite(np.asarray(state.group_value_sum))


def test_nonfinite_metrics_never_make_updates_nonfinite():
    values = [1.0, np.nan, 1.0, np.inf, 1.0, 1.0, -np.inf, 1.0, 1.0]
    accuracies = [np.nan, 0.1, np.inf, np.nan, -np.inf, 0.1, np.nan, np.nan, np.nan]
    tx = optax.chain(optax.sgd(0.1), sal_optax.sal(**sal_kwargs(**EVENTFUL)))
    grads = helpers.scaled(toy_params(), 0.1)
    records, _ = run(tx, toy_params(), values, accuracies, grads=grads)

    assert records[-1].counters["num_plastic"] >= 1
    assert all(helpers.all_finite(r.updates) for r in records)
    assert all(helpers.all_finite(r.params) for r in records)


def test_zero_gradients_and_half_precision_give_finite_updates():
    # 1000 and 60000: p**2 overflows float16; zeros: the RMS floor alone.
    for h in (1000.0, 60000.0, 0.0):
        records = _run_big(_big(a=0.0, h=h, g=0.0), [1.0] * 4, **EVENTFUL)

        assert records[-1].counters["num_plastic"] == 1
        assert all(helpers.all_finite(r.updates) for r in records)
        assert records[-1].updates["h"].dtype == np.float16
        assert records[-1].updates["g"].dtype == jnp.bfloat16


def test_f16_leaf_gets_noise_sized_by_its_rms():
    kw = dict(patience=1, yield_stress=1, plastic_scale=0.01)
    records = _run_big(_big(h=1000.0), [1.0, 1.0], **kw)

    noise = np.asarray(records[1].updates["h"], np.float32)
    assert noise.std() == pytest.approx(10.0, rel=0.03)


def test_huge_float32_leaf_gets_finite_noise_of_the_right_size():
    # rms = 1e20 is finite even though p**2 overflows float32.
    kw = dict(patience=1, yield_stress=1, plastic_scale=0.01)
    records = _run_big(_big(a=1e20), [1.0, 1.0], **kw)

    noise = np.asarray(records[1].updates["a"], np.float64)
    assert np.all(np.isfinite(noise))
    assert noise.std() == pytest.approx(1e18, rel=0.03)


# ---------------------------------------------------------------------------------
# Keys and determinism.


def _plastic_noise(key, params=None):
    params = toy_params() if params is None else params
    kwargs = sal_kwargs(patience=1, yield_stress=1, key=key)
    tx = optax.chain(optax.set_to_zero(), sal_optax.sal(**kwargs))
    records, _ = run(tx, params, [1.0, 1.0])
    return records[1].updates


KEY_FORMS = [
    jax.random.key(7),
    jax.random.PRNGKey(7),
    np.asarray(jax.random.PRNGKey(7)),
    np.int64(7),
]


def test_raw_key_of_another_default_implementation_is_accepted():
    # Under jax_default_prng_impl=rbg, jax.random.PRNGKey makes uint32[4] data.
    with jax.default_prng_impl("rbg"):
        raw = jax.random.PRNGKey(7)
        typed = jax.random.key(7)
        assert raw.shape == (4,)
        helpers.assert_trees_bitwise_equal(_plastic_noise(raw), _plastic_noise(typed))
    with pytest.raises(ValueError, match=r"key=array\(\[0, 0, 0, 0\]"):
        sal_optax.sal(key=np.zeros((4,), np.uint32))


def test_key_forms_give_the_same_state_and_noise():
    reference = _plastic_noise(7)
    state = sal_optax.sal(key=7).init(toy_params())
    for key in KEY_FORMS:
        other = sal_optax.sal(key=key).init(toy_params())
        helpers.assert_trees_bitwise_equal(other, state)
        # The key's implementation lives in the closure, not the state: check
        # the noise itself too.
        helpers.assert_trees_bitwise_equal(_plastic_noise(key), reference)
    assert helpers.trees_differ(sal_optax.sal(key=8).init(toy_params()), state)
    assert helpers.trees_differ(reference, helpers.zeros_like(reference))


def test_int_seeds_beyond_32_bits_draw_other_noise():
    # Without x64, jax.random.key(2**40) would keep the low 32 bits: seed 0.
    reference = _plastic_noise(0)
    for seed in (2**40, -(2**40)):
        assert helpers.trees_differ(_plastic_noise(seed), reference)


def test_typed_key_is_not_stored():
    state = sal_optax.sal(key=jax.random.key(3)).init(toy_params())

    for leaf in jax.tree.leaves(state):
        assert not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


# ---------------------------------------------------------------------------------
# Buffers: no aliasing, donation.


def _pointers(tree):
    return [
        leaf.unsafe_buffer_pointer()
        for leaf in jax.tree.leaves(tree)
        if isinstance(leaf, jax.Array) and leaf.size > 0
    ]


def test_state_leaves_do_not_share_buffers():
    params = toy_params()
    tx = optax.chain(optax.adam(1e-3), sal_optax.sal(**sal_kwargs()))
    first, second = tx.init(params), tx.init(params)

    pointers = _pointers(sal_optax.find_state(first))
    assert len(set(pointers)) == len(pointers)
    assert not set(pointers) & set(_pointers(sal_optax.find_state(second)))
    assert not set(pointers) & set(_pointers(params))


@pytest.mark.parametrize(
    "key", KEY_FORMS + [0], ids=["typed", "raw", "numpy", "np-int", "int"]
)
def test_init_twice_returns_distinct_buffers(key):
    tx = sal_optax.sal(key=key)
    first, second = tx.init(toy_params()), tx.init(toy_params())

    assert not set(_pointers(first)) & set(_pointers(second))
    if isinstance(key, jax.Array) and not jnp.issubdtype(
        key.dtype, jax.dtypes.prng_key
    ):
        assert key.unsafe_buffer_pointer() not in _pointers(first)


def test_state_can_be_donated():
    key = jax.random.PRNGKey(0)
    params = toy_params()
    tx = optax.chain(optax.sgd(0.1), sal_optax.sal(**sal_kwargs(key=key, **EVENTFUL)))
    grads = helpers.scaled(params, 0.1)
    step = helpers.make_step(tx)
    donating = helpers.make_step(tx, donate_state=True)

    kept = tx.init(params)
    state, reference = tx.init(params), tx.init(params)
    p_donated, p_reference = params, params
    for _ in range(6):
        p_donated, state, _ = donating(p_donated, state, grads, 1.0)
        p_reference, reference, _ = step(p_reference, reference, grads, 1.0)

    helpers.assert_trees_bitwise_equal(p_donated, p_reference)
    assert counters(state)["num_plastic"] == 2
    # Donation deleted the first state's buffers, not those of another init.
    helpers.assert_trees_bitwise_equal(kept, tx.init(params))
