"""ResNet-18 and ResNet-50 with torchvision's state-dict names and shapes.

Keys follow torchvision (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, ``fc.weight``; resnet18 has 122 entries, resnet50 320), so an ImageNet file
loads with ``ferkit.models.pretrained.load_pretrained``. ResNet-50 is the "v1.5" variant (stride on the 3x3
conv of the bottleneck), as in torchvision.

Small inputs: the stem (7x7 stride-2 conv + 3x3 stride-2 max-pool) divides the side by 4 before the first
residual stage, leaving 2x2 maps at the end for a 48x48 face. Below 112 px the 7x7 conv runs at stride 1 and
the max-pool is skipped (the CIFAR-style stem), so a 48 px input reaches ``layer4`` as 6x6. Parameter shapes
are unchanged, so ImageNet weights still load.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ferkit.models.registry import register_model

SMALL_INPUT = 112  # below this side the stem keeps full resolution


def conv3x3(in_chans: int, out_chans: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=False)


def conv1x1(in_chans: int, out_chans: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chans, out_chans, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_chans: int, chans: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_chans, chans, stride)
        self.bn1 = nn.BatchNorm2d(chans)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(chans, chans)
        self.bn2 = nn.BatchNorm2d(chans)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_chans: int, chans: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(in_chans, chans)
        self.bn1 = nn.BatchNorm2d(chans)
        self.conv2 = conv3x3(chans, chans, stride)
        self.bn2 = nn.BatchNorm2d(chans)
        self.conv3 = conv1x1(chans, chans * self.expansion)
        self.bn3 = nn.BatchNorm2d(chans * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int],
                 num_classes: int = 7, in_chans: int = 1, input_size: int = 224, zero_init_residual: bool = False):
        super().__init__()
        small = input_size < SMALL_INPUT
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 1 if small else 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        self._in_chans = 64
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each residual branch starts as identity, which helps deep nets train from scratch.
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], chans: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_chans != chans * block.expansion:
            downsample = nn.Sequential(conv1x1(self._in_chans, chans * block.expansion, stride),
                                       nn.BatchNorm2d(chans * block.expansion))
        layers = [block(self._in_chans, chans, stride, downsample)]
        self._in_chans = chans * block.expansion
        layers += [block(self._in_chans, chans) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def layer_groups(self) -> list[list[str]]:
        return [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"], ["fc"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet18", default_input_size=224,
                description="ResNet-18 (torchvision weights layout); stride-1 stem, no max-pool below 112 px")
def resnet18(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_chans, input_size, **kwargs)


@register_model("resnet50", default_input_size=224,
                description="ResNet-50 v1.5 (torchvision weights layout); stride-1 stem, no max-pool below 112 px")
def resnet50(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_chans, input_size, **kwargs)
