"""One example figure of every ``pyrovae plot`` kind, from trained ``mnist-5k`` runs.

    python benchmarks/plot_gallery.py

Trains two runs with the course settings (10 epochs, batch 128, Adam 1e-3,
784-400-400 ReLU MLPs), one with a 20-dimensional latent and one with a 2-D
latent (for ``manifold``), evaluates L_1, L_5 and L_50 of the first (for
``curves``), all through the real commands, then draws every kind into
``benchmarks/results/figures/`` and lists the commands in ``benchmarks/results/figures.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import pandas as pd

from pyrovae.viz.figures import KINDS

from report import RESULTS, header, run, write_report

FIGURES = Path(os.path.relpath(RESULTS / "figures"))  # relative: the commands are written out
LATENTS = (20, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help="where the two run directories go (recreated)")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    runs = {d: Path(args.runs) / f"gallery-d{d}" for d in LATENTS}
    options = ["--dataset", "mnist-5k", "--epochs", str(args.epochs), "--batch-size", "128", "--device", "cpu"]
    options += ["--no-progress", "--force"]
    train = {d: ["pyrovae", "train", *options, "--latent-dim", str(d), "--out", str(runs[d])] for d in LATENTS}
    evaluate = ["pyrovae", "evaluate", str(runs[20]), "--k", "1,5,50", "--device", "cpu"]
    plots = [(kind, runs[2 if kind == "manifold" else 20], f"{kind}.png") for kind in KINDS]
    plots.append(("latent-map", runs[2], "latent-map-2d.png"))
    commands = [
        ["pyrovae", "plot", str(out), "--kind", kind, "--device", "cpu", "--out", str(FIGURES / name)]
        for kind, out, name in plots
    ]
    for command in [*train.values(), evaluate, *commands]:
        run(command)
    final = {d: pd.read_csv(out / "metrics.csv").iloc[-1] for d, out in runs.items()}
    figures = pd.DataFrame(
        [
            {"kind": f"`{kind}`", "figure": f"[{name}](figures/{name})", "command": f"`{shlex.join(command)}`"}
            for (kind, _, name), command in zip(plots, commands, strict=True)
        ]
    )
    trained = "\n".join(
        f"- D = {d}: `{shlex.join(train[d])}`: test ELBO {final[d]['test_elbo']:.2f} nats, "
        f"{int(final[d]['active_units'])} of {d} units active, {final[d]['seconds']:.1f} s in the last epoch"
        for d in LATENTS
    )
    budget = f"""two runs of {args.epochs} epochs x 4,500 `mnist-5k` training digits, batch 128, Adam 1e-3,
  784-400-400-D ReLU MLPs; every figure uses the 500 test digits"""
    write_report(
        "figures.md",
        header(
            "Example figures of every `pyrovae plot` kind (mnist-5k)",
            budget=budget,
            notes=["the machine is shared with other jobs"],
            device="cpu",
        ),
        "Runs:",
        trained,
        f"Bounds of the D = 20 run (for `curves`): `{shlex.join(evaluate)}`",
        figures,
    )


if __name__ == "__main__":
    main()
