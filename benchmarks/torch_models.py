"""The benchmarked architectures written with `torch.nn`, layer for layer as the Keras builders
(`keras_cnn_ext.models`): same kernels, strides, paddings, widths, activations and heads, so that
a training step does the same arithmetic. PyTorch is an optional benchmark dependency
(`pip install ".[bench]"`); nothing in the package imports this file.
"""

from torch import nn


def _shortcut(cin, out, stride):
    """Identity, or a projection (1x1 convolution + BN, option B) where the shape changes."""
    if stride == 1 and cin == out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))


class _Basic(nn.Module):
    """ResNet basic block (two 3x3 convolutions + BN; projection shortcut where the shape
    changes, option B), as `keras_cnn_ext.layers.ResidualBlock`."""

    def __init__(self, cin, width, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        self.short = _shortcut(cin, width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.short(x))


class _Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3, 1x1 x4), stride on the first 1x1 as the paper
    (`stride_on="1x1"`, the builders' default)."""

    def __init__(self, cin, width, stride, expansion=4):
        super().__init__()
        out = width * expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        self.short = _shortcut(cin, out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.short(x))


def resnet(depth, num_classes=10):
    """ResNet-18 / ResNet-50 of Table 1 (conv1 7x7/2, max pool 3x3/2 pad 1, four stages)."""
    block, depths, expansion = {18: (_Basic, (2, 2, 2, 2), 1),
                                50: (_Bottleneck, (3, 4, 6, 3), 4)}[depth]
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, (width, n) in enumerate(zip((64, 128, 256, 512), depths)):
        for i in range(n):
            layers.append(block(cin, width, 2 if (stage > 0 and i == 0) else 1))
            cin = width * expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def vgg11(num_classes=10, image_size=32):
    """VGG configuration A: 3x3 'same' convolutions + ReLU, 2x2 max pools, dense 4096-4096."""
    layers, cin = [], 3
    for width, n in ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)):
        for _ in range(n):
            layers += [nn.Conv2d(cin, width, 3, 1, 1), nn.ReLU(inplace=True)]
            cin = width
        layers.append(nn.MaxPool2d(2, 2))
    side = image_size // 32
    layers += [nn.Flatten(), nn.Linear(512 * side * side, 4096), nn.ReLU(inplace=True),
               nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
               nn.Linear(4096, num_classes)]
    return nn.Sequential(*layers)


def lenet5(num_classes=10):
    """LeNet-5 (the course notes' version): 5x5 sigmoid convolutions, 2x2 max pools."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, num_classes))


BUILDERS = {"resnet18": lambda n, size: resnet(18, n), "resnet50": lambda n, size: resnet(50, n),
            "vgg11": lambda n, size: vgg11(n, size), "lenet5": lambda n, size: lenet5(n)}
