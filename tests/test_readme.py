"""The README's Python examples run as written, in order, as a reader would."""

import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


# optax's Adam mixes a Python float and an int32 count in its bias correction.
@pytest.mark.standard_promotion
def test_readme_python_examples_run_in_order():
    assert len(BLOCKS) >= 4, "the README lost its usage examples"
    namespace: dict = {}
    # Readers' code broadcasts biases, as most JAX code does.
    with jax.numpy_rank_promotion("allow"):
        for block in BLOCKS:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102

    # The examples define training steps; take one with each to prove they work.
    x, y = jnp.ones((8, 4)), jnp.zeros((8,), jnp.int32)
    with jax.numpy_rank_promotion("allow"):
        loss = namespace["train_step"](namespace["state"], x, y)[1]
    assert jnp.isfinite(loss)
