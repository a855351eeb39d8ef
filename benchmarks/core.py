"""pyrovae's VAE against a plain PyTorch VAE: same data, architecture and budget.

    python benchmarks/core.py --data-dir ../shared/data/binarized_mnist

Runs ``pyrovae train`` (the real command, into a fresh run directory) and the
plain loop of ``benchmarks/plain_vae.py``, then writes
``benchmarks/results/core.md`` with both final validation ELBOs and times.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile

import pandas as pd

from pyrovae.data import load_dataset

from plain_vae import train_plain
from report import header, run, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    settings = dict(epochs=args.epochs, batch_size=100, lr=1e-3, latent_dim=50, hidden=(400, 400))

    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "pyrovae", "train", "--dataset", "binarized-mnist", "--data-dir", args.data_dir,
            "--epochs", str(args.epochs), "--batch-size", "100", "--lr", "1e-3", "--latent-dim", "50",
            "--hidden", "400,400", "--activation", "relu", "--objective", "elbo", "--device", "cpu",
            "--no-progress", "--out", f"{tmp}/run",
        ]  # fmt: skip
        run(command)
        ours = pd.read_csv(f"{tmp}/run/metrics.csv")

    data = load_dataset("binarized-mnist", data_dir=args.data_dir)
    # per epoch on the validation split, as pyrovae train monitors it (the test split is left to evaluate)
    plain = pd.DataFrame(train_plain(data.splits["train"], data.splits["valid"], **settings))

    table = pd.DataFrame(
        {
            "implementation": ["pyrovae train (Pyro, Trace_ELBO)", "plain PyTorch loop"],
            "final validation ELBO (nats)": [ours["valid_elbo"].iloc[-1], plain["heldout_elbo"].iloc[-1]],
            "training seconds (all epochs)": [ours["seconds"].sum(), plain["seconds"].sum()],
        }
    ).round(2)
    per_epoch = pd.DataFrame(
        {"epoch": ours["epoch"], "pyrovae valid ELBO": ours["valid_elbo"], "plain valid ELBO": plain["heldout_elbo"]}
    ).round(2)
    budget = f"""{args.epochs} epochs x 50,000 training images, batch 100, Adam lr 1e-3,
  784-400-400-50 ReLU MLPs, one-sample ELBO on the 10,000 validation images"""
    write_report(
        "core.md",
        header(
            "pyrovae VAE vs a plain PyTorch VAE (static binarized MNIST)",
            budget=budget,
            notes=[f"pyrovae command: `{shlex.join(command[:-2])} --out RUN`"],
            device="cpu",
        ),
        table,
        "Per epoch:",
        per_epoch,
    )


if __name__ == "__main__":
    main()
