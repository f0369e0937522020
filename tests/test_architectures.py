"""Tests of benchmarks/architectures.py: shapes, and train versus eval mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks.architectures import (
    ARCHITECTURES,
    VIT_DIM,
    BasicBlock,
    EncoderBlock,
)
from benchmarks.models import MODELS, make_model

SHAPES = [(28, 28, 1), (32, 32, 3)]
NUM_CLASSES = 10


def test_registered_in_the_model_registry():
    assert set(ARCHITECTURES) <= set(MODELS)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_logits_shape(name, shape):
    # Abstract evaluation: shapes are checked without running the convolutions.
    model = nnx.eval_shape(
        lambda: make_model(name, shape, NUM_CLASSES, rngs=nnx.Rngs(0))
    )
    logits = nnx.eval_shape(lambda m: m(jnp.zeros((2, *shape))), model)
    assert logits.shape == (2, NUM_CLASSES)


def _flags(model):
    values = []
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.BatchNorm):
            values.append(module.use_running_average)
        if isinstance(module, nnx.Dropout | nnx.MultiHeadAttention):
            values.append(module.deterministic)
    return values


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "mobilenetv2", "vit"])
def test_eval_mode_freezes_batchnorm_and_dropout(name):
    model = nnx.eval_shape(lambda: make_model(name, (8, 8, 1), 3, rngs=nnx.Rngs(0)))
    assert _flags(model) and not any(_flags(model))
    model.eval()
    assert all(_flags(model))
    model.train()
    assert not any(_flags(model))


@pytest.mark.parametrize("name", ["basic_block", "encoder_block"])
def test_train_mode_differs_from_eval_mode(name):
    # One block of each kind keeps this fast: BatchNorm (the ResNet block)
    # normalizes by the batch in training and by running averages in eval;
    # dropout (the ViT block) is random in training and off in eval.
    rngs = nnx.Rngs(0)
    if name == "basic_block":
        block = BasicBlock(1, 4, 2, 2, rngs=rngs)
        x = jax.random.normal(jax.random.key(0), (4, 4, 4, 1))
    else:
        block = EncoderBlock(rngs=rngs)
        x = jax.random.normal(jax.random.key(0), (2, 3, VIT_DIM))
    train_a, train_b = block(x), block(x)
    block.eval()
    eval_a, eval_b = block(x), block(x)

    np.testing.assert_array_equal(eval_a, eval_b)
    assert not np.allclose(train_a, eval_a, atol=1e-4)
    if name == "encoder_block":
        assert not np.allclose(train_a, train_b, atol=1e-6)
