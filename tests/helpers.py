"""Shared toy problems, wrapper table and tree comparisons for the sal_optax tests."""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sal_optax

COUNTERS = ("stress", "num_elastic", "num_plastic", "num_spring_back")

# SPEC section 3, worked example: patience=2, yield_stress=4, accumulation_steps=1,
# cooldown=0 and a constant value.
WORKED_KWARGS = dict(
    patience=2,
    yield_stress=4,
    noise_scale=0.1,
    plastic_scale=0.5,
    accumulation_steps=1,
    rtol=0.0,
    atol=0.0,
    cooldown=0,
    spring_back=True,
    min_rms=1e-3,
    key=0,
)
WORKED_STRESS = (0, 1, 2, 3, 0, 0, 1, 2, 3, 0)
# Counter increments at each evaluation: (num_elastic, num_spring_back, num_plastic).
WORKED_EVENTS = (
    (0, 0, 0),
    (0, 0, 0),
    (1, 0, 0),
    (1, 1, 0),
    (0, 1, 1),
    (0, 0, 0),
    (0, 0, 0),
    (1, 0, 0),
    (1, 1, 0),
    (0, 1, 1),
)
WORKED_TOTALS = dict(num_elastic=4, num_spring_back=4, num_plastic=2)


def sal_kwargs(**overrides) -> dict:
    """The worked example's arguments with some of them replaced."""
    return {**WORKED_KWARGS, **overrides}


def counters(opt_state) -> dict[str, int]:
    """The integer counters of the single SALState inside `opt_state`."""
    found = sal_optax.find_state(opt_state)
    return {name: int(getattr(found, name)) for name in COUNTERS}


def increments(before: dict, after: dict) -> tuple[int, int, int]:
    """Counter increments between two evaluations, ordered as WORKED_EVENTS."""
    names = ("num_elastic", "num_spring_back", "num_plastic")
    return tuple(after[n] - before[n] for n in names)


# Test bodies build and compare arrays with NumPy: every eager jnp operation is
# compiled on first use, which adds up to most of the suite's time on 2 cores.


def toy_params(dtype=jnp.float32) -> dict:
    """A two-leaf tree with distinct, non-zero values."""
    return {
        "w": jnp.asarray(np.linspace(-1.0, 1.5, 12).reshape(3, 4).astype(dtype)),
        "b": jnp.asarray(np.linspace(0.5, 1.0, 4).astype(dtype)),
    }


def zeros_like(tree):
    return jax.tree.map(lambda x: jnp.asarray(np.zeros_like(np.asarray(x))), tree)


def scaled(tree, factor: float):
    """`factor * tree`, computed in float64 and cast back to each leaf's dtype."""

    def scale(x):
        x = np.asarray(x)
        return jnp.asarray((factor * x.astype(np.float64)).astype(x.dtype))

    return jax.tree.map(scale, tree)


@functools.cache
def make_step(tx: optax.GradientTransformation, donate_state: bool = False) -> Callable:
    """A jitted step returning (new params, new state, updates).

    Cached per transformation, so that tests sharing one compile it once.
    """

    def step(params, state, grads, value, accuracy=None):
        updates, state = tx.update(grads, state, params, value=value, accuracy=accuracy)
        return optax.apply_updates(params, updates), state, updates

    return jax.jit(step, donate_argnums=(1,) if donate_state else ())


@dataclasses.dataclass
class Record:
    """What one step produced."""

    counters: dict
    updates: Any
    params: Any


def run(
    tx: optax.GradientTransformation,
    params,
    values: Sequence[float],
    accuracies: Sequence[float] | None = None,
    grads=None,
) -> tuple[list[Record], Any]:
    """Runs one jitted step per value; returns the records and the final state."""
    state = tx.init(params)
    step = make_step(tx)
    grads = zeros_like(params) if grads is None else grads
    records = []
    for i, value in enumerate(values):
        accuracy = None if accuracies is None else accuracies[i]
        params, state, updates = step(params, state, grads, value, accuracy)
        records.append(Record(counters(state), updates, params))
    return records, state


