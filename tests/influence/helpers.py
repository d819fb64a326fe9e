"""Tiny models, data and slow reference implementations shared by the influence tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


class MLP(nn.Module):
    def __init__(self, d_in: int = 6, hidden: int = 5, n_classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class SmallBNCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> pool -> Linear, with dropout (must be off in eval mode)."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(3 * 4 * 4, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.head(self.drop(h.flatten(1)))


def make_cnn(seed: int = 0) -> SmallBNCNN:
    """CNN in float64 whose BatchNorm running stats are non-trivial, left in TRAIN mode."""
    torch.manual_seed(seed)
    model = SmallBNCNN().double()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 2, 8, 8, dtype=torch.float64) * 2 + 1)
    model.train()
    return model


def make_mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP().double()


def cnn_data(n: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 8, 8, generator=g, dtype=torch.float64), torch.randint(
        0, 4, (n,), generator=g
    )


def mlp_data(n: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def loader(x: Tensor, y: Tensor, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def slow_per_sample_grads(model: nn.Module, x: Tensor, y: Tensor, loss_fn=F.cross_entropy):
    """One autograd backward per sample, model in eval mode (obviously correct reference)."""
    model.eval()
    names = [n for n, _ in model.named_parameters()]
    out = {n: [] for n in names}
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i : i + 1]), y[i : i + 1])
        params = list(model.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for n, p, g in zip(names, params, grads, strict=True):
            out[n].append(torch.zeros_like(p) if g is None else g)  # unused: gradient 0
    return {n: torch.stack(v) for n, v in out.items()}


def linear_model(d_in: int = 4, n_classes: int = 3, seed: int = 0) -> nn.Linear:
    """A single float64 ``nn.Linear``: its gradients have a closed form (see below)."""
    torch.manual_seed(seed)
    return nn.Linear(d_in, n_classes).double()


def linear_closed_form_grads(
    model: nn.Linear, x: Tensor, y: Tensor | None = None, loss: str = "ce"
) -> dict[str, Tensor]:
    """Per-sample gradients of a linear model ``z = W x + b`` written out by hand (no autograd).

    ``loss="ce"``: softmax cross-entropy, ``dL/dz = softmax(z) - onehot(y)``;
    ``loss="l2"``: ``||z||^2``, ``dL/dz = 2 z``. Then ``grad_W = dL/dz x^T`` and ``grad_b = dL/dz``.
    """
    with torch.no_grad():
        z = x @ model.weight.T + model.bias
        if loss == "ce":
            dz = torch.softmax(z, dim=1)
            dz[torch.arange(len(y)), y] -= 1.0
        elif loss == "l2":
            dz = 2.0 * z
        else:
            raise ValueError(loss)
        return {"weight": dz[:, :, None] * x[:, None, :], "bias": dz}


def slow_ssd_importance(model: nn.Module, dl, loss_fn=F.cross_entropy, power: float = 2.0):
    """Re-implementation of the SSD reference loop: .backward() per batch, |grad|^p summed,
    divided by len(dataloader)."""
    model.eval()
    imp = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for batch in dl:
        x, y = batch[0], batch[1]
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                imp[n] += p.grad.abs() ** power
    model.zero_grad(set_to_none=True)
    return {n: v / len(dl) for n, v in imp.items()}


def max_rel_err(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """Largest ||a_k - b_k|| / ||b_k|| over keys (keys must match)."""
    assert list(a) == list(b), (list(a), list(b))
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-300)) for k in a)
