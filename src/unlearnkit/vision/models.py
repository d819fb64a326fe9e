"""Vision backbones; every model has ``features(x)`` (penultimate layer) and an ``arch`` name."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from unlearnkit.reinit import reset_submodules

__all__ = [
    "ARCHS",
    "CIFARResNet18",
    "CompactCIFARNet",
    "LeNet5",
    "SmallCNN",
    "TimmClassifier",
    "build_model",
    "cifar_resnet18",
]

ARCHS: tuple[str, ...] = ("small_cnn", "lenet5", "resnet18_cifar", "compact_cifar", "timm:<name>")


def _conv_block(c_in: int, c_out: int, *, pool: bool) -> list[nn.Module]:
    """3x3 conv (no bias), optional 2x2 max-pool, batch norm, ReLU.

    Pooling before the norm (as in Jordan 2024, arXiv:2404.00498, Sec. 3) runs BN and ReLU on a
    quarter of the activations.
    """
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Four-conv CNN for small gray images (Fashion-MNIST 28x28, digits 8x8).

    Conv blocks in the style of "Very Deep Convolutional Networks for Large-Scale Image
    Recognition" (Simonyan & Zisserman, ICLR 2015, arXiv:1409.1556) with batch norm ("Batch
    Normalization", Ioffe & Szegedy, ICML 2015, arXiv:1502.03167): ``width`` channels pooled to
    1/2, ``width`` pooled to 1/4, two convs of ``2 * width``, then adaptive average pooling to
    2x2 so any input of at least 8x8 works. With the default width it reaches about 91% test
    accuracy on Fashion-MNIST after 3 epochs (Adam, one-cycle LR 2e-3, batch 128).

    Args:
        in_channels: Input channels.
        num_classes: Output logits.
        width: Channels of the first block.

    Shapes:
        ``forward``: float32 ``(N, in_channels, H, W)`` with ``H, W >= 8`` -> logits
        ``(N, num_classes)``. ``features``: -> ``(N, 8 * width)``.

    Raises:
        ValueError: If a size argument is not positive.
    """

    arch = "small_cnn"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, num_classes=num_classes, width=width)
        self.body = nn.Sequential(
            *_conv_block(in_channels, width, pool=True),
            *_conv_block(width, width, pool=True),
            *_conv_block(width, 2 * width, pool=False),
            *_conv_block(2 * width, 2 * width, pool=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(8 * width, num_classes)

    def reset_parameters(self) -> None:
        """Re-initialise with the layers' own (PyTorch default) init, in construction order."""
        reset_submodules(self)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate representation, float32 ``(N, 8 * width)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5: two 5x5 convolutions (6 and 16 filters), then 120 -> 84 -> classes.

    LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document Recognition",
    Proc. IEEE 86(11), 1998 (Sec. II.B), in the modern form with ReLU and max-pooling that the
    IAU reference trains on CIFAR-10 (``CNN`` in ``train_model.py``, github.com/Lolo1222/IAU):
    ``conv(in, 6, 5) -> ReLU -> maxpool 2 -> conv(6, 16, 5) -> ReLU -> maxpool 2 -> fc 400 -> 120
    -> ReLU -> 84 -> ReLU -> classes``, no padding. An adaptive average pool to 5x5 before the
    first fully connected layer is the identity for 32x32 inputs (the reference's) and lets
    smaller images of at least 16x16 (Fashion-MNIST's 28x28) through.

    Args:
        in_channels: Input channels.
        num_classes: Output logits.

    Shapes:
        ``forward``: float32 ``(N, in_channels, H, W)`` with ``H, W >= 16`` -> logits
        ``(N, num_classes)``. ``features``: -> ``(N, 84)``.

    Raises:
        ValueError: If a size argument is not positive.
    """

    arch = "lenet5"

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, num_classes=num_classes)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(5),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
        )
        self.head = nn.Linear(84, num_classes)

    def reset_parameters(self) -> None:
        """Re-initialise with the layers' own (PyTorch default) init, in construction order."""
        reset_submodules(self)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate representation, float32 ``(N, 84)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class CompactCIFARNet(nn.Module):
    """Small, fast CIFAR network: stem conv + three double-conv blocks, each halving resolution.

    Layout of the network in "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (Jordan, 2024,
    arXiv:2404.00498, Sec. 3: blocks of conv -> max-pool -> BN -> act -> conv -> BN -> act), with
    narrower blocks (32-64-128 instead of 64-256-256), a 3x3 stem and ReLU, to train at CPU speed
    (about 24M multiply-adds per 32x32 image).

    Args:
        num_classes: Output logits.
        in_channels: Input channels.
        widths: Channels of the three blocks (the stem has ``widths[0] * 3 // 4``).

    Shapes:
        ``forward``: float32 ``(N, in_channels, H, W)`` with ``H, W >= 8`` -> logits
        ``(N, num_classes)``. ``features``: -> ``(N, widths[-1])`` (global max pool).

    Raises:
        ValueError: If a size argument is not positive or ``widths`` does not have 3 entries.
    """

    arch = "compact_cifar"

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128)
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths needs 3 channel counts, got {tuple(widths)}")
        _check_positive(num_classes=num_classes, in_channels=in_channels, width=min(widths))
        stem = max(1, widths[0] * 3 // 4)
        layers = _conv_block(in_channels, stem, pool=False)
        for c_in, c_out in zip((stem, *widths[:-1]), widths, strict=True):
            layers += _conv_block(c_in, c_out, pool=True) + _conv_block(c_out, c_out, pool=False)
        self.body = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(widths[-1], num_classes)

    def reset_parameters(self) -> None:
        """Re-initialise with the layers' own (PyTorch default) init, in construction order."""
        reset_submodules(self)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate representation, float32 ``(N, widths[-1])``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class CIFARResNet18(ResNet):
    """torchvision's ResNet-18 with the CIFAR stem: 3x3 stride-1 first conv and no max-pool.

    "Deep Residual Learning for Image Recognition" (He et al., CVPR 2016, arXiv:1512.03385);
    the CIFAR stem is the common adaptation of the ImageNet ResNet-18 used in unlearning papers,
    e.g. "Model Sparsity Can Simplify Machine Unlearning" (Jia et al., NeurIPS 2023,
    arXiv:2304.04934). Parameter names match torchvision's, so its ``state_dict`` loads.

    Args:
        num_classes: Output logits.
        in_channels: Input channels.

    Shapes:
        ``forward``: float32 ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``.
        ``features``: -> ``(N, 512)``.
    """

    arch = "resnet18_cifar"

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        _check_positive(num_classes=num_classes, in_channels=in_channels)
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()

    def reset_parameters(self) -> None:
        """Re-initialise with torchvision's ResNet init (He et al., arXiv:1512.03385).

        Convolutions: Kaiming-normal, ``fan_out``, ReLU gain; batch norms: weight 1, bias 0,
        running statistics reset; the classifier: PyTorch's default ``nn.Linear`` init.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.Linear)):
                module.reset_parameters()

    def features(self, x: Tensor) -> Tensor:
        """Global-average-pooled output of the last stage, float32 ``(N, 512)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def cifar_resnet18(num_classes: int = 10, in_channels: int = 3) -> CIFARResNet18:
    """Build :class:`CIFARResNet18` (see there for the source paper).

    Args:
        num_classes: Output logits.
        in_channels: Input channels.

    Returns:
        The randomly initialized model.
    """
    return CIFARResNet18(num_classes=num_classes, in_channels=in_channels)


class TimmClassifier(nn.Module):
    """Wrap a timm model so it has ``features(x)`` like every other model here.

    "PyTorch Image Models" (Wightman, 2019, github.com/huggingface/pytorch-image-models).

    Args:
        name: A timm model name (see ``timm.list_models()``).
        num_classes: Output logits.
        in_channels: Input channels.

    Shapes:
        ``forward``: float32 ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``;
        ``features``: the pre-logits vector ``(N, model.num_features)``.

    Raises:
        ValueError: If timm does not know ``name``.
    """

    def __init__(self, name: str, num_classes: int, in_channels: int) -> None:
        import timm

        super().__init__()
        _check_positive(num_classes=num_classes, in_channels=in_channels)
        if not timm.is_model(name):
            raise ValueError(f"timm has no model {name!r}; pick one from timm.list_models()")
        self.name, self.num_classes, self.in_channels = name, num_classes, in_channels
        self.model = timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_channels
        )
        self.arch = f"timm:{name}"

    def reset_parameters(self) -> None:
        """Re-initialise with timm's own init: the weights of a new ``timm.create_model``.

        A fresh model of the same name and sizes (``pretrained=False``) is built with the current
        random state and its ``state_dict`` copied in, so parameters that no submodule resets
        (a ViT's ``cls_token`` and ``pos_embed``) are re-drawn too.
        """
        import timm

        fresh = timm.create_model(
            self.name,
            pretrained=False,
            num_classes=self.num_classes,
            in_chans=self.in_channels,
        )
        self.model.load_state_dict(fresh.state_dict())

    def features(self, x: Tensor) -> Tensor:
        """Pre-logits features from timm's ``forward_head(..., pre_logits=True)``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def build_model(arch: str, *, num_classes: int, in_channels: int) -> nn.Module:
    """Build a randomly initialized classifier by name.

    Args:
        arch: ``"small_cnn"`` (:class:`SmallCNN`), ``"lenet5"`` (:class:`LeNet5`),
            ``"resnet18_cifar"`` (:class:`CIFARResNet18`),
            ``"compact_cifar"`` (:class:`CompactCIFARNet`) or ``"timm:<name>"`` (any timm model,
            no pretrained weights).
        num_classes: Output logits.
        in_channels: Input channels.

    Returns:
        A module with ``forward``, ``features`` and a string attribute ``arch`` equal to the
        ``arch`` argument, so checkpoints can be checked against the architecture. The
        in-house CNNs come in ``torch.channels_last`` memory format (same weights and outputs up to
        float rounding; oneDNN's NHWC convolutions on CPU trained SmallCNN 1.7x and evaluated it
        2.6x faster here, see ``benchmarks/bench_channels_last.py``); inputs may be in either
        format.

    Raises:
        ValueError: For an unknown architecture or timm model name.
    """
    if arch.startswith("timm:") and len(arch) > len("timm:"):
        return TimmClassifier(arch[len("timm:") :], num_classes, in_channels)
    builders = {
        "small_cnn": lambda: SmallCNN(in_channels=in_channels, num_classes=num_classes),
        "lenet5": lambda: LeNet5(in_channels=in_channels, num_classes=num_classes),
        "resnet18_cifar": lambda: cifar_resnet18(num_classes, in_channels),
        "compact_cifar": lambda: CompactCIFARNet(num_classes, in_channels=in_channels),
    }
    if arch not in builders:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    return builders[arch]().to(memory_format=torch.channels_last)


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
