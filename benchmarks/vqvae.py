"""The VQ-VAE on static binarized MNIST and mnist-5k: reconstruction, codebook use and the bound, with the uniform
and a learned prior; EMA against the codebook loss; with and without dead-code restarts.

    python benchmarks/vqvae.py --data-dir ../shared/data/binarized_mnist [--epochs 5] [--train-images 10000]

Every run goes through the real commands: ``pyrovae train --model vqvae`` (the first stage), ``pyrovae train
--model vqvae-prior --from RUN`` (a PixelCNN over the 7 x 7 code grid of the first stage's main variant), and
``pyrovae evaluate --k 1`` (a point-mass guide: L_k = L_1 for every k). Static binarized MNIST is trained on a
seeded subset of ``--train-images`` of its 50,000 training images (written as an ``.npz`` data file in
``--runs``, with the whole test split), so that the CPU budget holds. Writes ``benchmarks/results/vqvae.md``
and, per data set, the main variant's reconstructions, samples of the learned prior and code-usage histogram in
``benchmarks/results/figures/``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from report import RESULTS, header, run, write_report

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VARIANTS = {  # name -> pyrovae train options of the first stage
    "EMA, restarts": ["--codebook-update", "ema", "--restart-after", "20"],
    "EMA, no restarts": ["--codebook-update", "ema", "--restart-after", "0"],
    "codebook loss, restarts": ["--codebook-update", "loss", "--restart-after", "20"],
}
MAIN = "EMA, restarts"  # the variant that gets the learned prior and the figures
CODES = ["--codebook-size", "512", "--code-dim", "16", "--commitment", "0.25"]


def static_subset(args: argparse.Namespace) -> str:
    """Static binarized MNIST's seeded training subset and whole test split as an ``.npz`` data file."""
    from pyrovae.data import load_dataset

    path = args.runs / f"binarized_mnist_{args.train_images}.npz"
    if not path.exists():
        data = load_dataset("binarized-mnist", data_dir=args.data_dir)
        order = torch.randperm(50_000, generator=torch.Generator().manual_seed(0))[: args.train_images]
        train = data.split("train")[order].numpy().astype(np.float32).reshape(-1, 28, 28)  # 0 and 1
        test = data.split("test").numpy().astype(np.float32).reshape(-1, 28, 28)
        np.savez(path, train=train, test=test)
    return str(path)


def train(out: Path, options: list[str], args: argparse.Namespace) -> pd.DataFrame:
    if not (out / "checkpoint.pt").exists():
        run(["pyrovae", "train", "--out", str(out), "--epochs", str(args.epochs), "--batch-size", "100",
             "--device", args.device, "--no-progress", "--force", *options])  # fmt: skip
    return pd.read_csv(out / "metrics.csv")


def bound(out: Path, args: argparse.Namespace) -> pd.Series:
    run(["pyrovae", "evaluate", str(out), "--k", "1", "--device", args.device], capture=True)
    return pd.read_csv(out / "bounds.csv").iloc[0]


def code_histogram(out: Path, path: Path) -> None:
    """The test split's code usage of the run in ``out``, entries sorted by use."""
    import pyrovae
    from pyrovae.models.vqvae import code_usage
    from pyrovae.store import load_run_data

    loaded = pyrovae.load(out)
    data = load_run_data(loaded.config, "cpu")
    counts = code_usage(loaded.guide, data.eval_batches("test", 1000)).sort(descending=True).values
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.bar(range(len(counts)), counts.numpy(), width=1.0)
    ax.set(xlabel="codebook entry (by use)", ylabel="positions", yscale="log", title=f"code usage: {out.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def data_set(name: str, data: list[str], args: argparse.Namespace) -> list[dict]:
    rows = []
    for variant, options in VARIANTS.items():
        out = args.runs / f"{name}_{variant.replace(', ', '_').replace(' ', '_')}"
        metrics = train(out, [*data, "--model", "vqvae", *CODES, *options], args).iloc[-1]
        uniform = bound(out, args)
        row = {"data": name, "first stage": variant, "reconstruction (train)": metrics["reconstruction"],
               "perplexity": metrics["perplexity"], "codes used": int(metrics["codes_used"]),
               "bound, uniform prior": uniform["bound"], "bound, learned prior": None,
               "bits/dim (learned)": None, "s / epoch": metrics["seconds"]}  # fmt: skip
        if variant == MAIN:
            prior = args.runs / f"{name}_prior"
            train(prior, [*data, "--model", "vqvae-prior", "--from", str(out)], args)
            learned = bound(prior, args)
            row |= {"bound, learned prior": learned["bound"], "bits/dim (learned)": learned["bits_per_dim"]}
            figures = RESULTS / "figures"
            figures.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "reconstructions.png", figures / f"vqvae_{name}_reconstructions.png")
            shutil.copy(prior / "samples.png", figures / f"vqvae_{name}_prior_samples.png")
            code_histogram(out, figures / f"vqvae_{name}_code_usage.png")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each stage")
    parser.add_argument("--train-images", type=int, default=10_000, help="static MNIST's seeded training subset")
    parser.add_argument("--runs", type=Path, default=Path("runs/vqvae"), help="run directories (kept)")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = data_set("binarized-mnist", ["--dataset", static_subset(args)], args)
    rows += data_set("mnist-5k", ["--dataset", "mnist-5k"], args)
    minutes = (time.perf_counter() - start) / 60
    budget = f"""{args.epochs} epochs per stage, batch 100, Adam lr 1e-3; first stage: K = 512 entries of
  D = 16, commitment 0.25, EMA decay 0.99, entries started at encoder outputs, restarts after 20 unused
  steps (where on); learned prior: a PixelCNN (7 x 7 mask A, 5 masked 3 x 3 layers, 64 maps) over the
  7 x 7 code grid of the main variant, first stage frozen; static binarized MNIST: a seeded
  {args.train_images:,} of its training images, all 10,000 test images; mnist-5k: its 4,500 / 500 split,
  binarized per pass"""
    notes = [
        "bounds: log p(x | z_q) + log p(z_q) on the test split, nats per image (L_k = L_1: the guide is a point "
        "mass); uniform prior: log p(z_q) = -49 log 512 = -305.7 nats; perplexity and codes used: the last "
        "epoch's, on the test split",
        f"total wall-clock time: {minutes:.1f} min",
    ]
    write_report(
        "vqvae.md",
        header("VQ-VAE: codebook use and an honest bound", budget=budget, notes=notes, device=args.device),
        pd.DataFrame(rows).round(3),
    )


if __name__ == "__main__":
    main()
