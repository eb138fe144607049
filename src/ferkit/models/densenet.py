"""DenseNet-121 with torchvision's state-dict names and shapes.

Keys follow torchvision (``features.conv0.weight``, ``features.denseblock1.denselayer1.norm1.weight``,
``features.transition1.conv.weight``, ``features.norm5.weight``, ``classifier.weight``). The ImageNet files
torchvision publishes still use the old ``denselayerN.norm.1.weight`` spelling; ``adapt_pretrained`` renames
those keys on load.

Small inputs: the stem (7x7 stride-2 conv + stride-2 max-pool) and three transitions divide the side by 32,
leaving 1x1 maps at 48 px. Below 112 px the stem conv runs at stride 1 and its max-pool is skipped, so a 48 px
face reaches the last dense block as 6x6. Parameter shapes are unchanged, so ImageNet weights still load.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.models.registry import register_model

SMALL_INPUT = 112  # below this side the stem keeps full resolution
_OLD_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck then BN-ReLU-3x3; returns only the ``growth_rate`` new channels."""

    def __init__(self, in_chans: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_chans)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_chans, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(out)))
        return F.dropout(out, self.drop_rate, self.training) if self.drop_rate > 0 else out


class DenseBlock(nn.Module):
    """Each layer sees the concatenation of the block input and every earlier layer's output."""

    def __init__(self, num_layers: int, in_chans: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_chans + i * growth_rate, growth_rate, bn_size, drop_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(in_chans)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(in_chans, out_chans, 1, bias=False)),
            ("pool", nn.AvgPool2d(2, 2)),
        ]))


class DenseNet(nn.Module):
    pretrained_cfg = {"first_conv": "features.conv0", "classifier": "classifier"}

    def __init__(self, growth_rate: int = 32, block_config: tuple[int, ...] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 7,
                 in_chans: int = 1, input_size: int = 224):
        super().__init__()
        small = input_size < SMALL_INPUT
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_chans, num_init_features, 7, 1 if small else 2, 3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.Identity() if small else nn.MaxPool2d(3, 2, 1)),
        ]))
        chans = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}",
                                     DenseBlock(num_layers, chans, growth_rate, bn_size, drop_rate))
            chans += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(chans, chans // 2))
                chans //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(chans))
        self.num_features = chans
        self.classifier = nn.Linear(chans, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def layer_groups(self) -> list[list[str]]:
        names = [name for name, _ in self.features.named_children()]
        groups = [["features.conv0", "features.norm0"]]
        groups += [[f"features.{n}"] for n in names if n.startswith(("denseblock", "transition"))]
        groups[-1].append("features.norm5")
        return groups + [["classifier"]]

    @staticmethod
    def adapt_pretrained(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the legacy ``norm.1`` / ``conv.2`` keys of torchvision's published files."""
        out = {}
        for key, value in state_dict.items():
            match = _OLD_LAYER_KEY.match(key)
            out[match.group(1) + match.group(2) if match else key] = value
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model("densenet121", default_input_size=224,
                description="DenseNet-121 (torchvision weights layout); stride-1 stem, no max-pool below 112 px")
def densenet121(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> DenseNet:
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                    **kwargs)
