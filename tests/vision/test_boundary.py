"""Boundary Shrink / Boundary Expanding (Chen et al., CVPR 2023): neighbour search by hand,
nearest-wrong labels, the shadow class against an explicitly widened layer, head rule, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _helpers import TinyMLP, blobs
from unlearnkit.streams import UnlearnBatch
from unlearnkit.vision import BoundaryExpanding, BoundaryShrink
from unlearnkit.vision.methods.boundary import classifier_head, neighbour_search


def two_feature_linear() -> nn.Linear:
    """logits = (x_0, x_1, 0): CE's input gradient is W^T (p - e_y) = (p_0 - [y=0], p_1 - [y=1])."""
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        layer.bias.zero_()
    return layer


X = torch.tensor([[0.3, 0.2], [0.1, 0.5]])
Y = torch.tensor([0, 1])


def test_neighbour_search_fgsm_step_and_label_by_hand():
    model = two_feature_linear().train()
    # row 0 (y=0): grad = (p0 - 1, p1) -> sign (-, +); row 1 (y=1): (p0, p1 - 1) -> (+, -)
    x_adv, labels = neighbour_search(model, X, Y, bound=0.1)
    torch.testing.assert_close(x_adv, torch.tensor([[0.2, 0.3], [0.2, 0.4]]))
    # row 0 crosses into class 1 (the nearest wrong class); row 1's attack fails: label = y
    assert labels.tolist() == [1, 1]
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # parameters' grads untouched
    # a step too small to cross: every label is the true one
    _, labels = neighbour_search(model, X, Y, bound=0.02)
    assert labels.tolist() == [0, 1]


def test_neighbour_search_pixel_space_clamps_and_rounds():
    """mean = std = 0.5: pixels p = 0.5 x + 0.5 = (0.65, 0.6) for row 0; ε = 0.5 in pixels."""
    model = two_feature_linear()
    x_adv, labels = neighbour_search(model, X[:1], Y[:1], bound=0.5, mean=(0.5,), std=(0.5,))
    # p + 0.5 (-1, +1) = (0.15, 1.1) -> clamp (0.15, 1.0) -> round(255 p) / 255 = (38, 255) / 255
    expected = (torch.tensor([[38.0, 255.0]]) / 255 - 0.5) / 0.5
    torch.testing.assert_close(x_adv, expected)
    assert labels.tolist() == [1]  # logits (-0.702, 1, 0)


def test_neighbour_search_bad_inputs():
    model = two_feature_linear()
    with pytest.raises(ValueError, match="both mean and std"):
        neighbour_search(model, X, Y, bound=0.1, mean=(0.5,))
    with pytest.raises(ValueError, match="one value per channel"):
        neighbour_search(model, X, Y, bound=0.1, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="std must be positive"):
        neighbour_search(model, X, Y, bound=0.1, mean=(0.5,), std=(0.0,))
    with pytest.raises(ValueError, match="bound must be >= 0"):
        neighbour_search(model, X, Y, bound=-0.1)
    # labels the 3-output model has no class for, or float labels: one clear error, not torch's
    with pytest.raises(ValueError, match=r"0\.\.2 for a model with 3 outputs, got range 0\.\.7"):
        neighbour_search(model, X, torch.tensor([0, 7]), bound=0.1)
    with pytest.raises(ValueError, match="integer class indices"):
        neighbour_search(model, X, Y.float(), bound=0.1)


# -- Boundary Shrink ----------------------------------------------------------------------------
def forget_loader(x, y, batch_size=32):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)


def test_shrink_trains_on_nearest_wrong_labels():
    model = nn.Sequential(two_feature_linear())
    method = BoundaryShrink(bound=0.1)
    method.setup(model)
    loss = method.loss(model, UnlearnBatch({"forget": (X, Y)}), epoch=0)
    # by hand: the labels are [1, 1] (row 0's attack succeeds, row 1 keeps its own label)
    torch.testing.assert_close(loss, F.cross_entropy(model(X), torch.tensor([1, 1])))
    assert method.attack_success_ == 0.5


