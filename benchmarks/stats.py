"""Paired statistics of the suite: bootstrap intervals and win/tie/loss counts."""

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
CONFIDENCE = 0.95
WIN, TIE, LOSS = "win", "tie", "loss"


def bootstrap_ci(
    differences: Sequence[float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of paired differences with a percentile bootstrap interval.

    Args:
      differences: one paired difference per seed (or per cell and seed).
      samples: bootstrap resamples.
      confidence: coverage of the interval, in (0, 1).
      seed: seed of the resampling, so tables regenerate identically.

    Returns:
      ``(mean, low, high)``; with a single difference the interval is that value.
    """
    values = np.asarray(differences, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one difference, got none")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(samples, values.size))
    means = values[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def verdict(low: float, high: float) -> str:
    """``win`` when the interval lies above 0, ``loss`` below 0, else ``tie``."""
    if low > 0:
        return WIN
    if high < 0:
        return LOSS
    return TIE


def count_verdicts(verdicts: Sequence[str]) -> str:
    """``"W/T/L"`` counts of a list of verdicts."""
    return "/".join(str(sum(v == kind for v in verdicts)) for kind in (WIN, TIE, LOSS))
