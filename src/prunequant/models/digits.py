"""Small reference networks for the 8x8 digits task (input (B, 1, 8, 8), 10 classes).

* DigitsCNN: conv-BN-ReLU x3 + linear head (~25k params), the default model for every method.
* MLP: flatten + hidden layers.
* ResNetSmall: residual blocks with BN (for BN-folding and PTQ tests).
* MobileNetSmall: depthwise-separable blocks (depthwise + pointwise conv, BN).
"""
from __future__ import annotations

from torch import nn

from .registry import register_model


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]


@register_model("digits_cnn")
class DigitsCNN(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.config = {"name": "digits_cnn", "channels": list(channels), "num_classes": num_classes,
                       "in_channels": in_channels}
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            *_conv_bn(in_channels, c1), *_conv_bn(c1, c2, stride=2), *_conv_bn(c2, c3, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("mlp")
class MLP(nn.Module):
    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] = (256, 128), num_classes: int = 10):
        super().__init__()
        self.config = {"name": "mlp", "in_features": in_features, "hidden": list(hidden), "num_classes": num_classes}
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


@register_model("resnet_small")
class ResNetSmall(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.config = {"name": "resnet_small", "widths": list(widths), "num_classes": num_classes,
                       "in_channels": in_channels}
        self.stem = nn.Sequential(*_conv_bn(in_channels, widths[0]))
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(c, w, stride=1 if i == 0 else 2))
            c = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))


@register_model("mobilenet_small")
class MobileNetSmall(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96), num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.config = {"name": "mobilenet_small", "widths": list(widths), "num_classes": num_classes,
                       "in_channels": in_channels}
        layers = _conv_bn(in_channels, widths[0])
        c = widths[0]
        for i, w in enumerate(widths[1:]):
            stride = 2 if i < 2 else 1
            layers += _conv_bn(c, c, 3, stride=stride, groups=c)  # depthwise
            layers += _conv_bn(c, w, 1)  # pointwise
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
