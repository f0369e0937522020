"""Training regimes of the suite: named transformations of a run, same for all.

Each regime maps ``(config, dataset, seed)`` to the config, dataset and
``Hooks`` that one run uses. The transformation depends on the seed only, never
on the method, so the runs of one seed stay paired across methods:

- ``stable``: nothing changes.
- ``label_noise_20`` / ``label_noise_40``: symmetric label noise; each label
  of the training and validation splits (the user's labelled data) is, with
  probability 0.2 or 0.4, replaced by one of the other classes drawn
  uniformly. The test labels stay clean.
- ``lr_shock``: the base optimizer's learning rate is multiplied by 10 for one
  epoch, epoch ``epochs // 2 + 1``.
- ``shift``: a covariate shift. During the first half of the epochs the
  training inputs are reflected about their mean (``2 * mean - x``, a contrast
  inversion for images); from epoch ``epochs // 2 + 1`` on they are the clean
  inputs that validation and test share.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from benchmarks.config import Config
from benchmarks.data import Dataset
from benchmarks.train import Hooks

LR_SHOCK_FACTOR = 10.0
NOISE_SEED_OFFSET = 10_000  # label noise draws are apart from the init seeds


def _stable(config: Config, dataset: Dataset, seed: int):
    return config, dataset, Hooks()


def _label_noise(rate: float) -> Callable:
    def transform(config: Config, dataset: Dataset, seed: int):
        rng = np.random.default_rng(seed + NOISE_SEED_OFFSET)
        k = dataset.num_classes
        noisy = dataclasses.replace(
            dataset,
            y_train=symmetric_noise(dataset.y_train, k, rate, rng),
            y_val=symmetric_noise(dataset.y_val, k, rate, rng),
        )
        return config, noisy, Hooks()

    return transform


def _lr_shock(config: Config, dataset: Dataset, seed: int):
    multipliers = (1.0,) * shift_epoch(config) + (LR_SHOCK_FACTOR,)
    return config.replace(lr_multipliers=multipliers), dataset, Hooks()


def _shift(config: Config, dataset: Dataset, seed: int):
    clean = dataset.x_train
    reflected = 2 * clean.mean(axis=0, keepdims=True) - clean
    switch = shift_epoch(config) + 1

    def train_inputs(epoch: int) -> np.ndarray:
        return reflected if epoch < switch else clean

    return config, dataset, Hooks(train_inputs=train_inputs)


REGIMES: dict[str, Callable] = {
    "stable": _stable,
    "label_noise_20": _label_noise(0.2),
    "label_noise_40": _label_noise(0.4),
    "lr_shock": _lr_shock,
    "shift": _shift,
}


def shift_epoch(config: Config) -> int:
    """Last epoch before the event: the shock or the switch comes next."""
    return config.epochs // 2


def symmetric_noise(
    labels: np.ndarray, num_classes: int, rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Replaces a ``rate`` share of labels, on average, by another class.

    Args:
      labels: int labels.
      num_classes: number of classes.
      rate: probability that a label is replaced, in [0, 1].
      rng: numpy generator.

    Returns:
      New labels; a replaced label never equals the original one.
    """
    flip = rng.random(len(labels)) < rate
    offsets = rng.integers(1, num_classes, size=len(labels))
    return np.where(flip, (labels + offsets) % num_classes, labels).astype(labels.dtype)


def apply_regime(
    name: str, config: Config, dataset: Dataset, seed: int
) -> tuple[Config, Dataset, Hooks]:
    """Applies the regime ``name`` to one run.

    Args:
      name: a key of ``REGIMES``.
      config: the run's config.
      dataset: the clean dataset.
      seed: the run's seed; it seeds the label noise.

    Returns:
      The config, dataset and loop hooks of the run.
    """
    if name not in REGIMES:
        raise ValueError(f"unknown regime {name!r}: expected {', '.join(REGIMES)}")
    return REGIMES[name](config, dataset, seed)
