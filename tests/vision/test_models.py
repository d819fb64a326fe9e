"""Vision backbones: shapes, features(), arch names, CIFAR stem, errors, and that they learn."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from unlearnkit.datasets.digits import load_digits
from unlearnkit.vision.models import (
    CIFARResNet18,
    CompactCIFARNet,
    LeNet5,
    SmallCNN,
    TimmClassifier,
    build_model,
    cifar_resnet18,
)

CASES = [
    # arch, in_channels, image size, feature dim
    ("small_cnn", 1, 28, 256),
    ("small_cnn", 1, 8, 256),
    ("small_cnn", 3, 12, 256),
    ("lenet5", 3, 32, 84),
    ("lenet5", 1, 28, 84),
    ("lenet5", 1, 16, 84),
    ("compact_cifar", 3, 32, 128),
    ("compact_cifar", 1, 8, 128),
    ("resnet18_cifar", 3, 8, 512),
    ("resnet18_cifar", 1, 8, 512),
    ("timm:resnet18", 3, 32, 512),
]


def head_of(model: nn.Module) -> nn.Module:
    if isinstance(model, TimmClassifier):
        return model.model.get_classifier()
    return model.fc if isinstance(model, CIFARResNet18) else model.head


@pytest.mark.parametrize(("arch", "channels", "size", "dim"), CASES)
def test_shapes_features_and_arch(arch: str, channels: int, size: int, dim: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, in_channels=channels).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (3, 7) and logits.dtype == torch.float32
    assert feats.shape == (3, dim)
    torch.testing.assert_close(head_of(model)(feats), logits)  # features = penultimate layer
    assert model.arch == arch


def test_arch_attribute_on_direct_construction() -> None:
    assert SmallCNN().arch == "small_cnn" and CompactCIFARNet().arch == "compact_cifar"
    assert cifar_resnet18().arch == "resnet18_cifar"


def test_cifar_resnet18_stem_and_torchvision_parameter_names() -> None:
    model = cifar_resnet18(num_classes=10)
    conv = model.conv1
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    reference = torchvision.models.resnet18(num_classes=10).state_dict()
    state = model.state_dict()
    assert state.keys() == reference.keys()
    differing = [k for k in state if state[k].shape != reference[k].shape]
    assert differing == ["conv1.weight"]
    # the stem keeps full resolution: 8x8 input -> layer1 output still 8x8
    x = torch.randn(1, 3, 8, 8)
    assert model.layer1(model.relu(model.bn1(model.conv1(x)))).shape == (1, 64, 8, 8)


def test_small_cnn_width_sets_feature_size() -> None:
    assert SmallCNN(width=8).features(torch.randn(2, 1, 28, 28)).shape == (2, 64)
    widths = (8, 16, 24)
    assert CompactCIFARNet(widths=widths).features(torch.randn(2, 3, 32, 32)).shape == (2, 24)


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ("resnet50", "small_cnn, lenet5, resnet18_cifar, compact_cifar, timm:<name>"),
        ("timm:", "unknown arch"),
        ("timm:no_such_net", "timm has no model 'no_such_net'"),
    ],
)
def test_unknown_arch(arch: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(arch, num_classes=10, in_channels=3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SmallCNN(width=0),
        lambda: SmallCNN(num_classes=-1),
        lambda: CompactCIFARNet(widths=(8, 8)),
        lambda: cifar_resnet18(num_classes=0),
    ],
)
def test_bad_sizes(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_small_cnn_learns_digits() -> None:
    torch.manual_seed(0)
    train, test = load_digits()
    model = build_model("small_cnn", num_classes=10, in_channels=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        for x, y in DataLoader(train, batch_size=64, shuffle=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x, y = next(iter(DataLoader(test, batch_size=len(test))))
    with torch.no_grad():
        accuracy = (model.eval()(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9  # chance is 0.1


@pytest.mark.parametrize(
    ("arch", "shape"), [("small_cnn", (1, 28, 28)), ("compact_cifar", (3, 32, 32))]
)
def test_build_model_returns_channels_last_with_the_same_function(arch, shape):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=shape[0]).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    x = torch.randn(4, *shape)  # a contiguous (NCHW) input is accepted as is
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-5)
    # the state dict loads into a contiguous model and back (checkpoints are layout-free)
    fresh = build_model(arch, num_classes=10, in_channels=shape[0]).eval()
    fresh.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), plain(x), rtol=1e-5, atol=1e-5)


def test_lenet5_layers_and_parameter_count() -> None:
    model = LeNet5(in_channels=3, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 6, (5, 5)),
        (6, 16, (5, 5)),
    ]
    assert [(f.in_features, f.out_features) for f in fcs] == [(400, 120), (120, 84), (84, 10)]
    # 456 + 2416 + 48120 + 10164 + 850, the IAU reference CNN on CIFAR-10
    assert sum(p.numel() for p in model.parameters()) == 62006
    # on 32x32 inputs the adaptive pool is the identity: conv stack -> 16x5x5 directly
    x = torch.randn(2, 3, 32, 32)
    assert model.body[:6](x).shape == (2, 16, 5, 5)
    torch.testing.assert_close(model.body[:7](x), model.body[:6](x))
    assert LeNet5().arch == "lenet5"
