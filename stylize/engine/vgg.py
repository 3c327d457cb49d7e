"""VGG-19's convolutional trunk, run only as deep as the losses need.

Layers are named as in Simonyan & Zisserman and Gatys et al.: ``conv{b}_{c}`` is a convolution's output,
``relu{b}_{c}`` its rectified response, ``pool{b}`` the pooling after block b. The network holds frozen
weights and is shared by every run; pooling (average, as in the paper, or max) is chosen per call.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .losses import gram_tap

# Convolutions per block of VGG-19 ("configuration E") and their output channels.
BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
CONV_LAYERS: tuple[str, ...] = tuple(f"conv{b}_{c}" for b, (n, _) in enumerate(BLOCKS, 1) for c in range(1, n + 1))
FEATURE_LAYERS: tuple[str, ...] = tuple(
    name for conv in CONV_LAYERS for name in (conv, conv.replace("conv", "relu"))
)


def conv_shapes() -> dict[str, tuple[int, int]]:
    """(out_channels, in_channels) of every convolution, for validating weight files."""
    shapes, in_ch = {}, 3
    for b, (n, out_ch) in enumerate(BLOCKS, 1):
        for c in range(1, n + 1):
            shapes[f"conv{b}_{c}"] = (out_ch, in_ch)
            in_ch = out_ch
    return shapes


def gram_of(layer: str) -> str:
    """The key under which `VGGFeatures.forward(..., grams=)` returns a layer's Gram matrix."""
    return f"{layer}.gram"


def conv_of(layer: str) -> str:
    """The convolution a feature layer belongs to: relu3_1 -> conv3_1."""
    return layer.replace("relu", "conv")


def deepest(layers: set[str] | list[str] | tuple[str, ...]) -> str:
    """The deepest of some feature layers, in network order."""
    return max(layers, key=FEATURE_LAYERS.index)


class _AvgPool2x2(torch.autograd.Function):
    """2×2 average pooling whose backward is a nearest-neighbour upsampling of grad / 4.

    The same numbers as `F.avg_pool2d`'s backward (bit for bit: a quarter is exact), 6–9× faster on channels-last
    bf16 maps (9.9 → 1.1 ms at 64 × 384 × 512, Intel Xeon): ~14 ms of a 512 px step, floor and engine alike."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return F.interpolate(grad * 0.25, scale_factor=2, mode="nearest")


def avg_pool(x: torch.Tensor) -> torch.Tensor:
    """2×2 average pooling, as `F.avg_pool2d(x, 2)` (odd sizes, whose last row or column it drops, go there)."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        return F.avg_pool2d(x, 2)
    return _AvgPool2x2.apply(x)


_FUSED_CONV_RELU = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)  # oneDNN, CPU builds of torch


class _ConvReLU(torch.autograd.Function):
    """relu(conv3×3(x) + b) as one oneDNN call on a CPU: the ReLU is applied as the convolution writes its
    output (bit-identical), which saves a pass over every map (~9 ms of a 512 px bf16 forward, Intel Xeon).
    Backward as autograd's: the ReLU's mask, then the input's gradient only (the weights are frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        y = _FUSED_CONV_RELU(x, weight, bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
        ctx.save_for_backward(x, weight, y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        x, weight, y = ctx.saved_tensors
        grad = torch.ops.aten.threshold_backward(grad, y, 0)
        if x.dtype == torch.float32 and x.shape[0] > 1:  # fp32: one item at a time (see `_input_grad`)
            dx = torch.cat([_input_grad(grad[i:i + 1], x[i:i + 1], weight) for i in range(x.shape[0])])
        else:
            dx = _input_grad(grad, x, weight)
        return dx, None, None


def _input_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gradient of a 3×3 convolution (padding 1) with respect to its input.

    oneDNN computes it along paths that depend on the batch's size (the first layer's 3 input channels, and maps
    smaller than ~16 × 16), so an image's gradient in a batch differed from its gradient alone in the last bits,
    and L-BFGS turned that into a visibly different image after a few dozen steps. In fp32 the caller computes it
    one item at a time, so that a run's images are the same alone or batched with other visitors' runs
    (tests/test_scheduler.py); in fp32 a CPU gains nothing from a larger batch (README, Performance). In bf16,
    where batches pay, the gradient is the batch's."""
    return torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                               [True, False, False])[0]


