"""LeNet, ResNet-20, VGG-11, MobileNetV2 and a small ViT in Flax NNX.

Standard forms sized for 28x28x1 and 32x32x3 images (CIFAR-style stems: no
stride or pooling in the first layer). Every model also accepts the other
inputs of the benchmark: a bare sequence ``(length,)`` such as MNIST-1D gets a
channel axis and 1-D kernels, and small images such as the 8x8 digits simply
shrink to 1x1 (pools and strides use SAME padding). BatchNorm and dropout
follow ``model.train()`` / ``model.eval()``. They are registered in
``benchmarks.models.MODELS`` by the last lines of that module.
"""

from collections.abc import Sequence
from math import prod

import jax
import jax.numpy as jnp
from flax import nnx

LENET_CHANNELS = (6, 16)
LENET_KERNEL = 5
LENET_HIDDEN = (120, 84)
RESNET20_WIDTHS = (16, 32, 64)
RESNET20_BLOCKS = 3  # per stage: 6n + 2 = 20 layers with n = 3
VGG11_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG_DROPOUT = 0.5
# (expansion, channels, blocks, first stride): MobileNetV2's table, with the
# CIFAR change of stride 1 in the stem and in the second row.
MOBILENET_V2_ROWS = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip
MOBILENET_STEM = 32
MOBILENET_HEAD = 1280
MOBILENET_DROPOUT = 0.2
VIT_PATCH = 4
VIT_DIM = 64
VIT_DEPTH = 4
VIT_HEADS = 4
VIT_MLP = 128
VIT_DROPOUT = 0.1


def _layout(input_shape: Sequence[int]) -> tuple[bool, list[int], int]:
    """(needs a channel axis, spatial sizes, input channels) of one example."""
    if len(input_shape) == 1:
        return True, [input_shape[0]], 1
    return False, list(input_shape[:-1]), input_shape[-1]


def _conv(a, b, ndim, *, rngs, kernel=3, stride=1, groups=1) -> nnx.Conv:
    return nnx.Conv(
        a, b, (kernel,) * ndim, (stride,) * ndim,
        feature_group_count=groups, use_bias=False, rngs=rngs,
    )  # fmt: skip


def _pool(x: jax.Array, ndim: int, *, average: bool = False) -> jax.Array:
    window = (1, *(2,) * ndim, 1)
    if not average:
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "SAME")
    # Summed, then divided by the window: nnx.avg_pool's SAME padding mixes
    # int and float dtypes, which strict dtype promotion rejects.
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, window, "SAME")
    return summed / 2**ndim


def _global_mean(x: jax.Array) -> jax.Array:
    return x.mean(axis=tuple(range(1, x.ndim - 1)))


