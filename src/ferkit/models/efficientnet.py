"""EfficientNet-B0 with torchvision's state-dict names and shapes.

Keys follow torchvision (``features.0.0.weight`` for the stem, ``features.1.0.block.0.0.weight`` for the
first MBConv's depthwise conv, ``features.2.0.block.2.fc1.weight`` for a squeeze-excitation, ...,
``classifier.1.weight``), so an ImageNet file loads with ``ferkit.models.pretrained.load_pretrained``.

Small inputs: B0 downsamples by 32 (2x2 maps at 48 px). Below 112 px the stem runs at stride 1 (same kernel,
weights still load), leaving a 3x3 final map at 48 px. Padding is symmetric ``k // 2`` as in torchvision,
so every size from 1 px up runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ferkit.models.mobilenet import SMALL_INPUT, ConvNormAct, make_divisible
from ferkit.models.registry import register_model


class StochasticDepth(nn.Module):
    """Drop the residual branch for whole samples with probability ``p`` during training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class SqueezeExcitation(nn.Module):
    """Channel gates from globally pooled features; 1x1 convs named fc1/fc2 as in torchvision."""

    def __init__(self, chans: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(chans, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))
        return x * s


@dataclass(frozen=True)
class StageConfig:
    expand_ratio: int
    kernel: int
    stride: int
    in_chans: int
    out_chans: int
    num_layers: int


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (SiLU everywhere, linear projection)."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int, stride: int, expand_ratio: int,
                 drop_path: float):
        super().__init__()
        self.use_residual = stride == 1 and in_chans == out_chans
        hidden = make_divisible(in_chans * expand_ratio)
        layers: list[nn.Module] = []
        if hidden != in_chans:
            layers.append(ConvNormAct(in_chans, hidden, 1, act=nn.SiLU))
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcitation(hidden, max(1, in_chans // 4)),  # squeeze ratio is relative to the block input
            ConvNormAct(hidden, out_chans, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.stochastic_depth(out) if self.use_residual else out


# EfficientNet paper, Table 1 (B0 baseline).
_B0_STAGES = (
    StageConfig(1, 3, 1, 32, 16, 1),
    StageConfig(6, 3, 2, 16, 24, 2),
    StageConfig(6, 5, 2, 24, 40, 2),
    StageConfig(6, 3, 2, 40, 80, 3),
    StageConfig(6, 5, 1, 80, 112, 3),
    StageConfig(6, 5, 2, 112, 192, 4),
    StageConfig(6, 3, 1, 192, 320, 1),
)


class EfficientNet(nn.Module):
    pretrained_cfg = {"first_conv": "features.0.0", "classifier": "classifier.1"}

    def __init__(self, stages: tuple[StageConfig, ...] = _B0_STAGES, num_classes: int = 7, in_chans: int = 1,
                 input_size: int = 224, dropout: float = 0.2, drop_path_rate: float = 0.2):
        super().__init__()
        stem_stride = 1 if input_size < SMALL_INPUT else 2
        layers: list[nn.Module] = [ConvNormAct(in_chans, stages[0].in_chans, 3, stem_stride, act=nn.SiLU)]
        total = sum(s.num_layers for s in stages)
        index = 0
        for cfg in stages:
            blocks = []
            for i in range(cfg.num_layers):
                # Deeper blocks are dropped more often: the rate grows linearly with block index.
                blocks.append(MBConv(cfg.in_chans if i == 0 else cfg.out_chans, cfg.out_chans, cfg.kernel,
                                     cfg.stride if i == 0 else 1, cfg.expand_ratio, drop_path_rate * index / total))
                index += 1
            layers.append(nn.Sequential(*blocks))
        self.num_features = 4 * stages[-1].out_chans
        layers.append(ConvNormAct(stages[-1].out_chans, self.num_features, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def layer_groups(self) -> list[list[str]]:
        return [[f"features.{i}"] for i in range(len(self.features))] + [["classifier"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


@register_model("efficientnet_b0", default_input_size=224,
                description="EfficientNet-B0 (torchvision weights layout); stride-1 stem below 112 px")
def efficientnet_b0(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> EfficientNet:
    return EfficientNet(_B0_STAGES, num_classes, in_chans, input_size, **kwargs)
