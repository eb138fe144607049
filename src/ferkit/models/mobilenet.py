"""MobileNetV2 (torchvision-compatible weights) and ``mobilenet_attention``, a FER head on top of it.

``mobilenet_v2`` has torchvision's state-dict names and shapes (``features.0.0.weight``,
``features.1.conv.0.0.weight``, ..., ``classifier.1.weight``), so an ImageNet file loads with
``ferkit.models.pretrained.load_pretrained``.

Small inputs: the network downsamples by 32, which leaves a 2x2 map for a 48x48 face. Below 112 px the
stem convolution runs at stride 1 instead of 2 (the kernel is unchanged, so ImageNet weights still load),
giving a 3x3 final map at 48 px and 7x7 at 224.

``mobilenet_attention`` keeps the same ``features`` backbone (so its weights load from the same file) and
adds a patch-extraction block (parallel 1x1 / 3x3 / 5x5 convolutions, concatenated), a channel-attention
block (global average pooling, a reduction MLP, sigmoid re-weighting of the channels), then global pooling
and dense layers with dropout. Its default input is 48 px (stride-1 stem, 3x3 map into the head); the three
128-channel branches over the 1280-channel map hold most of its 8.1M parameters (``branch_chans`` sets them).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ferkit.models.registry import register_model

SMALL_INPUT = 112  # below this side the stem keeps full resolution


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without dropping more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> activation, indexed 0/1/2 like torchvision's Conv2dNormActivation."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU6):
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, out_chans, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_chans),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear projection (1x1), with a skip when shapes allow."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_chans * expand_ratio))
        self.use_residual = stride == 1 and in_chans == out_chans
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_chans, hidden, kernel_size=1))
        layers += [
            ConvNormAct(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_chans, 1, bias=False),
            nn.BatchNorm2d(out_chans),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expansion t, channels c, repeats n, first stride s) from the MobileNetV2 paper, Table 2.
_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))


def mobilenet_v2_features(in_chans: int, input_size: int, width_mult: float = 1.0) -> tuple[nn.Sequential, int]:
    """The MobileNetV2 trunk as torchvision's ``features`` Sequential; returns it and its output channels."""
    stem_stride = 1 if input_size < SMALL_INPUT else 2
    channels = make_divisible(32 * width_mult)
    last = make_divisible(1280 * max(1.0, width_mult))
    layers: list[nn.Module] = [ConvNormAct(in_chans, channels, stride=stem_stride)]
    for t, c, n, s in _V2_SETTING:
        out = make_divisible(c * width_mult)
        for i in range(n):
            layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
            channels = out
    layers.append(ConvNormAct(channels, last, kernel_size=1))
    return nn.Sequential(*layers), last


def _init_mobilenet(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class MobileNetV2(nn.Module):
    pretrained_cfg = {"first_conv": "features.0.0", "classifier": "classifier.1"}

    def __init__(self, num_classes: int = 7, in_chans: int = 1, input_size: int = 224, width_mult: float = 1.0,
                 dropout: float = 0.2):
        super().__init__()
        self.features, self.num_features = mobilenet_v2_features(in_chans, input_size, width_mult)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        _init_mobilenet(self)

    def layer_groups(self) -> list[list[str]]:
        return [[f"features.{i}"] for i in range(len(self.features))] + [["classifier"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


class PatchExtraction(nn.Module):
    """Parallel convolutions with growing receptive fields over the same map, concatenated on channels.

    Each branch looks at a different neighbourhood of the backbone's map (a point, 3x3, 5x5), so the
    concatenation mixes local and wider facial context before attention picks the useful channels.
    """

    def __init__(self, in_chans: int, branch_chans: int, kernel_sizes: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.branches = nn.ModuleList(ConvNormAct(in_chans, branch_chans, k, act=nn.ReLU) for k in kernel_sizes)
        self.out_chans = branch_chans * len(kernel_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: pool each channel to a scalar, an MLP with a bottleneck, sigmoid gates."""

    def __init__(self, chans: int, reduction: int = 16):
        super().__init__()
        hidden = max(8, chans // reduction)
        self.fc1 = nn.Linear(chans, hidden)
        self.fc2 = nn.Linear(hidden, chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))
        return x * w[:, :, None, None]


class MobileNetAttention(nn.Module):
    # "optional": parts an ImageNet MobileNetV2 file lacks (kept freshly initialised) or has but we do not use.
    pretrained_cfg = {"first_conv": "features.0.0", "classifier": "head.3",
                      "optional": ("patches.", "attention.", "head.", "classifier.")}

    def __init__(self, num_classes: int = 7, in_chans: int = 1, input_size: int = 48, branch_chans: int = 128,
                 reduction: int = 16, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.features, num_features = mobilenet_v2_features(in_chans, input_size)
        self.patches = PatchExtraction(num_features, branch_chans)
        self.attention = ChannelAttention(self.patches.out_chans, reduction)
        self.head = nn.Sequential(
            nn.Linear(self.patches.out_chans, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        _init_mobilenet(self)

    def layer_groups(self) -> list[list[str]]:
        return [[f"features.{i}"] for i in range(len(self.features))] + [["patches"], ["attention"], ["head"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.patches(self.features(x)))
        return self.head(x.mean(dim=(2, 3)))


@register_model("mobilenet_v2", default_input_size=224,
                description="MobileNetV2 (torchvision weights layout); stride-1 stem below 112 px")
def mobilenet_v2(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> MobileNetV2:
    return MobileNetV2(num_classes, in_chans, input_size, **kwargs)


@register_model("mobilenet_attention", default_input_size=48,
                description="MobileNetV2 + multi-kernel patch extraction + channel attention + dense head")
def mobilenet_attention(num_classes: int = 7, in_chans: int = 1, input_size: int = 48,
                        **kwargs) -> MobileNetAttention:
    return MobileNetAttention(num_classes, in_chans, input_size, **kwargs)
