"""Semi-supervised M2 against a classifier trained on the labels alone, for N labelled digits of mnist-5k.

    python benchmarks/semisupervised.py --epochs 20 --labelled 100,600,1000,3000 --seeds 0,1,2 \
        --classifier-weight 300 --sweep 100:4.5,50 --mnist-dir ../shared/data/mnist

For each N and seed: ``pyrovae train --model m2 --labelled N --seed S`` (the 4,500 training digits of
mnist-5k, N of them labelled, balanced and seeded), and a classifier of the same architecture as M2's
q(y | x) (784-500-10 ReLU MLP) trained by cross-entropy on the same N labels alone (Adam 1e-3,
batches of min(N, 100), the same number of steps over the labels as M2 takes over all digits). Both are
tested on the 500 mnist-5k test digits and, where ``--mnist-dir`` holds the official MNIST test files,
on its 10,000 test digits. ``--sweep N:W1,W2`` adds M2 runs with N labels at other classifier weights
(4.5 = 0.1 N / N_labelled, pyrovae's default, at N = 100). Writes ``benchmarks/results/semisupervised.md``.
"""

from __future__ import annotations

import argparse
import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import pyrovae
from pyrovae.data import BINARIZE_SEED, hide_labels, load_dataset
from pyrovae.inference.diagnostics import posterior_means
from pyrovae.nets import mlp

from report import header, run, write_report


def m2_accuracy(out: Path, test_sets: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """argmax q(y | x) of the trained run against each test set's labels."""
    guide = pyrovae.load(out).guide
    return {
        name: float((posterior_means(guide, x.split(1000))["y"].argmax(-1) == y).float().mean())
        for name, (x, y) in test_sets.items()
    }


def classifier_accuracy(
    x: torch.Tensor, y: torch.Tensor, steps: int, seed: int, test_sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, float]:
    """A 784-500-10 MLP trained on ``(x, y)`` alone for ``steps`` Adam steps; its test accuracies."""
    torch.manual_seed(seed)
    net = mlp(x.shape[1], (500,), 10)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = min(len(y), 100)
    for _ in range(steps):
        index = torch.randint(len(y), (batch,))
        loss = torch.nn.functional.cross_entropy(net(torch.bernoulli(x[index])), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return {name: float((net(tx).argmax(-1) == ty).float().mean()) for name, (tx, ty) in test_sets.items()}


def test_sets(mnist_dir: str | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The mnist-5k test digits (binarized as the runs see them) and, where present, the official MNIST test set."""
    data = load_dataset("mnist-5k", binarize=True)
    sets = {"mnist-5k test (500)": (next(data.eval_batches("test", 10**6)), data.labels["test"])}
    if mnist_dir and Path(mnist_dir, "t10k-images-idx3-ubyte.gz").is_file():
        images = read_idx(Path(mnist_dir, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784) / 255.0
        generator = torch.Generator().manual_seed(BINARIZE_SEED)  # as pyrovae binarizes its evaluation splits
        labels = read_idx(Path(mnist_dir, "t10k-labels-idx1-ubyte.gz")).long()
        sets["MNIST test (10,000)"] = (torch.bernoulli(images, generator=generator), labels)
    return sets


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format), gzipped: magic 0x0000 0x08 NDIM, big-endian sizes, data."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--labelled", default="100,600,1000,3000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--classifier-weight", default=None, help="pyrovae train's; None: its default, 0.1 N / N_labelled"
    )
    parser.add_argument("--sweep", default=None, help="N:W1,W2: M2 runs with N labels at these weights too")
    parser.add_argument("--mnist-dir", default=None, help="the official MNIST files (t10k-*), for its test set")
    parser.add_argument("--runs", type=Path, default=Path("runs/semisupervised"))
    args = parser.parse_args()
    sets = test_sets(args.mnist_dir)
    train = load_dataset("mnist-5k")
    x, labels = train.split("train"), train.labels["train"]
    steps = args.epochs * math.ceil(len(labels) / 100)  # M2's steps: epochs x batches of 100 over all digits
    runs = [(n, args.classifier_weight) for n in map(int, args.labelled.split(","))]
    if args.sweep:
        n, weights = args.sweep.split(":")
        runs += [(int(n), w) for w in weights.split(",")]
    rows = []
    for n, weight in runs:
        for seed in map(int, args.seeds.split(",")):
            out = args.runs / f"m2_n{n}_w{weight}_s{seed}"
            if not (out / "checkpoint.pt").exists():
                weighted = [] if weight is None else ["--classifier-weight", weight]
                run(["pyrovae", "train", "--model", "m2", "--labelled", str(n), "--seed", str(seed), "--out", str(out),
                     "--epochs", str(args.epochs), "--no-progress", "--force", *weighted])  # fmt: skip
            kept = hide_labels(labels, n, seed=seed, classes=10)  # the labels the run kept
            known = kept >= 0
            baseline = classifier_accuracy(x[known], kept[known], steps, seed, sets)
            for name, accuracy in m2_accuracy(out, sets).items():
                weight_of = weight or f"{0.1 * len(labels) / n:g} (default)"
                rows.append({"labels": n, "weight": weight_of, "seed": seed, "test set": name, "M2": accuracy,
                             "only": baseline[name]})  # fmt: skip
    table = pd.DataFrame(rows)
    summary = table.groupby(["test set", "labels", "weight"]).agg(
        M2_mean=("M2", "mean"), M2_sd=("M2", "std"), only_mean=("only", "mean"), only_sd=("only", "std")
    )
    summary = summary.reset_index().round(3)
    summary.columns = ["test set", "labels", "classifier weight", "M2 accuracy", "sd", "labels-only accuracy", "sd "]
    budget = (
        f"{args.epochs} epochs of M2 (pyrovae train --model m2: 784-500 networks, z of 50, the elbo objective "
        f"with y summed, Adam 1e-3, batches of 100) over the 4,500 mnist-5k training digits; the labels-only "
        f"classifier {steps} Adam steps; seeds {args.seeds}; classifier weight (per labelled digit) "
        f"{args.classifier_weight or '0.1 N / N_labelled (the default)'}, and {args.sweep or 'no other'} "
        "(labels:weights) as a sweep"
    )
    write_report(
        "semisupervised.md",
        header("Semi-supervised M2 against a labels-only classifier", budget=budget),
        "## Accuracy (mean and standard deviation over the seeds)",
        summary,
        "## Every run",
        table.rename(columns={"only": "labels only"}).round(3),
    )


if __name__ == "__main__":
    main()
