"""Tests that the full optimizer state checkpoints with Orbax and resumes exactly."""

import jax
import numpy as np
import optax
import pytest

import sal_optax
from tests import helpers
from tests.helpers import counters, sal_kwargs, toy_params

ocp = pytest.importorskip("orbax.checkpoint")

# optax.adam mixes int32 counts and floats, which strict promotion rejects.
pytestmark = pytest.mark.standard_promotion

# Loss values: stagnating, so that events happen before and after the checkpoint.
VALUES = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8]
CHECKPOINT_AFTER = 4  # Evaluation 4 starts an elastic deformation, still pending.


def _tx():
    return optax.chain(optax.adam(1e-2), sal_optax.sal(**sal_kwargs()))


def _train(params, state, step, values):
    for value in values:
        grads = helpers.scaled(params, 0.1)
        params, state, _ = step(params, state, grads, value)
    return params, state


def test_resumed_run_matches_an_uninterrupted_run(tmp_path):
    tx = _tx()
    step = helpers.make_step(tx)
    params0 = toy_params()

    reference = _train(params0, tx.init(params0), step, VALUES)

    params, state = _train(params0, tx.init(params0), step, VALUES[:CHECKPOINT_AFTER])
    assert sal_optax.find_state(state).num_elastic == 1
    checkpointer = ocp.StandardCheckpointer()
    path = tmp_path / "checkpoint"
    checkpointer.save(path, {"params": params, "opt_state": state})
    checkpointer.wait_until_finished()

    abstract = jax.tree.map(
        ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": state}
    )
    restored = checkpointer.restore(path, abstract)
    checkpointer.close()
    helpers.assert_trees_bitwise_equal(restored["opt_state"], state)
    assert isinstance(sal_optax.find_state(restored["opt_state"]), sal_optax.SALState)

    resumed = _train(
        restored["params"], restored["opt_state"], step, VALUES[CHECKPOINT_AFTER:]
    )

    helpers.assert_trees_bitwise_equal(resumed, reference)
    assert counters(resumed[1])["num_spring_back"] >= 1
    assert counters(resumed[1])["num_plastic"] >= 1
    assert np.all(np.isfinite(np.asarray(resumed[0]["w"])))
