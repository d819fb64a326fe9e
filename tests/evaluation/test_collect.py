"""collect() and Outputs on a tiny linear model whose logits are known by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.evaluation.collect import Outputs, collect

# W (3 x 2), b (3,) and five inputs; logits = x W^T + b, worked out by hand below.
W = [[1.0, 2.0], [0.0, -1.0], [3.0, 0.0]]
B = [0.0, 1.0, -1.0]
X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0], [0.0, 0.0]]
Y = [0, 1, 2, 0, 1]
EXPECTED_LOGITS = [
    [1.0, 1.0, 2.0],  # [1*1+2*0+0, 0*1-1*0+1, 3*1+0-1]
    [2.0, 0.0, -1.0],  # [0+2+0, 0-1+1, 0+0-1]
    [3.0, 0.0, 2.0],  # [1+2, 0-1+1, 3-1]
    [0.0, 2.0, 5.0],  # [2-2, 0+1+1, 6-1]
    [0.0, 1.0, -1.0],  # b
]


def _hand_ce(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[target]


class Linear(nn.Module):
    """nn.Linear with known weights that records the mode it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(W))
            self.fc.bias.copy_(torch.tensor(B))
        self.seen: list[tuple[bool, bool, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_inference_mode_enabled(), x.shape[0]))
        return self.fc(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def _loader(batch_size: int = 2, extra: bool = False) -> DataLoader:
    tensors = [torch.tensor(X), torch.tensor(Y)]
    if extra:
        tensors.append(torch.arange(len(Y)))
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=False)


def test_collect_gives_hand_computed_logits_and_losses() -> None:
    model = Linear()
    out = collect(model, _loader(batch_size=2))
    assert torch.allclose(out.logits, torch.tensor(EXPECTED_LOGITS), atol=1e-6)
    assert out.targets.tolist() == Y
    expected_losses = [_hand_ce(row, y) for row, y in zip(EXPECTED_LOGITS, Y, strict=True)]
    assert torch.allclose(out.losses, torch.tensor(expected_losses), atol=1e-5)
    assert out.logits.dtype == torch.float32
    assert out.targets.dtype == torch.int64
    assert out.losses.dtype == torch.float32
    assert out.features is None
    # batched: three forwards of sizes 2, 2, 1, all in eval mode under inference_mode
    assert model.seen == [(False, True, 2), (False, True, 2), (False, True, 1)]


def test_collect_restores_train_mode_and_mixed_submodule_modes() -> None:
    model = Linear()
    model.train()
    collect(model, _loader())
    assert model.training and model.fc.training
    model.train()
    model.fc.eval()  # e.g. a frozen submodule inside a training model
    collect(model, _loader())
    assert model.training and not model.fc.training
    model.eval()
    collect(model, _loader())
    assert not model.training


def test_collect_accepts_extra_batch_items_and_features() -> None:
    out = collect(Linear(), _loader(extra=True), features=True)
    assert torch.allclose(out.logits, torch.tensor(EXPECTED_LOGITS), atol=1e-6)
    assert torch.equal(out.features, 2 * torch.tensor(X))


def test_collect_outputs_are_ordinary_tensors() -> None:
    out = collect(Linear(), _loader())
    out.logits.add_(1.0)  # an inference tensor would refuse in-place updates
    assert not out.logits.is_inference()


def test_collect_errors() -> None:
    with pytest.raises(ValueError, match="empty loader"):
        collect(Linear(), [])
    with pytest.raises(ValueError, match="features"):
        collect(nn.Linear(2, 3), _loader(), features=True)
    with pytest.raises(TypeError, match=r"\(x, y\)"):
        collect(Linear(), [torch.zeros(2, 2)])
    with pytest.raises(ValueError, match="one integer class id"):
        collect(Linear(), [(torch.zeros(2, 2), torch.zeros(2, 3))])


def test_collect_restores_mode_after_an_error() -> None:
    model = Linear()
    model.train()
    with pytest.raises(TypeError):
        collect(model, [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)), "bad"])
    assert model.training


def test_outputs_properties_by_hand() -> None:
    # logits (0, ln 3) -> softmax (1/4, 3/4); target 1 -> confidence 3/4
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 0.0]])
    out = Outputs(logits=logits, targets=torch.tensor([1, 1]), losses=torch.zeros(2))
    assert torch.allclose(out.probs[0], torch.tensor([0.25, 0.75]))
    assert out.preds.tolist() == [1, 0]
    assert torch.allclose(out.true_class_confidence[0], torch.tensor(0.75))
    assert len(out) == 2 and out.num_classes == 2
    assert len(out.head(1)) == 1 and len(out.head(5)) == 2


def test_outputs_validates_shapes() -> None:
    with pytest.raises(ValueError, match="targets"):
        Outputs(
            logits=torch.zeros(3, 2),
            targets=torch.zeros(2, dtype=torch.long),
            losses=torch.zeros(3),
        )
    with pytest.raises(ValueError, match="logits"):
        Outputs(logits=torch.zeros(3), targets=torch.zeros(3), losses=torch.zeros(3))
    with pytest.raises(ValueError, match="losses"):
        Outputs(logits=torch.zeros(3, 2), targets=torch.zeros(3), losses=torch.zeros(3, 1))
