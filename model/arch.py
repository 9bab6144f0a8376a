"""Architecture strings: the small networks ``ternac train`` builds.

* ``mlp:784-256-256-10`` -- Flatten, then Linear layers of the given widths with ReLU between
  them (the first number is the input size, the last the number of classes).
* ``cnn:16-32`` -- for every number C a 3x3 convolution to C channels (padding 1), ReLU and
  2x2 max pooling; then Flatten and one Linear layer to the classes. ``cnn:16-32-fc64`` adds
  a hidden Linear layer of 64 units (with ReLU) before the classifier; ``cnn:16k5-32`` makes
  the first convolution 5x5 (padding 2).

The networks hold only layers the golden model maps (Linear, Conv2d, ReLU, MaxPool2d,
Flatten) and no BatchNorm, so quantization-aware training projects exactly the weights that
are exported. A user's imported network is retrained as a :class:`floatmodel.FloatModel`.
"""

import itertools

import torch
from torch import nn

from .codebook import TernacError

__all__ = ["build_arch", "describe", "parse_arch"]


def parse_arch(text):
    """``(kind, widths, hidden_fc, kernels)`` of an architecture string (error otherwise).

    ``kernels`` holds the conv kernel size of every entry of ``widths`` (3 unless ``kK``).
    """
    kind, _, spec = str(text).partition(":")
    if kind not in ("mlp", "cnn") or not spec:
        raise TernacError(f"invalid architecture {text!r}: expected 'mlp:784-256-256-10' or 'cnn:16-32'")
    widths, fc, kernels = [], [], []
    for part in spec.split("-"):
        target = widths
        if kind == "cnn" and part.startswith("fc"):
            target, part = fc, part[2:]
        elif fc:
            raise TernacError(f"invalid architecture {text!r}: fc layers come after the conv channels")
        elif kind == "cnn":
            part, _, kernel = part.partition("k")
            try:
                kernels.append(int(kernel or 3))
            except ValueError:
                raise TernacError(f"invalid architecture {text!r}: bad kernel size {kernel!r}") from None
            if kernels[-1] % 2 == 0 or kernels[-1] < 1:
                raise TernacError(f"invalid architecture {text!r}: kernel sizes must be odd")
        try:
            value = int(part)
        except ValueError:
            raise TernacError(f"invalid architecture {text!r}: {part!r} is not a layer width") from None
        if value < 1:
            raise TernacError(f"invalid architecture {text!r}: widths must be positive")
        target.append(value)
    if kind == "mlp" and len(widths) < 2:
        raise TernacError(f"invalid architecture {text!r}: an MLP needs at least an input and an output width")
    if kind == "cnn" and not widths:
        raise TernacError(f"invalid architecture {text!r}: a CNN needs at least one conv layer")
    return kind, widths, fc, kernels


def build_arch(text, input_shape, classes, seed=None):
    """The float ``nn.Sequential`` for an architecture string and a data set's geometry."""
    kind, widths, fc, kernels = parse_arch(text)
    if seed is not None:
        torch.manual_seed(seed)
    channels, height, width = input_shape
    layers = []
    if kind == "mlp":
        features = channels * height * width
        if widths[0] != features or widths[-1] != classes:
            raise TernacError(f"architecture {text!r} does not fit the data: it must start with the "
                              f"input size {features} and end with the {classes} classes, e.g. "
                              f"mlp:{features}-256-256-{classes}")
        layers.append(nn.Flatten())
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i + 2 < len(widths):
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
    for c, k in zip(widths, kernels):
        if height < 2 or width < 2:
            raise TernacError(f"architecture {text!r}: too many 2x2 poolings for a "
                              f"{input_shape[1]}x{input_shape[2]} input")
        layers += [nn.Conv2d(channels, c, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2)]
        channels, height, width = c, height // 2, width // 2
    # The first dense layer reads the whole map: a Conv2d with a map-sized kernel, the same
    # function as Flatten + Linear, coded (y, x, channel) as the accelerator stores the map.
    features = fc[0] if fc else classes
    layers += [nn.Conv2d(channels, features, (height, width)), *([nn.ReLU()] if fc else []),
               nn.Flatten()]
    for h in fc[1:] + [classes] if fc else []:
        layers += [nn.Linear(features, h), *([nn.ReLU()] if h != classes else [])]
        features = h
    return nn.Sequential(*layers)


def describe(model):
    """Short text of a Sequential, e.g. ``Flatten-Linear(784,256)-ReLU-...``."""
    parts = []
    for m in model:
        if isinstance(m, nn.Linear):
            parts.append(f"Linear({m.in_features},{m.out_features})")
        elif isinstance(m, nn.Conv2d):
            parts.append(f"Conv{m.kernel_size[0]}x{m.kernel_size[1]}({m.in_channels},{m.out_channels})")
        else:
            parts.append(type(m).__name__)
    return "-".join(parts)
