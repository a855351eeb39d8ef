"""Training throughput of pyrovae against plain PyTorch, epoch by epoch in one process.

    python benchmarks/speed_paired.py --data-dir ../shared/data/binarized_mnist [--rounds 7]

``speed.py`` runs every measurement in its own process, as a user would; on a
shared machine whose speed drifts by tens of percent from minute to minute, its
ratios carry that drift. Here the three loops of ``speed.py`` (``pyrovae train``'s
``Trainer.train_epoch``, the plain loop and the tuned plain loop, on the same data
and architecture) run in one process, one epoch each in turn, for ``--rounds``
rounds after a warm-up round: a slow spell of the machine then hits neighbouring
epochs of all three. The ratio of each round is taken, and the table gives their
median and range. All three run with pyrovae's malloc settings (they share the process).
Writes ``benchmarks/results/speed_paired.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import pyro
import torch

from pyrovae.cli import keep_freed_memory
from pyrovae.inference import TrainConfig, Trainer

from report import header, write_report
from speed import TRAINING, _plain_epoch, _setup


def paired_rounds(args: argparse.Namespace, name: str) -> dict[str, list[float]]:
    """Examples/s of each loop in each round (the warm-up round dropped)."""
    objective, k = TRAINING[name]
    data, model, guide = _setup(args, args.train_images)
    pyro.clear_param_store()
    config = TrainConfig(batch_size=args.batch_size, objective=objective, objective_options={"num_particles": k})
    trainer = Trainer(model, guide, data, config, progress=False)
    _, plain_model, plain_guide = _setup(args, 1)  # fresh networks with the same initial weights
    plain = {
        tuned: torch.optim.Adam([*plain_model.parameters(), *plain_guide.parameters()], lr=1e-3, fused=tuned or None)
        for tuned in (False, True)
    }
    n = data.split("train").shape[0]
    speeds: dict[str, list[float]] = {"pyrovae": [], "plain": [], "plain tuned": []}
    for _ in range(args.rounds + 1):
        speeds["pyrovae"].append(n / trainer.train_epoch()["seconds"])
        with pyro.validation_enabled(False):
            for tuned, optimizer in plain.items():
                seconds = _plain_epoch(plain_model, plain_guide, optimizer, data, args, objective, k, tuned)
                speeds["plain tuned" if tuned else "plain"].append(n / seconds)
    return {impl: s[1:] for impl, s in speeds.items()}


def row(name: str, speeds: dict[str, list[float]], batch_size: int) -> dict:
    ratios = {
        ref: [p / q for p, q in zip(speeds["pyrovae"], speeds[ref], strict=True)] for ref in ("plain", "plain tuned")
    }
    return {
        "configuration": f"train {name}, batch {batch_size}",
        "pyrovae examples/s (median)": statistics.median(speeds["pyrovae"]),
        "plain examples/s (median)": statistics.median(speeds["plain"]),
        "ratio to plain: median (min-max)": "{:.2f} ({:.2f}-{:.2f})".format(
            statistics.median(ratios["plain"]), min(ratios["plain"]), max(ratios["plain"])),
        "ratio to plain tuned: median (min-max)": "{:.2f} ({:.2f}-{:.2f})".format(
            statistics.median(ratios["plain tuned"]), min(ratios["plain tuned"]), max(ratios["plain tuned"])),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-images", type=int, default=5_000, help="seeded subset of the training split")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds, after one warm-up round")
    parser.add_argument("--configurations", default=",".join(TRAINING), help="comma-separated subset")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", default="speed_paired.md", help="report name in benchmarks/results")
    args = parser.parse_args()
    keep_freed_memory()
    rows = [row(name, paired_rounds(args, name), args.batch_size) for name in args.configurations.split(",")]
    budget = f"""the loops of [speed.md](speed.md) (784-400-400-50 ReLU, batch {args.batch_size}, Adam lr 1e-3,
  static binarized MNIST, {args.train_images:,} training images), one epoch each in turn, {args.rounds} rounds
  after a warm-up round; the ratio of each round, its median and range over the rounds"""
    write_report(
        args.out,
        header(
            "Speed, paired: pyrovae and plain PyTorch epochs in turn, in one process", budget=budget, device=args.device
        ),
        pd.DataFrame(rows).round(1),
    )


if __name__ == "__main__":
    main()
