"""Numerics shared by influence-style unlearning methods (SSD, IAU, datamodels).

Per-sample gradients, diagonal Fisher information, Hessian-vector products, inverse-HVP solvers
(conjugate gradient, LiSSA, WoodFisher), whole-split mean gradients, the gradient-restriction
training loss and seeded random projections. Parameter-shaped quantities are
``dict[str, Tensor]`` keyed by ``model.named_parameters()`` names throughout.
"""

from unlearnkit.influence.fisher import (
    expected_fisher_diagonal,
    fisher_diagonal,
    l2_output_loss,
)
from unlearnkit.influence.gradients import gradient_restriction_loss, mean_gradient
from unlearnkit.influence.hvp import hvp, model_hvp
from unlearnkit.influence.ihvp import conjugate_gradient, lissa, woodfisher
from unlearnkit.influence.per_sample import (
    LossFn,
    ParamSelector,
    PerSampleMethod,
    eval_mode,
    make_per_sample_grad_fn,
    per_sample_grads,
    select_params,
)
from unlearnkit.influence.projection import random_projection
from unlearnkit.influence.tree import flatten_dict, unflatten_dict

__all__ = [
    "LossFn",
    "ParamSelector",
    "PerSampleMethod",
    "conjugate_gradient",
    "eval_mode",
    "expected_fisher_diagonal",
    "fisher_diagonal",
    "flatten_dict",
    "gradient_restriction_loss",
    "hvp",
    "l2_output_loss",
    "lissa",
    "make_per_sample_grad_fn",
    "mean_gradient",
    "model_hvp",
    "per_sample_grads",
    "random_projection",
    "select_params",
    "unflatten_dict",
    "woodfisher",
]
