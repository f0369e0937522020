"""Training of one method and seed: optimizers, train and eval steps, the loop.

SAL makes one evaluation per epoch: ``accumulation_steps`` is the number of
steps per epoch, so the stress is judged on the epoch's mean training loss.
With ``sal_accuracy="val"`` (default) the validation accuracy is fed as
``accuracy=`` on the epoch's last step only, measured just before that step;
every other step passes NaN, which SAL ignores (SPEC section 3). The
deformation thus lands at the end of an epoch and is judged (kept or sprung
back) at the end of the next one. The test split is never fed to SAL.
"""

import dataclasses
import functools
import inspect
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks import report
from benchmarks.config import Config
from benchmarks.data import Dataset
from benchmarks.models import MODELS, make_model

EVAL_BATCH_SIZE = 1000
EVENT_KEYS = (report.NUM_ELASTIC, report.NUM_SPRING_BACK, report.NUM_PLASTIC)

BASE_OPTIMIZERS: dict[str, Callable[[Config], optax.GradientTransformation]] = {
    "sgd": lambda c: optax.sgd(c.learning_rate, momentum=c.momentum),
    "adam": lambda c: optax.adam(c.learning_rate),
    "rmsprop": lambda c: optax.rmsprop(c.learning_rate),
    "nadam": lambda c: optax.nadam(c.learning_rate),
}


def make_sal(config: Config, *, steps_per_epoch: int, seed: int):
    """``sal_optax.sal`` with the config's hyperparameters, judged once per epoch."""
    import sal_optax

    return sal_optax.sal(
        patience=config.patience,
        yield_stress=config.yield_stress,
        noise_scale=config.noise_scale,
        plastic_scale=config.plastic_scale,
        accumulation_steps=steps_per_epoch,
        rtol=config.rtol,
        atol=config.atol,
        cooldown=config.cooldown,
        spring_back=config.spring_back,
        min_rms=config.min_rms,
        key=seed,
    )


# Each method maps (config, base optimizer, steps per epoch, seed) to a chain.
# Peers of SAL (reduce_on_plateau, add_noise, SAM, ...) are added here.
METHODS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "baseline": lambda c, base, **_: optax.chain(base),
    "sal": lambda c, base, **kw: optax.chain(base, make_sal(c, **kw)),
    "sal_first": lambda c, base, **kw: optax.chain(make_sal(c, **kw), base),
}


def make_optimizer(
    config: Config, method: str = "baseline", *, steps_per_epoch: int = 1, seed: int = 0
) -> optax.GradientTransformation:
    """Builds the base optimizer of ``config`` wrapped by a method of ``METHODS``.

    Args:
      config: names the base optimizer, its learning rate and SAL's settings.
      method: a key of ``METHODS``.
      steps_per_epoch: SAL's ``accumulation_steps`` (one evaluation per epoch).
      seed: seed of SAL's noise.

    Returns:
      An Optax transformation that accepts ``value=`` and ``accuracy=``.
    """
    if config.optimizer not in BASE_OPTIMIZERS:
        names = ", ".join(BASE_OPTIMIZERS)
        raise ValueError(f"unknown optimizer {config.optimizer!r}: expected {names}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected {', '.join(METHODS)}")
    base = BASE_OPTIMIZERS[config.optimizer](config)
    if config.lr_multipliers:
        base = optax.chain(base, _epoch_scale(config.lr_multipliers, steps_per_epoch))
    return METHODS[method](config, base, steps_per_epoch=steps_per_epoch, seed=seed)