def test_shrink_labels_are_never_true_when_the_attack_succeeds(trained_mlp, blob_splits):
    model = TinyMLP()
    model.load_state_dict(trained_mlp)
    method = BoundaryShrink(bound=3.0)  # large enough that every forget sample crosses over
    method.setup(model)
    x, y = next(iter(blob_splits["forget_eval"]))
    _, nearest = neighbour_search(method.original_, x, y, bound=3.0)
    assert (nearest != y).all()
    loss = method.loss(model, UnlearnBatch({"forget": (x, y)}), epoch=0)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), nearest))
    assert method.attack_success_ == 1.0
    # bound 0: no step, so the label is θ_o's own prediction (as the reference keeps it): the
    # true label where θ_o is right, its mistake elsewhere; the success share counts mistakes
    method = BoundaryShrink(bound=0.0)
    method.setup(model)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    assert 0 < int((predicted != y).sum()) < len(y)
    loss = method.loss(model, UnlearnBatch({"forget": (x, y)}), epoch=0)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), predicted))
    assert method.attack_success_ == float((predicted != y).float().mean())


def test_shrink_attacks_a_frozen_copy_of_the_original(trained_mlp, blob_splits):
    model = TinyMLP()
    model.load_state_dict(trained_mlp)
    method = BoundaryShrink(bound=1.0, epochs=2, lr=0.05)
    method.unlearn(model, blob_splits["forget"])
    for name, value in method.original_.state_dict().items():
        torch.testing.assert_close(value, trained_mlp[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in method.original_.parameters())
    assert not torch.equal(model.head.weight, trained_mlp["head.weight"])
    with torch.no_grad():
        x, y = blob_splits["forget_eval"].dataset.tensors
        assert (model(x).argmax(1) == y).float().mean() < 0.5  # forgotten on the toy


# -- Boundary Expanding -------------------------------------------------------------------------
def test_expanding_head_keys_and_forget_accuracy(trained_mlp, blob_splits):
    model = TinyMLP()
    model.load_state_dict(trained_mlp)
    x, y = blob_splits["forget_eval"].dataset.tensors
    with torch.no_grad():
        before = (model(x).argmax(1) == y).float().mean()
    out = BoundaryExpanding(epochs=3, lr=0.05).unlearn(model, blob_splits["forget"])
    assert out is model
    assert model.head.out_features == 3 and model.head.weight.shape == (3, 32)
    assert list(model.state_dict()) == list(trained_mlp)
    TinyMLP().load_state_dict(model.state_dict())  # loads (strict) into the original architecture
    # the reference trains the whole widened model: body and head rows change
    for name in ("body.0.weight", "body.0.bias", "head.weight", "head.bias"):
        assert not torch.equal(model.state_dict()[name], trained_mlp[name]), name
    with torch.no_grad():
        after = (model(x).argmax(1) == y).float().mean()
    assert before > 0.85 and after < 0.2


def test_expanding_shadow_row_init_and_loss_by_hand():
    model = TinyMLP()
    method = BoundaryExpanding(seed=4)
    optimizer = method.configure_optimizer(model)
    expected = torch.randn(1, 32, generator=torch.Generator().manual_seed(4)) * math.sqrt(
        2.0 / (32 + 4)
    )
    torch.testing.assert_close(method.shadow_weight_.detach(), expected)
    torch.testing.assert_close(method.shadow_bias_.detach(), torch.zeros(1))
    assert optimizer.param_groups[-1]["params"] == [method.shadow_weight_, method.shadow_bias_]
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    loss = method.loss(
        model, UnlearnBatch({"forget": (x, torch.zeros(5, dtype=torch.long))}), epoch=0
    )
    h = model.features(x)
    widened = torch.cat([model(x), h @ method.shadow_weight_.T + method.shadow_bias_], dim=1)
    torch.testing.assert_close(loss, F.cross_entropy(widened, torch.full((5,), 3)))


def test_expanding_equals_the_explicitly_widened_and_pruned_model():
    """The reference: a (C+1)-row head with θ_o's rows copied, all parameters trained, the last
    row dropped; here the same SGD steps with the shadow row outside the model."""
    torch.manual_seed(0)
    model = TinyMLP()
    reference = copy.deepcopy(model)
    method = BoundaryExpanding(lr=0.1, momentum=0.9, seed=1)
    optimizer = method.configure_optimizer(model)
    widened = nn.Linear(32, 4)
    with torch.no_grad():
        widened.weight.copy_(torch.cat([reference.head.weight, method.shadow_weight_]))
        widened.bias.copy_(torch.cat([reference.head.bias, method.shadow_bias_]))
    reference.head = widened
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    x, y = blobs(n_per_class=8)
    for _ in range(3):
        optimizer.zero_grad()
        method.loss(model, UnlearnBatch({"forget": (x, y)}), epoch=0).backward()
        optimizer.step()
        ref_optimizer.zero_grad()
        F.cross_entropy(reference(x), torch.full_like(y, 3)).backward()
        ref_optimizer.step()
    torch.testing.assert_close(model.body[0].weight, reference.body[0].weight)
    torch.testing.assert_close(model.head.weight, reference.head.weight[:3])  # pruned
    torch.testing.assert_close(model.head.bias, reference.head.bias[:3])
    torch.testing.assert_close(method.shadow_weight_, reference.head.weight[3:])


def test_expanding_seed_sets_the_shadow_row(trained_mlp, blob_splits):
    def run(seed: int) -> torch.Tensor:
        model = TinyMLP()
        model.load_state_dict(trained_mlp)
        BoundaryExpanding(epochs=1, lr=0.05, seed=seed).unlearn(model, blob_splits["forget"])
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.testing.assert_close(run(2), run(2), rtol=0, atol=0)
    assert not torch.equal(run(2), run(3))


class _LinearLast(nn.Module):
    """The classifier (``head``) is registered first, so it is not the last Linear."""

    def __init__(self, classifier: bool) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.body = nn.Linear(2, 4)
        self.classifier = classifier

    def get_classifier(self) -> nn.Module | None:
        return self.head if self.classifier else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_classifier_head_rule():
    with_get = _LinearLast(classifier=True)
    assert classifier_head(with_get) is with_get.head  # get_classifier() wins
    without = _LinearLast(classifier=False)
    assert classifier_head(without) is without.body  # else the last nn.Linear in modules()
    model = TinyMLP()
    assert classifier_head(model) is model.head


class _NoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class _ScaledLogits(TinyMLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.head(self.body(x))


def test_expanding_bad_models(blob_splits):
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        BoundaryExpanding(epochs=1).unlearn(_NoLinear(), blob_splits["forget"])
    with pytest.raises(ValueError, match="not the output of its last Linear layer"):
        BoundaryExpanding(epochs=1).unlearn(_ScaledLogits(), blob_splits["forget"])
    # the classifier found by the rule (body, last registered) is not the output layer
    x, y = blob_splits["forget_eval"].dataset.tensors
    loader = forget_loader(x[:, :2], y)
    with pytest.raises(ValueError, match="not the output of its last Linear layer"):
        BoundaryExpanding(epochs=1).unlearn(_LinearLast(classifier=False), loader)


def test_reference_defaults():
    for method in (BoundaryShrink(), BoundaryExpanding()):
        assert (method.epochs, method.lr, method.momentum, method.weight_decay) == (
            10,
            1e-5,
            0.9,
            0.0,
        )
        assert method.streams == ("forget",) and not method.requires_retain
    assert BoundaryShrink().bound == 0.1
