"""pyrovae's VAE against a plain PyTorch VAE: same data, architecture and budget.

    python benchmarks/core.py --data-dir ../shared/data/binarized_mnist

Runs ``pyrovae train`` (the real command, into a fresh run directory) and the
plain loop of ``benchmarks/plain_vae.py``, then writes
``benchmarks/results/core.md`` with both final test ELBOs and times.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from pyrovae.data import load_dataset

sys.path.insert(0, str(Path(__file__).parent))
from plain_vae import train_plain

RESULTS = Path(__file__).parent / "results"


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
        subprocess.run(command, check=True)
        ours = pd.read_csv(f"{tmp}/run/metrics.csv")

    data = load_dataset("binarized-mnist", data_dir=args.data_dir)
    plain = pd.DataFrame(train_plain(data.splits["train"], data.splits["test"], **settings))

    table = pd.DataFrame(
        {
            "implementation": ["pyrovae train (Pyro, Trace_ELBO)", "plain PyTorch loop"],
            "final test ELBO (nats)": [ours["test_elbo"].iloc[-1], plain["test_elbo"].iloc[-1]],
            "training seconds (all epochs)": [ours["seconds"].sum(), plain["seconds"].sum()],
        }
    ).round(2)
    per_epoch = pd.DataFrame(
        {"epoch": ours["epoch"], "pyrovae test ELBO": ours["test_elbo"], "plain test ELBO": plain["test_elbo"]}
    ).round(2)
    report = f"""# pyrovae VAE vs a plain PyTorch VAE (static binarized MNIST)

- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU only
- date: {datetime.date.today()}
- command: `python benchmarks/core.py --data-dir {args.data_dir} --epochs {args.epochs}`
- pyrovae command: `{shlex.join(command[:-2])} --out RUN`
- budget: {args.epochs} epochs x 50,000 training images, batch 100, Adam lr 1e-3,
  784-400-400-50 ReLU MLPs, one-sample ELBO on the 10,000 test images

{table.to_markdown(index=False)}

Per epoch:

{per_epoch.to_markdown(index=False)}
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