def conv_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(conv3×3(x, padding 1) + bias): fused on a CPU where torch has oneDNN's pointwise convolution."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and _FUSED_CONV_RELU is not None:
        return _ConvReLU.apply(x, weight, bias)
    return F.relu(F.conv2d(x, weight, bias, padding=1))


@dataclass(frozen=True)
class Preprocess:
    """How a weight source expects its input; the engine always works on RGB in [0, 1]."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) with preprocess(x) = a·x' + b per channel, x' the input in the network's channel order."""
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return (self.scale / std).view(1, 3, 1, 1), (-mean / std).view(1, 3, 1, 1)


class VGGFeatures(torch.nn.Module):
    """Frozen VGG-19 convolutions that return the requested feature maps and stop at the deepest one."""

    def __init__(self, convs: dict[str, tuple[torch.Tensor, torch.Tensor]], preprocess: Preprocess,
                 dtype: torch.dtype = torch.float32) -> None:
        """`dtype` is the convolutions' precision: weights are stored in it once (no per-call casts)."""
        super().__init__()
        self.preprocess = preprocess
        self.dtype = dtype
        gain, offset = preprocess.affine()  # buffers: on the device once, no per-call host-to-device copies
        self.register_buffer("input_gain", gain)
        self.register_buffer("input_offset", offset)
        self.layers = tuple(name for name in CONV_LAYERS if name in convs)
        for name in self.layers:
            weight, bias = convs[name]
            self.register_buffer(f"{name}_weight", weight.to(dtype).contiguous(memory_format=torch.channels_last))
            self.register_buffer(f"{name}_bias", bias.to(dtype).contiguous())
        self.deepest_available = f"relu{self.layers[-1][4:]}"
        self._indices: dict[tuple, torch.Tensor] = {}  # see _index

    def _apply(self, fn, recurse=True):  # .double()/.to(dtype) keep `dtype` in step with the buffers
        module = super()._apply(fn, recurse)
        self.dtype = getattr(self, f"{self.layers[0]}_weight").dtype
        return module

    def prepare(self, rgb01: torch.Tensor) -> torch.Tensor:
        """The input as these weights expect it (channel order, scale, mean, std), in their dtype, channels-last.

        A one-channel input (a luma image) is seen as grey: expanded to three channels here.
        """
        x = rgb01.expand(-1, 3, -1, -1) if rgb01.shape[1] == 1 else rgb01
        x = x.flip(1) if self.preprocess.bgr else x
        x = torch.addcmul(self.input_offset.to(x.dtype), x, self.input_gain.to(x.dtype))
        return x.to(self.dtype).contiguous(memory_format=torch.channels_last)

    def forward(self, rgb01: torch.Tensor, wanted: set[str], pooling: str = "avg",
                depths: Sequence[str] | None = None, grams: Collection[str] = ()) -> dict[str, torch.Tensor]:
        """Feature maps (N, C, H, W) for every layer in `wanted`; layers past the deepest are never computed.

        `grams`: layers whose Gram matrix (N, C, C), as `losses.gram` gives it, is returned too, under
        `gram_of(layer)`; the network computes it on its way, so that its gradient joins the network's in one
        matmul (`losses.gram_tap`).

        `depths` (one layer per batch item) lets each item leave the batch after its own deepest layer: the
        map of a layer then holds only the items `carried(depths, layer)` names, in order. A batch whose items
        need different depths (Explore's rows) does not run every item as deep as the deepest one.
        """
        grams = set(grams)
        unknown = (wanted | grams) - set(FEATURE_LAYERS)
        if unknown:
            raise KeyError(f"unknown layers {sorted(unknown)}")
        last = deepest(wanted | grams)
        if FEATURE_LAYERS.index(last) > FEATURE_LAYERS.index(self.deepest_available):
            raise KeyError(f"layer {last} is deeper than the loaded weights (up to {self.deepest_available})")
        pool = avg_pool if pooling == "avg" else functools.partial(F.max_pool2d, kernel_size=2)
        x = self.prepare(rgb01)
        out: dict[str, torch.Tensor] = {}

        def emit(layer: str, maps: torch.Tensor) -> torch.Tensor:
            if layer in grams:
                maps, out[gram_of(layer)] = gram_tap(maps)
            if layer in wanted:
                out[layer] = maps
            return maps

        block = 1
        alive = list(range(x.shape[0]))
        for name in self.layers:
            b = int(name[4])
            if b != block:
                x, block = pool(x), b
            weight, bias = getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias")
            relu = name.replace("conv", "relu")
            if name in wanted or name in grams:  # the convolution's own output is asked for
                x = F.relu(emit(name, F.conv2d(x, weight, bias, padding=1)))
            else:
                x = conv_relu(x, weight, bias)
            x = emit(relu, x)
            if relu == last or name == last:
                break
            if depths is not None:
                kept = [k for k, item in enumerate(alive) if FEATURE_LAYERS.index(depths[item]) > FEATURE_LAYERS.index(relu)]
                if len(kept) < len(alive):
                    x = x.index_select(0, self._index(kept, x.device)).contiguous(memory_format=torch.channels_last)
                    alive = [alive[k] for k in kept]
        return out

    def _index(self, positions: list[int], device: torch.device) -> torch.Tensor:
        """`positions` as an index tensor on `device`, made once: a tensor built from a list every step would
        be a blocking host-to-device copy on a GPU."""
        key = (tuple(positions), device)
        if key not in self._indices:
            if len(self._indices) > 256:
                self._indices.clear()
            self._indices[key] = torch.tensor(positions, device=device)
        return self._indices[key]


