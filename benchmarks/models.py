"""Flax NNX models of the benchmark, in a registry that others extend.

Add an architecture by writing a constructor with the signature
``(input_shape, num_classes, *, rngs, **options) -> nnx.Module`` and adding it
to ``MODELS``. Models read ``(batch, *input_shape)`` float32 inputs, return
logits, and honour ``model.train()`` / ``model.eval()`` for dropout and
BatchNorm.
"""

from collections.abc import Callable, Sequence
from itertools import pairwise
from math import prod

import jax
import jax.numpy as jnp
from flax import nnx

CONV_KERNEL = 3
POOL_WINDOW = 2


class MLP(nnx.Module):
    """Flattens the input, then hidden ReLU layers with dropout."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        hidden_sizes: Sequence[int] = (256, 256),
        dropout_rate: float = 0.0,
    ):
        sizes = [prod(input_shape), *hidden_sizes]
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in pairwise(sizes)]
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            x = self.dropout(jax.nn.relu(layer(x)))
        return self.head(x)


class CNN(nnx.Module):
    """Conv-BatchNorm-ReLU-maxpool blocks, then a dense head.

    Works on 1-D sequences ``(length,)`` or ``(length, channels)`` and on
    images ``(height, width, channels)``: the kernel has one size per spatial
    axis.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        conv_channels: Sequence[int] = (32, 64),
        dropout_rate: float = 0.0,
    ):
        # A bare sequence (length,) gets a channel axis in __call__.
        self.add_channel = len(input_shape) == 1
        spatial = list(input_shape[:1] if self.add_channel else input_shape[:-1])
        channels = [1 if self.add_channel else input_shape[-1], *conv_channels]
        kernel = (CONV_KERNEL,) * len(spatial)
        self.window = (POOL_WINDOW,) * len(spatial)
        self.convs = nnx.List(
            [nnx.Conv(a, b, kernel, rngs=rngs) for a, b in pairwise(channels)]
        )
        self.norms = nnx.List([nnx.BatchNorm(c, rngs=rngs) for c in channels[1:]])
        for _ in conv_channels:
            spatial = [max(1, s // POOL_WINDOW) for s in spatial]
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.head = nnx.Linear(prod(spatial) * channels[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.add_channel:
            x = x[..., None]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = jax.nn.relu(norm(conv(x)))
            x = nnx.max_pool(x, self.window, strides=self.window, padding="SAME")
        x = self.dropout(x.reshape(x.shape[0], -1))
        return self.head(x)


ModelConstructor = Callable[..., nnx.Module]
MODELS: dict[str, ModelConstructor] = {"mlp": MLP, "cnn": CNN}


def make_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    rngs: nnx.Rngs,
    **options,
) -> nnx.Module:
    """Builds a model of the registry.

    Args:
      name: a key of ``MODELS``.
      input_shape: shape of one example, without the batch axis.
      num_classes: number of logits.
      rngs: NNX random streams (``params``, ``dropout``).
      **options: keyword arguments of that constructor (e.g. ``hidden_sizes``).

    Returns:
      The model, in train mode.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    return MODELS[name](tuple(input_shape), num_classes, rngs=rngs, **options)


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param``) in a model."""
    params = nnx.state(model, nnx.Param)
    return sum(jnp.size(p) for p in jax.tree.leaves(params))


# The suite's architectures live in their own module and join the registry here.
from benchmarks.architectures import ARCHITECTURES  # noqa: E402

MODELS.update(ARCHITECTURES)
