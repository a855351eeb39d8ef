"""The course MNIST experiment (Tarokh's VAE slides), reproduced with ``pyrovae train``.

    python benchmarks/course_mnist.py

Adam lr 1e-3, batch size 128, 10 epochs, latent size 20, on ``mnist-5k``;
reconstructions of test digits and samples decoded from one fixed
Z in R^(128 x 20) after epochs 1, 5 and 10 (``--snapshot-epochs 1,5,10``). Writes
``benchmarks/results/course_mnist.md`` and its two figures.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pyrovae.viz.plots import new_figure, save_figure

from report import RESULTS, header, run, write_report

EPOCHS = (1, 5, 10)


def snapshot_figure(run_dir: Path, name: str, title: str, out: Path) -> None:
    """The snapshots ``{name}_e{N}.png`` side by side, one panel per epoch."""
    fig = new_figure(12, 2.75 if name == "samples" else 4.75)
    for ax, epoch in zip(fig.subplots(1, len(EPOCHS)), EPOCHS, strict=True):
        with Image.open(run_dir / f"{name}_e{epoch}.png") as image:
            ax.imshow(np.asarray(image.convert("RGB")), interpolation="nearest")
        ax.set_title(f"after epoch {epoch}")
        ax.set_axis_off()
    fig.suptitle(title)
    save_figure(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/course-mnist", help="run directory (recreated)")
    args = parser.parse_args()
    run_dir = Path(args.run)
    command = [
        "pyrovae", "train", "--dataset", "mnist-5k", "--epochs", "10", "--batch-size", "128", "--lr", "1e-3",
        "--latent-dim", "20", "--snapshot-epochs", ",".join(map(str, EPOCHS)), "--device", "cpu", "--no-progress",
        "--force", "--out", str(run_dir),
    ]  # fmt: skip
    run(command)
    RESULTS.mkdir(exist_ok=True)
    snapshot_figure(
        run_dir,
        "reconstructions",
        "Test digits (odd rows) and their reconstructions E[x | z] (even rows)",
        RESULTS / "course_mnist_reconstructions.png",
    )
    snapshot_figure(
        run_dir,
        "samples",
        "E[x | z] for one fixed Z in R^(128 x 20), Z_i ~ N(0, I)",
        RESULTS / "course_mnist_samples.png",
    )
    metrics = pd.read_csv(run_dir / "metrics.csv")
    table = metrics[["epoch", "train_elbo", "test_elbo", "reconstruction", "kl", "active_units", "seconds"]].round(2)
    notes = [
        f"pyrovae command: `{shlex.join(command[:-2])} --out RUN`",
        "the machine is shared with other jobs: the seconds are indicative only",
        """differences from the course: `mnist-5k` holds 4,500 training digits, not MNIST's
  60,000, so 10 epochs are 360 steps instead of about 4,700, and the digits are
  binarized (dynamically for training) for the Bernoulli likelihood.""",
    ]
    budget = """10 epochs x 4,500 training digits of `mnist-5k` (36 steps of 128 per epoch),
  784-400-400-20 ReLU MLPs, Bernoulli decoder, one-sample ELBO; 500 test digits"""
    write_report(
        "course_mnist.md",
        header("The course MNIST experiment with pyrovae", budget=budget, notes=notes, device="cpu"),
        """The experiment of the VAE course slides (`../shared/background/vae-slides-tarokh.txt`,
"MNIST Experiment"): Adam, learning rate 0.001, batch size 128, 10 epochs, latent
size 20; reconstructions, and samples decoded from one fixed Z in R^(128 x 20),
after epochs 1, 5 and 10.""",
        "Per epoch (nats per datapoint; `kl` on the training split, active units on the test split):",
        table,
        "## Reconstructions after epochs 1, 5 and 10\n\n![reconstructions](course_mnist_reconstructions.png)",
        "## Samples from the same fixed Z after epochs 1, 5 and 10\n\n![samples](course_mnist_samples.png)",
    )


if __name__ == "__main__":
    main()