def stresses(records: Sequence[Record]) -> list[int]:
    return [r.counters["stress"] for r in records]


def event_list(records: Sequence[Record], initial: dict | None = None) -> list:
    """Counter increments at each record, starting from zero counters."""
    before = initial or {name: 0 for name in COUNTERS}
    out = []
    for record in records:
        out.append(increments(before, record.counters))
        before = record.counters
    return out


# ---------------------------------------------------------------------------------
# One compiled run for many configurations: sal's numeric hyperparameters travel as
# arguments (through optax.inject_hyperparams), so that tests of the arithmetic
# share one XLA compilation per parameter tree instead of one per configuration.

# Hyperparameters that inject_hyperparams turns into traced values.
TRACED = ("patience", "yield_stress", "noise_scale", "plastic_scale")
TRACED += ("accumulation_steps", "rtol", "atol", "cooldown", "min_rms")


@functools.cache
def _compiled_run(with_accuracy: bool, spring_back: bool) -> Callable:
    # A fixed hyperparameter dtype: inferring it promotes the parameters' dtypes,
    # which strict promotion rejects for mixed float16/float32 trees.
    inject = optax.inject_hyperparams(
        sal_optax.sal, static_args=("key", "axis_name"), hyperparam_dtype=jnp.float32
    )
    static = {k: v for k, v in WORKED_KWARGS.items() if k not in TRACED}
    tx = optax.chain(
        optax.set_to_zero(), inject(**{**static, "spring_back": spring_back})
    )

    def run_all(params, hyper, values, accuracies):
        chain_state = tx.init(params)
        inner = chain_state[1]
        # Same dtypes as init's own hyperparameters, so every call hits one cache.
        hyper = {k: hyper[k].astype(v.dtype) for k, v in inner.hyperparams.items()}
        state = (chain_state[0], inner._replace(hyperparams=hyper))

        def step(carry, metrics):
            params, state = carry
            value, accuracy = metrics
            accuracy = accuracy if with_accuracy else None
            updates, state = tx.update(
                jax.tree.map(jnp.zeros_like, params),
                state,
                params,
                value=value,
                accuracy=accuracy,
            )
            params = optax.apply_updates(params, updates)
            found = sal_optax.find_state(state)
            counts = {name: getattr(found, name) for name in COUNTERS}
            return (params, state), (counts, updates, params)

        _, outputs = jax.lax.scan(step, (params, state), (values, accuracies))
        return outputs

    return jax.jit(run_all)


