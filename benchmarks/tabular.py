"""Tabular and count data from files: ELBO and L_5000 per likelihood, and how well the latent finds known factors.

    python benchmarks/tabular.py --epochs 30 --runs /tmp/tabular

Two data sets, written as files and trained through ``pyrovae train --dataset FILE``:

- **counts**: a seeded synthetic factor model, 5,000 x 200. Each row has K = 4 factors
  h ~ N(0, I), rates exp(W h + b) with W ~ N(0, 0.3^2) and b ~ N(0.5, 0.5^2), and counts drawn
  Poisson, or negative binomial with shape 5 (overdispersed). Each is fitted by both the Poisson and
  the negative-binomial likelihood (z of 4, 128-128 networks).
- **breast cancer**: scikit-learn's bundled Wisconsin data, 569 x 30 (no download), standardized per
  column and fitted with the ``gaussian`` likelihood (pyrovae's default fixed scale, 0.1) and the
  ``learned-gaussian`` one (a scale per column and datapoint from the decoder), z of 4.

For each run: the test ELBO of the last epoch, L_1 and L_5000 of the whole test split (``pyrovae
evaluate``), and, for the synthetic sets, the factor recovery. That is the R^2 of a least-squares map
from the posterior means E_q[z | x] to the true factors h on the test rows, fitted on the training
rows. Writes ``benchmarks/results/tabular.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import pyrovae
from pyrovae.data import load_dataset
from pyrovae.inference.diagnostics import posterior_means

from report import header, run, write_report

FACTORS, ROWS, COLUMNS, TEST = 4, 5000, 200, 500


def synthetic(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``(ROWS, COLUMNS)`` of the factor model, and its factors ``(ROWS, FACTORS)``."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(ROWS, FACTORS))
    rates = np.exp(h @ rng.normal(0, 0.3, size=(FACTORS, COLUMNS)) + rng.normal(0.5, 0.5, size=COLUMNS))
    # Poisson, or negative binomial with shape r = 5 (a gamma-Poisson mixture: mean rates, variance + rates^2 / 5)
    x = rng.poisson(rates) if kind == "poisson" else rng.poisson(rng.gamma(5.0, rates / 5.0))
    return x.astype(np.float32), h


def recovery(out: Path, data_file: Path, h: np.ndarray) -> float:
    """R^2 on the test rows of the least-squares map from E_q[z | x] (with an intercept) to the true factors."""
    guide = pyrovae.load(out).guide
    x = torch.from_numpy(np.load(data_file)["train"]), torch.from_numpy(np.load(data_file)["test"])
    z = [posterior_means(guide, part.split(1000))["z"].numpy() for part in x]
    design = [np.hstack([zi, np.ones((len(zi), 1))]) for zi in z]
    coef, *_ = np.linalg.lstsq(design[0], h[:-TEST], rcond=None)
    residual = h[-TEST:] - design[1] @ coef
    return float(1 - residual.var(0).sum() / h[-TEST:].var(0).sum())


def fit(name: str, data_file: Path, likelihood: str, args: argparse.Namespace) -> dict:
    out = args.runs / f"{name}_{likelihood}"
    if not (out / "checkpoint.pt").exists():
        run(["pyrovae", "train", "--dataset", str(data_file), "--likelihood", likelihood, "--out", str(out),
             "--latent-dim", str(FACTORS), "--hidden", "128,128", "--epochs", str(args.epochs), "--no-progress",
             "--force"])  # fmt: skip
    metrics = pd.read_csv(out / "metrics.csv")
    run(["pyrovae", "evaluate", str(out), "--k", "1,5000"], capture=True)
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")["bound"]
    return {
        "data": name,
        "likelihood": likelihood,
        "test ELBO": metrics["test_elbo"].iloc[-1],
        "L_1": bounds[1],
        "L_5000": bounds[5000],
        "active units": metrics["active_units"].iloc[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--runs", type=Path, default=Path("runs/tabular"))
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in ("poisson", "negative-binomial"):
        x, h = synthetic(kind)
        path = args.runs / f"counts_{kind}.npz"
        np.savez(path, train=x[:-TEST], test=x[-TEST:])
        for likelihood in ("poisson", "negative-binomial"):
            row = fit(f"counts ({kind})", path, likelihood, args)
            rows.append(row | {"factor R^2": recovery(args.runs / f"counts ({kind})_{likelihood}", path, h)})
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer().data.astype(np.float32)
    table = (table - table.mean(0)) / table.std(0)
    path = args.runs / "breast_cancer.npy"
    np.save(path, table)
    assert load_dataset(str(path)).splits["test"].shape[0] == 57  # the seeded 10% test split
    for likelihood in ("gaussian", "learned-gaussian"):
        rows.append(fit("breast cancer (standardized)", path, likelihood, args))
    budget = (
        f"{args.epochs} epochs per run (Adam 1e-3, batches of 100, z of {FACTORS}, 128-128 ReLU networks); counts: "
        f"{ROWS - TEST} training and {TEST} test rows of {COLUMNS} columns; breast cancer: 512 / 57 rows of 30 columns"
    )
    write_report(
        "tabular.md",
        header("Count and tabular data from files", budget=budget),
        "## Bounds (nats per row, test split) and factor recovery",
        pd.DataFrame(rows).round(3),
    )


if __name__ == "__main__":
    main()