def carried(depths: Sequence[str] | None, layer: str, batch: int) -> list[int]:
    """The batch items whose features `VGGFeatures.forward(..., depths=depths)` returns at `layer`."""
    if depths is None:
        return list(range(batch))
    return [i for i, d in enumerate(depths) if FEATURE_LAYERS.index(d) >= FEATURE_LAYERS.index(layer)]


def calibration_image(size: int = 128, seed: int = 1234) -> torch.Tensor:
    """A fixed, seeded colour 1/f-noise image in [0, 1]: natural images share its power spectrum."""
    gen = torch.Generator().manual_seed(seed)
    spectrum = torch.randn(1, 3, size, size, dtype=torch.complex64, generator=gen)
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.fftfreq(size).view(1, -1)
    radius = (fx**2 + fy**2).sqrt().clamp_min(1.0 / size)
    image = torch.fft.ifft2(spectrum / radius).real
    image = (image - image.mean()) / image.std()
    return (0.5 + 0.2 * image).clamp(0, 1)


@torch.no_grad()
def layer_scales(net: VGGFeatures, pooling: str = "avg") -> dict[str, float]:
    """The RMS response of every layer to `calibration_image()`, with the given pooling.

    Losses divide each layer's features by this number, so every weight source (0–255 Caffe input or
    ImageNet-normalized input, whose raw features differ ~100-fold) gives losses on the same scale and one
    style strength means the same thing for all of them. Max pooling makes deep layers respond more strongly
    than average pooling does, so each pooling mode has its own scales.
    """
    param = next(iter(net.buffers()))
    wanted = set(FEATURE_LAYERS[: FEATURE_LAYERS.index(net.deepest_available) + 1])
    feats = net(calibration_image().to(param.device), wanted, pooling)
    return {name: float(f.float().pow(2).mean().sqrt().clamp_min(1e-12)) for name, f in feats.items()}
