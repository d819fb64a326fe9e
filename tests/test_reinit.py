"""reinitialize: the model's own init, seeded, and a check that no parameter stays trained."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unlearnkit.recsys.models import LightGCNRecommender, MFRecommender
from unlearnkit.reinit import reinitialize, reset_submodules
from unlearnkit.vision.models import TimmClassifier, build_model


def _scramble(model: nn.Module) -> dict[str, torch.Tensor]:
    """Pretend training: every parameter and float buffer set to 7, returns that state."""
    with torch.no_grad():
        for t in [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]:
            t.fill_(7.0)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _changed(model: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    after = model.state_dict()
    return [k for k, v in before.items() if v.is_floating_point() and torch.equal(v, after[k])]


def test_mf_gets_its_xavier_init_not_the_embedding_default():
    num_users, num_items, dim = 400, 300, 32
    model = MFRecommender(num_users, num_items, embedding_dim=dim)
    _scramble(model)
    reinitialize(model, seed=0)
    # Xavier-uniform on a (n, D) table: U(-b, b) with b = sqrt(6 / (n + D)), std = b / sqrt(3)
    for table, n in ((model.user_embedding, num_users), (model.item_embedding, num_items)):
        std = math.sqrt(2.0 / (n + dim))
        assert float(table.weight.std()) == pytest.approx(std, rel=0.03)
        assert float(table.weight.abs().max()) <= math.sqrt(6.0 / (n + dim))
    # the old Retrain called nn.Embedding.reset_parameters: N(0, 1), std 1
    reset_submodules(model)
    assert float(model.user_embedding.weight.std()) == pytest.approx(1.0, rel=0.03)


def test_lightgcn_and_feature_projection_are_reinitialised_and_seeded():
    feats = torch.rand(6, 3)
    model = LightGCNRecommender(5, 6, embedding_dim=4, num_layers=2, item_features=feats)
    model.set_graph(torch.tensor([[0, 1, 4], [0, 5, 2]]))
    before = _scramble(model)
    reinitialize(model, seed=3)
    assert _changed(model, before) == []
    assert model.lightgcn.alpha.tolist() == pytest.approx([1 / 3] * 3)
    assert model.graph_edges.size(1) == 3  # the graph is data: kept
    first = {k: v.clone() for k, v in model.state_dict().items()}
    reinitialize(model, seed=3)
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    reinitialize(model, seed=4)
    assert not torch.equal(first["lightgcn.embedding.weight"], model.lightgcn.embedding.weight)


@pytest.mark.parametrize("arch", ["small_cnn", "compact_cifar", "resnet18_cifar"])
def test_vision_models_rewrite_every_parameter_and_running_statistic(arch):
    model = build_model(arch, num_classes=3, in_channels=3)
    before = _scramble(model)
    reinitialize(model, seed=0)
    assert _changed(model, before) == []
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.running_var.tolist() == [1.0] * bn.num_features and float(bn.weight.min()) == 1.0


def test_small_cnn_reinit_equals_construction_under_the_same_seed():
    torch.manual_seed(5)
    built = build_model("small_cnn", num_classes=10, in_channels=1)
    other = build_model("small_cnn", num_classes=10, in_channels=1)
    reinitialize(other, seed=5)
    for (name, a), b in zip(built.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resnet18_convolutions_get_torchvision_kaiming_fan_out():
    model = build_model("resnet18_cifar", num_classes=10, in_channels=3)
    _scramble(model)
    reinitialize(model, seed=0)
    w = model.layer4[0].conv1.weight  # (512, 256, 3, 3): fan_out = 512 * 9
    assert float(w.std()) == pytest.approx(math.sqrt(2.0 / (512 * 9)), rel=0.02)


def test_timm_vit_cls_token_and_pos_embed_are_redrawn():
    model = TimmClassifier("test_vit", num_classes=3, in_channels=3)
    before = _scramble(model)
    assert "model.cls_token" in before and "model.pos_embed" in before
    reinitialize(model, seed=0)
    assert _changed(model, before) == []
    # timm's ViT init: pos_embed ~ trunc_normal(std 0.02), cls_token ~ normal(std 1e-6)
    assert float(model.model.pos_embed.std()) == pytest.approx(0.02, rel=0.2)
    assert float(model.model.cls_token.abs().max()) < 1e-4


class _Bare(nn.Module):
    """A token no submodule resets (like a ViT's cls_token without the model's own reset)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.token = nn.Parameter(torch.full((3,), 7.0))


def test_a_parameter_left_trained_is_named_and_the_model_restored():
    model = _Bare()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"'token' was not re-initialised.*reset_parameters\(\)"):
        reinitialize(model, seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
