"""CenterFace as a PyTorch module that reproduces the official ONNX graph.

MobileNetV2 backbone (BatchNorm folded into the convolutions, as in the released weights),
an FPN neck of 1x1 laterals and 2x2 stride-2 transposed convolutions with BatchNorm, a shared
3x3 feature convolution and four 1x1 heads. Input: raw RGB 0..255, NCHW, H and W multiples of 32.
"""

from __future__ import annotations

import torch
from torch import nn

# MobileNetV2 inverted-residual settings: expansion t, output channels c, repeats n, stride s.
INVERTED_RESIDUAL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Backbone blocks whose outputs feed the neck (strides 4, 8, 16, 32).
PYRAMID_TAPS: tuple[int, ...] = (3, 6, 13, 17)
NECK_CHANNELS = 24


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [_conv(cin, hidden, 1), nn.ReLU(inplace=True)]
        layers += [
            _conv(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU(inplace=True),
            _conv(hidden, cout, 1),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(_conv(3, 32, 3, 2), nn.ReLU(inplace=True))]
        cin = 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in PYRAMID_TAPS:
                taps.append(x)
        return taps


class Lateral(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = _conv(cin, NECK_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class Upsample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(NECK_CHANNELS, NECK_CHANNELS, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(NECK_CHANNELS, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Neck(nn.Module):
    def __init__(self, tap_channels: tuple[int, ...] = (24, 32, 96, 320)) -> None:
        super().__init__()
        self.lateral_layers = nn.ModuleList(Lateral(c) for c in tap_channels)
        self.deconv_layers = nn.ModuleList(Upsample() for _ in tap_channels[1:])

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral_layers[-1](taps[-1])
        for i in reversed(range(len(self.deconv_layers))):
            x = self.deconv_layers[i](x) + self.lateral_layers[i](taps[i])
        return x


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feat_conv = _conv(NECK_CHANNELS, NECK_CHANNELS, 3)
        self.pos_conv = _conv(NECK_CHANNELS, 1, 1)
        self.reg_conv = _conv(NECK_CHANNELS, 2, 1)
        self.off_conv = _conv(NECK_CHANNELS, 2, 1)
        self.lm_conv = _conv(NECK_CHANNELS, 10, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.relu(self.feat_conv(x))
        return (
            torch.sigmoid(self.pos_conv(x)),
            self.reg_conv(x),
            self.off_conv(x),
            self.lm_conv(x),
        )


class CenterFace(nn.Module):
    """Returns (heatmap, scale, offset, landmarks), each at 1/4 of the input resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.neck = Neck()
        self.head = Head()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(self.neck(self.backbone(image)))

    def convs_in_graph_order(self) -> list[nn.Module]:
        """Convolutions in the order the official ONNX graph evaluates them (used by the port)."""
        backbone = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
        laterals = [layer.conv for layer in reversed(self.neck.lateral_layers)]
        head = [self.head.feat_conv, self.head.pos_conv, self.head.reg_conv,
                self.head.off_conv, self.head.lm_conv]
        return backbone + laterals + head
