"""Benchmark: recommender unlearning (ReverseBPR, E2URec) vs retraining from scratch.

On the embedded MovieLens (659 users, 2,078 items, 31,056 training edges) a LightGCN (D = 64,
3 layers) is trained with BPR (40 epochs, Adam 1e-2: the schedule of
``configs/experiments/movielens_*.yaml``); then, for each forget request of those configs
(5 % of the users, 5 % of the items, 5 % of the interactions), in the same run:

- the naive reference: ``Retrain`` from scratch on ``D_r`` with the same schedule;
- ``ReverseBPR`` (MMRecUn, arXiv:2405.15328) and ``E2URec`` (arXiv:2403.03536) on a copy of the
  original, with the configs' settings.

Every path goes through the same Lightning loop (``unlearnkit.module.default_trainer``) and the
same ranking evaluation (test Recall@20 with retained + validation items masked, users / items
left without edges excluded). Printed: median wall times, the speed-up over retraining, and test
Recall@20 relative to the retrained model's. Targets: >= 10x faster, within 5 % recall.

Run:  .venv/bin/python benchmarks/bench_recsys_unlearning.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import logging
import warnings

import torch

from _timing import format_table, measure
from unlearnkit.data import ForgetSpec
from unlearnkit.module import default_trainer
from unlearnkit.recsys.data import MovieLensSmallDataModule
from unlearnkit.recsys.experiment import RecModelConfig, RecTrainSchedule
from unlearnkit.recsys.methods import E2URec, ReverseBPR
from unlearnkit.recsys.module import RecEvaluator

#: (request, ReverseBPR learning rate) as in configs/experiments/movielens_*.yaml.
REQUESTS = {
    "user": (ForgetSpec(kind="user", fraction=0.05, seed=0), 200.0),
    "item": (ForgetSpec(kind="item", fraction=0.05, seed=0), 100.0),
    "interaction": (ForgetSpec(kind="interaction", fraction=0.05, seed=0), 10.0),
}


def quiet_trainer(epochs: int):
    return default_trainer(epochs, enable_progress_bar=False, enable_model_summary=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per method")
    parser.add_argument("--retrain-repeats", type=int, default=1, help="timed retrains per request")
    parser.add_argument("--epochs", type=int, default=40, help="BPR epochs of original / retrain")
    parser.add_argument("--kinds", nargs="+", default=list(REQUESTS), choices=list(REQUESTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    dm = MovieLensSmallDataModule(forget=REQUESTS["user"][0])
    dm.setup()
    arch = RecModelConfig()
    schedule = RecTrainSchedule(epochs=args.epochs)
    evaluator = RecEvaluator()
    original = arch.build(dm.num_users, dm.num_items, seed=0).set_graph(dm.train_edges)
    method = schedule.method(seed=0, from_scratch=False)
    method.fit(original, {"retain": dm.full_train_dataloader()}, trainer=quiet_trainer(args.epochs))

    rows, summary = [], []
    for kind in args.kinds:
        spec, rbpr_lr = REQUESTS[kind]
        split = dm.set_forget(spec)

        def recall(model, split=split) -> float:
            return evaluator.collect(model, dm.data, split).metrics["test/recall@20"]

        retrained = {}

        def retrain(retrained=retrained) -> None:
            model = arch.build(dm.num_users, dm.num_items, seed=1).set_graph(dm.retain_edges)
            schedule.method(seed=0, from_scratch=True).fit(
                model, {"retain": dm.retain_dataloader()}, trainer=quiet_trainer(args.epochs)
            )
            retrained["model"] = model

        t_ret = measure(retrain, repeats=args.retrain_repeats, warmup=0)
        r_ret = recall(retrained["model"])
        rows.append(
            [kind, "Retrain (reference)", f"{t_ret.median_s:.2f}", "1.0x", f"{r_ret:.4f}", "—"]
        )
        for name, make in (
            ("ReverseBPR", lambda lr=rbpr_lr: ReverseBPR(lr=lr)),
            ("E2URec", E2URec),
        ):
            result = {}

            def unlearn(make=make, result=result) -> None:
                model = copy.deepcopy(original)
                method = make()
                method.unlearn(
                    model,
                    dm.forget_dataloader(),
                    dm.retain_dataloader(),
                    trainer=quiet_trainer(method.epochs),
                )
                result["model"] = model

            timing = measure(unlearn, repeats=args.repeats, warmup=1)
            r = recall(result["model"])
            ratio = t_ret.median_s / timing.median_s
            rel = (r - r_ret) / r_ret
            rows.append(
                [
                    kind,
                    name,
                    f"{timing.median_s:.2f}",
                    f"{ratio:.1f}x",
                    f"{r:.4f}",
                    f"{100 * rel:+.1f}%",
                ]
            )
            summary.append((kind, name, ratio, rel))

    print(
        f"torch threads: {args.threads}; times: median of {args.repeats} (methods), "
        f"{args.retrain_repeats} (retrain)"
    )
    print(
        format_table(
            [
                "request",
                "method",
                "time (s)",
                "speed-up vs retrain",
                "test Recall@20",
                "vs retrained",
            ],
            rows,
        )
    )
    print()
    for kind, name, ratio, rel in summary:
        met = ratio >= 10 and abs(rel) <= 0.05
        print(
            f"{kind:12s} {name:10s} speed-up {ratio:5.1f}x (target >= 10x), recall "
            f"{100 * rel:+.1f}% (target within 5%): {'met' if met else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