def _epoch_scale(multipliers, steps_per_epoch: int) -> optax.GradientTransformation:
    # The base optimizers apply the learning rate as their last scale, so
    # scaling their output is scaling the rate. The count is of this
    # transformation's own calls: one per descent step, also inside SAM.
    table = jnp.asarray((*multipliers, 1.0), jnp.float32)

    def schedule(count):
        return table[jnp.minimum(count // steps_per_epoch, len(multipliers))]

    return optax.scale_by_schedule(schedule)


@dataclasses.dataclass(frozen=True)
class Hooks:
    """Optional changes to the loop, used by the suite's regimes and devices.

    Attributes:
      train_inputs: maps an epoch (from 1) to that epoch's training inputs, of
        the shape of ``dataset.x_train`` (a distribution shift); None keeps them.
      place_state: called once with the model and optimizer before training,
        e.g. to replicate them over a device mesh.
      put_batch: maps a batch ``(x, y)`` to device arrays, e.g. sharded.
      updates_per_batch: optimizer updates per batch, each with its own
        gradient; SAM takes 2 (ascent, then descent on the same batch).
    """

    train_inputs: Callable[[int], np.ndarray] | None = None
    place_state: Callable[[nnx.Module, nnx.Optimizer], None] | None = None
    put_batch: Callable[[np.ndarray, np.ndarray], tuple] | None = None
    updates_per_batch: int = 1


def _loss_and_logits(model: nnx.Module, x: jax.Array, y: jax.Array):
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, logits


@nnx.jit(static_argnames="batch_accuracy")
def train_step(model, optimizer, x, y, accuracy, batch_accuracy=False):
    """One step; ``accuracy`` (NaN when absent) goes to SAL unless
    ``batch_accuracy``, in which case the batch's own accuracy goes instead.

    Returns:
      The batch's loss and accuracy.
    """
    grad_fn = nnx.value_and_grad(_loss_and_logits, has_aux=True)
    (loss, logits), grads = grad_fn(model, x, y)

    correct = jnp.mean(jnp.argmax(logits, -1) == y)
    score = correct if batch_accuracy else accuracy
    optimizer.update(model, grads, value=loss, accuracy=score)
    return loss, correct


@nnx.jit
def eval_step(model, x, y):
    """Summed loss and number of correct predictions on one batch."""
    loss, logits = _loss_and_logits(model, x, y)
    return loss * y.shape[0], jnp.sum(jnp.argmax(logits, -1) == y)


def evaluate(model: nnx.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean loss and accuracy over a split, in eval mode; leaves train mode on."""
    model.eval()
    totals = np.zeros(2)
    for start in range(0, len(y), EVAL_BATCH_SIZE):
        stop = start + EVAL_BATCH_SIZE
        totals += np.asarray(eval_step(model, x[start:stop], y[start:stop]))
    model.train()
    return float(totals[0] / len(y)), float(totals[1] / len(y))


@dataclasses.dataclass
class RunResult:
    """Outcome of one method and seed."""

    method: str
    seed: int
    history: list[dict]  # one row per epoch, keys from benchmarks.report
    model: nnx.Module
    events: dict[str, int]
    wall_time: float  # seconds, compilation included


def build_model(config: Config, dataset: Dataset, seed: int) -> nnx.Module:
    """The config's model; options are the config fields its constructor names."""
    constructor = MODELS.get(config.model)
    # An NNX Module class reports only (*args, **kwargs) through its metaclass:
    # its real options are those of __init__.
    target = constructor.__init__ if isinstance(constructor, type) else constructor
    params = inspect.signature(target).parameters if constructor else {}
    options = {k: getattr(config, k) for k in params if hasattr(Config, k)}
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    return make_model(
        config.model, dataset.input_shape, dataset.num_classes, rngs=rngs, **options
    )


def train_and_evaluate(
    config: Config,
    dataset: Dataset,
    seed: int,
    *,
    method: str = "baseline",
    on_epoch_end: Callable[[int, nnx.Module, dict], None] | None = None,
    progress: Callable[[dict], None] | None = None,
    hooks: Hooks = Hooks(),
) -> RunResult:
    """Trains one model with one method and evaluates it after every epoch.

    Args:
      config: every hyperparameter.
      dataset: the splits; the test split is evaluated, never used to decide.
      seed: seed of the initialisation, data order, dropout and SAL noise.
      method: a key of ``METHODS``.
      on_epoch_end: called as ``on_epoch_end(epoch, model, row)`` after each
        epoch's evaluation, e.g. to record parameter trajectories.
      progress: called with each epoch's row (the CLI updates a progress bar).
      hooks: regimes and device placement (see ``Hooks``).

    Returns:
      A ``RunResult``.
    """
    start = time.perf_counter()
    steps_per_epoch = len(dataset.y_train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size must be <= the {len(dataset.y_train)} training examples, "
            f"got {config.batch_size}"
        )
    model = build_model(config, dataset, seed)
    optimizer = _seeded_optimizer(config, method, model, steps_per_epoch, seed)
    if hooks.place_state is not None:
        hooks.place_state(model, optimizer)
    order_rng = np.random.default_rng(seed)

    history = []
    for epoch in range(1, config.epochs + 1):
        loop = (order_rng, steps_per_epoch, epoch, hooks)
        row = _run_epoch(config, dataset, model, optimizer, *loop)
        row.update({report.METHOD: method, report.SEED: seed, report.EPOCH: epoch})
        history.append(row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, row)
        if progress is not None:
            progress(row)

    events = {key: history[-1][key] for key in EVENT_KEYS}
    wall_time = time.perf_counter() - start
    return RunResult(method, seed, history, model, events, wall_time)


def _seeded_optimizer(config, method, model, steps_per_epoch, seed):
    # SAL draws its noise from the key held in its state, so the seed matters at
    # init only: the state comes from the seed's transformation, while the step
    # keeps one shared transformation (key 0) and thus compiles once per method,
    # not once per seed (nnx.jit treats the transformation as static).
    shared = _shared_optimizer(config, method, steps_per_epoch)
    seeded = make_optimizer(config, method, steps_per_epoch=steps_per_epoch, seed=seed)
    optimizer = nnx.Optimizer(model, seeded, wrt=nnx.Param)
    optimizer.tx = shared
    return optimizer


@functools.lru_cache(maxsize=8)
def _shared_optimizer(config, method, steps_per_epoch):
    return make_optimizer(config, method, steps_per_epoch=steps_per_epoch, seed=0)


def _run_epoch(
    config, dataset, model, optimizer, order_rng, steps_per_epoch, epoch, hooks
):
    start = time.perf_counter()
    x_train = dataset.x_train
    if hooks.train_inputs is not None:
        x_train = hooks.train_inputs(epoch)
    order = order_rng.permutation(len(dataset.y_train))
    step = nnx.cached_partial(train_step, model, optimizer)
    batch_accuracy = config.sal_accuracy == "train"

    stats = []
    for i in range(steps_per_epoch):
        idx = order[i * config.batch_size : (i + 1) * config.batch_size]
        accuracy = np.float32(np.nan)
        if i == steps_per_epoch - 1 and config.sal_accuracy == "val":
            accuracy = np.float32(evaluate(model, dataset.x_val, dataset.y_val)[1])
        x, y = x_train[idx], dataset.y_train[idx]
        if hooks.put_batch is not None:
            x, y = hooks.put_batch(x, y)
        # The first update's loss is the one at the current parameters.
        stats.append(step(x, y, accuracy, batch_accuracy=batch_accuracy))
        for _ in range(hooks.updates_per_batch - 1):
            step(x, y, accuracy, batch_accuracy=batch_accuracy)

    train_loss, train_accuracy = np.mean(np.asarray(jax.device_get(stats)), axis=0)
    val_loss, val_accuracy = evaluate(model, dataset.x_val, dataset.y_val)
    test_loss, test_accuracy = evaluate(model, dataset.x_test, dataset.y_test)
    return {
        report.TRAIN_LOSS: float(train_loss),
        report.TRAIN_ACCURACY: float(train_accuracy),
        report.VAL_LOSS: val_loss,
        report.VAL_ACCURACY: val_accuracy,
        report.TEST_LOSS: test_loss,
        report.TEST_ACCURACY: test_accuracy,
        **sal_counters(optimizer),
        report.EPOCH_TIME: time.perf_counter() - start,
    }


def sal_counters(optimizer: nnx.Optimizer) -> dict[str, int]:
    """Stress and event counters of the SAL state; zeros without SAL."""
    zeros = {report.STRESS: 0, **dict.fromkeys(EVENT_KEYS, 0)}
    try:
        import sal_optax

        state = sal_optax.find_state(optimizer.opt_state)
    except (ImportError, ValueError):
        # The baseline has no SALState, and find_state says so by ValueError.
        return zeros
    fields = {report.STRESS: "stress", **{key: key for key in EVENT_KEYS}}
    return {key: int(_array(getattr(state, name))) for key, name in fields.items()}


def _array(leaf) -> np.ndarray:
    # nnx.Optimizer wraps each optimizer-state array in an nnx Variable.
    return np.asarray(leaf[...] if isinstance(leaf, nnx.Variable) else leaf)