def run_scan(
    params,
    values: Sequence[float],
    accuracies: Sequence[float] | None = None,
    *,
    num_steps: int = 12,
    **overrides,
) -> list[Record]:
    """Like `run` with `optax.chain(optax.set_to_zero(), sal(**sal_kwargs(...)))`.

    All steps run in one jitted `lax.scan` whose compilation is shared by every
    configuration (only `spring_back` and the presence of `accuracy` are
    static). Runs are padded to `num_steps` steps with NaN values, which come
    after the recorded ones and so cannot change them.
    """
    kwargs = sal_kwargs(**overrides)
    hyper = {
        k: np.float32(kwargs[k])
        if isinstance(kwargs[k], float)
        else np.int32(kwargs[k])
        for k in TRACED
    }
    n = len(values)
    assert n <= num_steps, (n, num_steps)

    def padded(xs):
        out = np.full((num_steps,), np.nan, np.float32)
        out[:n] = np.asarray(xs, np.float32)
        return out

    metrics = padded(values), padded([np.nan] * n if accuracies is None else accuracies)
    fn = _compiled_run(accuracies is not None, kwargs["spring_back"])
    counts, updates, params_seq = jax.device_get(fn(params, hyper, *metrics))
    return [
        Record(
            {name: int(counts[name][i]) for name in COUNTERS},
            jax.tree.map(lambda x, i=i: x[i], updates),
            jax.tree.map(lambda x, i=i: x[i], params_seq),
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------
# Tree comparisons.


def _bits(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x)).view(np.uint8)


def assert_trees_bitwise_equal(a, b) -> None:
    """Same structure, dtypes, shapes and bits (so -0.0 and NaN payloads count)."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert jnp.asarray(x).dtype == jnp.asarray(y).dtype
        assert np.shape(x) == np.shape(y)
        np.testing.assert_array_equal(_bits(x), _bits(y))


def assert_trees_close(a, b, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """Numerically close; looser on accelerators, whose reductions reorder."""
    if jax.default_backend() != "cpu":
        rtol, atol = 10 * rtol, 10 * atol
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(
            np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol
        )


def _as_numpy(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind in "iub":
        return x
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def all_finite(tree) -> bool:
    return all(np.all(np.isfinite(_as_numpy(x))) for x in jax.tree.leaves(tree))


def trees_differ(a, b) -> bool:
    return any(
        np.any(_as_numpy(x) != _as_numpy(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# ---------------------------------------------------------------------------------
# The wrapper table of the contract suite (tests/test_wrappers.py).


@dataclasses.dataclass(frozen=True)
class Wrapper:
    """One way to hold `sal` inside an Optax optimizer.

    Attributes:
      id: readable test id.
      build: maps sal's keyword arguments to the full optimizer.
      steps_per_eval: optimizer steps per sal evaluation (MultiSteps emits every k).
      strict: whether the wrapper itself runs under strict dtype promotion
        (optax's MultiSteps and Adam do not: they mix int32 counts and floats).
    """

    id: str
    build: Callable[[dict], optax.GradientTransformation]
    steps_per_eval: int = 1
    strict: bool = True

    def param(self):
        """This wrapper as a pytest parameter, with the marks it needs."""
        marks = () if self.strict else (pytest.mark.standard_promotion,)
        return pytest.param(self, id=self.id, marks=marks)

    def __str__(self) -> str:
        return self.id


def _sgd():
    return optax.sgd(0.1)


# Leaf labels of toy_params(): "w" goes through sal, "b" does not.
TOY_LABELS = {"w": "sal", "b": "plain"}
TOY_MASK = {"w": True, "b": False}

WRAPPERS = (
    Wrapper("alone", lambda kw: sal_optax.sal(**kw)),
    Wrapper("chain-last", lambda kw: optax.chain(_sgd(), sal_optax.sal(**kw))),
    Wrapper("chain-first", lambda kw: optax.chain(sal_optax.sal(**kw), _sgd())),
    Wrapper(
        "named-chain",
        lambda kw: optax.named_chain(("sgd", _sgd()), ("sal", sal_optax.sal(**kw))),
    ),
    Wrapper(
        "multi-steps",
        lambda kw: optax.MultiSteps(
            optax.chain(_sgd(), sal_optax.sal(**kw)), every_k_schedule=2
        ),
        steps_per_eval=2,
        strict=False,
    ),
    Wrapper(
        "masked",
        lambda kw: optax.masked(optax.chain(_sgd(), sal_optax.sal(**kw)), TOY_MASK),
    ),
    Wrapper(
        "partition",
        lambda kw: optax.partition(
            {"sal": optax.chain(_sgd(), sal_optax.sal(**kw)), "plain": _sgd()},
            TOY_LABELS,
        ),
    ),
    Wrapper(
        "apply-if-finite",
        lambda kw: optax.apply_if_finite(optax.chain(_sgd(), sal_optax.sal(**kw)), 3),
    ),
    Wrapper(
        "nested-chain",
        lambda kw: optax.chain(
            optax.clip_by_global_norm(1.0),
            optax.chain(optax.scale_by_adam(), sal_optax.sal(**kw)),
            optax.scale(-0.1),
        ),
        strict=False,
    ),
)


WRAPPER_PARAMS = [wrapper.param() for wrapper in WRAPPERS]
