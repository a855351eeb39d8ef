"""Where one ``pyrovae train`` step's time goes, against the plain PyTorch step of ``speed.py``.

    python benchmarks/profile_step.py --data-dir ../shared/data/binarized_mnist --objective elbo [--threads 1]

Times ``--steps`` steps of ``Trainer.step`` (784-400-400-50 ReLU, batch 100) and of
the plain loop, then profiles the pyrovae steps with cProfile and groups the time
spent *in* each function (tottime) by where the code lives: torch's C++ kernels
and autograd, Adam, Pyro's Python (poutine handlers, traces) and pyrovae's
Python (model and guide graph, likelihood wrapper, objective). The Python
groups are the cost of stating the model as a Pyro program; the rest is the
same arithmetic as the plain loop. Prints a table and writes it to
``benchmarks/results/profile_step_{objective}.md`` with machine, date and command.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict

import pandas as pd
import pyro
import torch

from pyrovae.cli import keep_freed_memory
from pyrovae.inference import TrainConfig, Trainer

from report import header, write_report
from speed import TRAINING, _plain_loss, _setup


def group(file: str, function: str) -> str:
    """The part of the stack a profiled function belongs to."""
    if file == "~":  # C builtins: torch's kernels and the autograd engine
        if "run_backward" in function:
            return "autograd backward (C++)"
        return "Adam (fused kernel)" if "fused_adam" in function else "torch kernels and builtins (C++)"
    if "/torch/optim/" in file:
        return "Adam (Python)"
    if "/pyro/" in file:
        return "Pyro (Python)"
    if "/torch/" in file:
        return "torch (Python: nn, distributions, autograd)"
    return "pyrovae and other Python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--objective", default="elbo", choices=list(TRAINING))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    args.device, args.batch_size = "cpu", 100
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    objective, k = TRAINING[args.objective]
    data, model, guide = _setup(args, 2000)
    trainer = Trainer(
        model, guide, data, TrainConfig(objective=objective, objective_options={"num_particles": k}), progress=False
    )
    optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-3)
    x = data.split("train")[:100]

    def plain_step() -> None:
        loss = _plain_loss(model, guide, x, objective, k) * 20
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    milliseconds = {}
    with pyro.validation_enabled(False):
        for name, step in (("pyrovae", lambda: trainer.step(x, 1.0)), ("plain", plain_step)):
            for _ in range(20):  # warm-up
                step()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            milliseconds[name] = (time.perf_counter() - start) / args.steps * 1e3
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.steps):
            trainer.step(x, 1.0)
        profile.disable()
    groups: dict[str, float] = defaultdict(float)
    for (file, _, function), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():
        groups[group(file, function)] += tottime
    total = sum(groups.values())
    per_step = total / args.steps * 1e3
    table = pd.DataFrame(
        [
            {"part of the step": name, "ms per step": seconds / args.steps * 1e3, "share %": 100 * seconds / total}
            for name, seconds in sorted(groups.items(), key=lambda kv: -kv[1])
        ]
    ).round({"ms per step": 2, "share %": 1})
    pyrovae_ms, plain_ms = milliseconds["pyrovae"], milliseconds["plain"]
    unprofiled = f"""unprofiled: pyrovae {pyrovae_ms:.2f} ms per step, plain PyTorch {plain_ms:.2f} ms;
  profiled pyrovae step {per_step:.2f} ms (cProfile tottime by where the code lives)"""
    write_report(
        f"profile_step_{args.objective.replace(' ', '_').replace('=', '')}.md",
        header(
            f"Where a pyrovae training step's time goes ({args.objective})",
            budget=f"784-400-400-50 ReLU, batch 100, static binarized MNIST; {args.steps} steps after 20 warm-up steps",
            notes=[unprofiled],
            device="cpu",
        ),
        table,
    )


if __name__ == "__main__":
    main()