class LeNet(nnx.Module):
    """LeNet-5: two conv-tanh-avgpool blocks, then 120 and 84 hidden units."""

    def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs):
        self.add_channel, spatial, channels = _layout(input_shape)
        self.ndim = len(spatial)
        sizes = (channels, *LENET_CHANNELS)
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (LENET_KERNEL,) * self.ndim, rngs=rngs)
                for a, b in zip(sizes, sizes[1:], strict=False)
            ]
        )
        for _ in LENET_CHANNELS:
            spatial = [-(-s // 2) for s in spatial]
        widths = (prod(spatial) * sizes[-1], *LENET_HIDDEN, num_classes)
        self.dense = nnx.List(
            [
                nnx.Linear(a, b, rngs=rngs)
                for a, b in zip(widths, widths[1:], strict=False)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x[..., None] if self.add_channel else x
        for conv in self.convs:
            x = _pool(jnp.tanh(conv(x)), self.ndim, average=True)
        x = x.reshape(x.shape[0], -1)
        for layer in self.dense[:-1]:
            x = jnp.tanh(layer(x))
        return self.dense[-1](x)


class BasicBlock(nnx.Module):
    """ResNet basic block; a 1x1 projection when the shape changes."""

    def __init__(self, a: int, b: int, ndim: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(a, b, ndim, stride=stride, rngs=rngs)
        self.norm1 = nnx.BatchNorm(b, rngs=rngs)
        self.conv2 = _conv(b, b, ndim, rngs=rngs)
        self.norm2 = nnx.BatchNorm(b, rngs=rngs)
        # Empty when the shape is kept: the shortcut is then the identity.
        self.shortcut = nnx.List([])
        if stride != 1 or a != b:
            conv = _conv(a, b, ndim, kernel=1, stride=stride, rngs=rngs)
            self.shortcut = nnx.List([conv, nnx.BatchNorm(b, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        for layer in self.shortcut:
            x = layer(x)
        return jax.nn.relu(x + y)


class ResNet20(nnx.Module):
    """CIFAR ResNet-20 (He et al. 2016, section 4.2): 3 stages of 3 blocks."""

    def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs):
        self.add_channel, spatial, channels = _layout(input_shape)
        ndim = len(spatial)
        self.stem = _conv(channels, RESNET20_WIDTHS[0], ndim, rngs=rngs)
        self.stem_norm = nnx.BatchNorm(RESNET20_WIDTHS[0], rngs=rngs)
        blocks, width = [], RESNET20_WIDTHS[0]
        for stage, out in enumerate(RESNET20_WIDTHS):
            for i in range(RESNET20_BLOCKS):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(width, out, ndim, stride, rngs=rngs))
                width = out
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x[..., None] if self.add_channel else x
        x = jax.nn.relu(self.stem_norm(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(_global_mean(x))


class VGG11(nnx.Module):
    """VGG-11 with BatchNorm (configuration A), CIFAR head: dropout, linear."""

    def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs):
        self.add_channel, spatial, channels = _layout(input_shape)
        self.ndim = len(spatial)
        convs, norms = [], []
        for item in VGG11_LAYERS:
            if item != "M":
                convs.append(_conv(channels, item, self.ndim, rngs=rngs))
                norms.append(nnx.BatchNorm(item, rngs=rngs))
                channels = item
        self.convs, self.norms = nnx.List(convs), nnx.List(norms)
        self.dropout = nnx.Dropout(VGG_DROPOUT, rngs=rngs)
        self.head = nnx.Linear(channels, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x[..., None] if self.add_channel else x
        layers = iter(zip(self.convs, self.norms, strict=True))
        for item in VGG11_LAYERS:
            if item == "M":
                x = _pool(x, self.ndim)
            else:
                conv, norm = next(layers)
                x = jax.nn.relu(norm(conv(x)))
        return self.head(self.dropout(_global_mean(x)))


class InvertedResidual(nnx.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3, linear 1x1 projection."""

    def __init__(self, a, b, ndim, stride, expansion, *, rngs: nnx.Rngs):
        hidden = a * expansion
        # The first row does not expand: no 1x1 layer there.
        self.expand = nnx.List([])
        if expansion > 1:
            conv = _conv(a, hidden, ndim, kernel=1, rngs=rngs)
            self.expand = nnx.List([conv, nnx.BatchNorm(hidden, rngs=rngs)])
        self.depthwise = _conv(
            hidden, hidden, ndim, stride=stride, groups=hidden, rngs=rngs
        )
        self.depthwise_norm = nnx.BatchNorm(hidden, rngs=rngs)
        self.project = _conv(hidden, b, ndim, kernel=1, rngs=rngs)
        self.project_norm = nnx.BatchNorm(b, rngs=rngs)
        self.residual = stride == 1 and a == b

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        if self.expand:
            conv, norm = self.expand
            y = jax.nn.relu6(norm(conv(y)))
        y = jax.nn.relu6(self.depthwise_norm(self.depthwise(y)))
        y = self.project_norm(self.project(y))
        return x + y if self.residual else y


class MobileNetV2(nnx.Module):
    """MobileNetV2 (Sandler et al. 2018), width 1.0, CIFAR strides."""

    def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs):
        self.add_channel, spatial, channels = _layout(input_shape)
        ndim = len(spatial)
        self.stem = _conv(channels, MOBILENET_STEM, ndim, rngs=rngs)
        self.stem_norm = nnx.BatchNorm(MOBILENET_STEM, rngs=rngs)
        blocks, width = [], MOBILENET_STEM
        for expansion, out, count, first_stride in MOBILENET_V2_ROWS:
            for i in range(count):
                stride = first_stride if i == 0 else 1
                blocks.append(
                    InvertedResidual(width, out, ndim, stride, expansion, rngs=rngs)
                )
                width = out
        self.blocks = nnx.List(blocks)
        self.last = _conv(width, MOBILENET_HEAD, ndim, kernel=1, rngs=rngs)
        self.last_norm = nnx.BatchNorm(MOBILENET_HEAD, rngs=rngs)
        self.dropout = nnx.Dropout(MOBILENET_DROPOUT, rngs=rngs)
        self.head = nnx.Linear(MOBILENET_HEAD, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x[..., None] if self.add_channel else x
        x = jax.nn.relu6(self.stem_norm(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        x = jax.nn.relu6(self.last_norm(self.last(x)))
        return self.head(self.dropout(_global_mean(x)))


class EncoderBlock(nnx.Module):
    """Pre-norm transformer block: attention and a GELU MLP, both residual."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(VIT_DIM, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            VIT_HEADS,
            VIT_DIM,
            dropout_rate=VIT_DROPOUT,
            deterministic=False,
            decode=False,
            rngs=rngs,
        )
        self.norm2 = nnx.LayerNorm(VIT_DIM, rngs=rngs)
        self.mlp_in = nnx.Linear(VIT_DIM, VIT_MLP, rngs=rngs)
        self.mlp_out = nnx.Linear(VIT_MLP, VIT_DIM, rngs=rngs)
        self.dropout = nnx.Dropout(VIT_DROPOUT, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.dropout(self.attention(self.norm1(x)))
        y = self.mlp_out(self.dropout(jax.nn.gelu(self.mlp_in(self.norm2(x)))))
        return x + self.dropout(y)


class ViT(nnx.Module):
    """Small ViT: 4x4 patches, a class token, 4 blocks of width 64, 4 heads."""

    def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs):
        self.add_channel, spatial, channels = _layout(input_shape)
        patch = tuple(min(VIT_PATCH, s) for s in spatial)
        num_patches = prod(-(-s // p) for s, p in zip(spatial, patch, strict=True))
        self.embed = nnx.Conv(channels, VIT_DIM, patch, patch, rngs=rngs)
        init = nnx.initializers.normal(0.02)
        self.cls = nnx.Param(init(rngs.params(), (1, 1, VIT_DIM)))
        self.position = nnx.Param(init(rngs.params(), (1, num_patches + 1, VIT_DIM)))
        self.blocks = nnx.List([EncoderBlock(rngs=rngs) for _ in range(VIT_DEPTH)])
        self.norm = nnx.LayerNorm(VIT_DIM, rngs=rngs)
        self.head = nnx.Linear(VIT_DIM, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x[..., None] if self.add_channel else x
        x = self.embed(x).reshape(x.shape[0], -1, VIT_DIM)
        cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, VIT_DIM))
        x = jnp.concatenate([cls, x], axis=1) + self.position[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


ARCHITECTURES = {
    "lenet": LeNet,
    "resnet20": ResNet20,
    "vgg11": VGG11,
    "mobilenetv2": MobileNetV2,
    "vit": ViT,
}
