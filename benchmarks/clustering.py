"""Unsupervised clustering of MNIST digits by the GMVAE's q(y | x), against k-means on pixels and on a VAE's codes.

    python benchmarks/clustering.py --epochs 30 --seeds 0,1,2 --mnist-dir ../shared/data/mnist

For each seed: ``pyrovae train --model gmvae --seed S`` (K = 10 components, y summed exactly) and
``pyrovae train --model vae --seed S`` on the 4,500 mnist-5k training digits (dynamically binarized), the
same epochs. The GMVAE's clusters are argmax q(y | x); the baselines are k-means with K = 10 (scipy's
``kmeans2``, k-means++ starts, seeded) fitted on the same training digits, as binarized pixels or as the
VAE's posterior means E_q[z | x], each test digit assigned to its nearest centre. Accuracy is the
clustering accuracy under the best one-to-one matching of clusters to classes (Hungarian), on the 500
mnist-5k test digits and, where ``--mnist-dir`` holds the official MNIST test files, its 10,000. Writes
``benchmarks/results/clustering.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from scipy.cluster.vq import kmeans2

import pyrovae
from pyrovae.data import BINARIZE_SEED, load_dataset
from pyrovae.inference.clustering import cluster_assignments, clustering_accuracy
from pyrovae.inference.diagnostics import posterior_means

from report import header, run, write_report
from semisupervised import test_sets

K = 10


def trained(model: str, seed: int, args: argparse.Namespace) -> Path:
    out = args.runs / f"{model}_s{seed}"
    if not (out / "checkpoint.pt").exists():
        run(["pyrovae", "train", "--model", model, "--seed", str(seed), "--out", str(out),
             "--epochs", str(args.epochs), "--no-progress", "--force"])  # fmt: skip
    return out


def kmeans(train: torch.Tensor, tests: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """k-means with K centres fitted on ``train`` ``(N, D)``; each test set's nearest-centre indices."""
    centres, _ = kmeans2(train.double().numpy(), K, minit="++", seed=seed)
    centres = torch.from_numpy(centres).to(train.dtype)
    return {name: torch.cdist(x, centres).argmin(-1) for name, x in tests.items()}


def codes(out: Path, x: torch.Tensor) -> torch.Tensor:
    """The VAE's posterior means E_q[z | x], ``(N, latent)``."""
    return posterior_means(pyrovae.load(out).guide, x.split(1000))["z"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--mnist-dir", default=None, help="the official MNIST files (t10k-*), for its test set")
    parser.add_argument("--runs", type=Path, default=Path("runs/clustering"))
    args = parser.parse_args()
    sets = test_sets(args.mnist_dir)
    tests = {name: x for name, (x, _) in sets.items()}
    data = load_dataset("mnist-5k")
    train = torch.bernoulli(data.split("train"), generator=torch.Generator().manual_seed(BINARIZE_SEED))
    rows = []
    for seed in map(int, args.seeds.split(",")):
        gmvae = pyrovae.load(trained("gmvae", seed, args)).guide
        vae = trained("vae", seed, args)
        clusters = {
            "GMVAE, argmax q(y | x)": {
                n: cluster_assignments(gmvae, x.split(1000), site="y") for n, x in tests.items()
            },
            "k-means on pixels": kmeans(train, tests, seed),
            "k-means on VAE codes E[z | x]": kmeans(
                codes(vae, train), {n: codes(vae, x) for n, x in tests.items()}, seed
            ),
        }
        for method, assigned in clusters.items():
            for name, (_, labels) in sets.items():
                used = int(assigned[name].unique().numel())
                accuracy = clustering_accuracy(assigned[name], labels)
                rows.append(
                    {"method": method, "seed": seed, "test set": name, "accuracy": accuracy, "clusters used": used}
                )
    table = pd.DataFrame(rows)
    summary = table.groupby(["test set", "method"], sort=False).agg(
        accuracy=("accuracy", "mean"), sd=("accuracy", "std"), clusters_used=("clusters used", "mean")
    )
    budget = (
        f"{args.epochs} epochs each of the gmvae (K = 10, z of 16, 400-400 ReLU networks) and the vae (z of 20, "
        f"400-400) over the 4,500 mnist-5k training digits (Adam 1e-3, batches of 100); seeds {args.seeds}"
    )
    write_report(
        "clustering.md",
        header("Clustering MNIST digits: GMVAE against k-means", budget=budget),
        "## Clustering accuracy (Hungarian matching; mean and standard deviation over the seeds)",
        summary.reset_index().round(3),
        "## Every run",
        table.round(3),
    )


if __name__ == "__main__":
    main()
