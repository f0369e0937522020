"""SAL's peers, added to ``benchmarks.train.METHODS``: what a user would pick instead.

- ``plateau``: ``optax.contrib.reduce_on_plateau`` after the base optimizer,
  judged once per epoch on the mean training loss; the learning rate is halved
  after two epochs without a relative improvement of 1e-4 (optax's default
  rtol). These are its own settings, not SAL's: with SAL's tolerance of 5%
  it would halve the rate on almost every epoch of a 15-epoch run, a straw
  man rather than the scheduler a user would pick. They are not tuned.
- ``noise``: ``optax.add_noise`` before the base optimizer (annealed Gaussian
  gradient noise, Neelakantan et al. 2015: eta 0.01, gamma 0.55).
- ``sam``: ``optax.contrib.sam`` in its default, non-opaque mode with
  ``sync_period=2`` and a normalized ascent step of radius 0.05 (Foret et al.
  2021). Non-opaque SAM alternates an ascent call and a descent call, so the
  suite feeds each batch twice (``UPDATES_PER_BATCH``): every method then makes
  the same number of descent steps per epoch on the same batches, and SAM pays
  one extra gradient per batch, which the suite reports. BatchNorm statistics
  are updated on both calls, as optax's docstring warns.
"""

import optax

from benchmarks.train import METHODS

PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2
PLATEAU_RTOL = 1e-4
NOISE_ETA = 0.01
NOISE_GAMMA = 0.55
SAM_RHO = 0.05
SAM_SYNC_PERIOD = 2
# Gradient evaluations per batch; every other method takes one.
UPDATES_PER_BATCH = {"sam": SAM_SYNC_PERIOD}


def plateau(config, base, *, steps_per_epoch: int, **_) -> optax.GradientTransformation:
    """Base optimizer, then a learning-rate scale halved on each plateau."""
    return optax.chain(
        base,
        optax.contrib.reduce_on_plateau(
            factor=PLATEAU_FACTOR,
            patience=PLATEAU_PATIENCE,
            rtol=PLATEAU_RTOL,
            accumulation_size=steps_per_epoch,
        ),
    )


def gradient_noise(config, base, *, seed: int, **_) -> optax.GradientTransformation:
    """Annealed Gaussian noise on the gradient, then the base optimizer."""
    return optax.chain(optax.add_noise(NOISE_ETA, NOISE_GAMMA, seed), base)


def sam(config, base, **_) -> optax.GradientTransformationExtraArgs:
    """Non-opaque SAM around the base optimizer; ignores ``value=`` and the like."""
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(SAM_RHO))
    inner = optax.contrib.sam(base, adversary, sync_period=SAM_SYNC_PERIOD)

    def update_fn(updates, state, params=None, **extra_args):
        # The training step passes value= and accuracy= for SAL; SAM's update
        # accepts neither.
        del extra_args
        return inner.update(updates, state, params)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


PEERS = {"plateau": plateau, "noise": gradient_noise, "sam": sam}
METHODS.update(PEERS)
# The peers' own constants, stored with every cell so that a change of them
# makes the suite's older cells stale. The other methods are set by the config.
SETTINGS = {method: {} for method in METHODS} | {
    "plateau": {
        "factor": PLATEAU_FACTOR,
        "patience": PLATEAU_PATIENCE,
        "rtol": PLATEAU_RTOL,
    },
    "noise": {"eta": NOISE_ETA, "gamma": NOISE_GAMMA},
    "sam": {"rho": SAM_RHO, "sync_period": SAM_SYNC_PERIOD},
}
