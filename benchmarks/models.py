"""The model family on static binarized MNIST: L_1, L_5000, active units and seconds per epoch.

    python benchmarks/models.py --data-dir ../shared/data/binarized_mnist --epochs 5 --ll-limit 1000

Trains each model through the real ``pyrovae train`` command with the same epoch
budget, then runs ``pyrovae evaluate``: L_1 (the ELBO) on the whole test set and
L_5000 (the log-likelihood estimate, ``pyrovae.inference.log_likelihood``'s
estimator) on ``--ll-limit`` seeded random test images, with the active units
(per latent layer) on the same images. The autoencoders have no density over x:
their bounds are "n/a". The conditional VAE is absent: static binarized MNIST has
no labels. Writes ``benchmarks/results/models.md``; run directories are kept under ``--runs``.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import pandas as pd

from report import header, run, write_report

# One stochastic layer as in benchmarks/core.py. Not the IWAE paper's tanh 200-200: with it the plain
# autoencoder's codes collapse to a constant within the first epochs (so does a plain PyTorch one).
ONE_LAYER = ["--latent-dim", "50", "--hidden", "400,400", "--activation", "relu"]
MODELS = {  # name -> pyrovae train options
    "vae": ["--model", "vae", *ONE_LAYER],
    "vae full-covariance": ["--model", "vae", "--guide", "full", *ONE_LAYER],
    "vae conv": ["--model", "vae", "--arch", "conv", "--latent-dim", "50", "--hidden", "256"],
    "vae vampprior": ["--spec", str(Path(__file__).parent / "specs" / "vae_vamp.toml"), *ONE_LAYER],
    "vae iaf": ["--model", "vae", "--guide", "iaf", *ONE_LAYER],
    "hvae": ["--model", "hvae"],
    "ae": ["--model", "ae", *ONE_LAYER],
    "dae": ["--model", "dae", "--corruption", "mask:0.3", *ONE_LAYER],
}


def evaluate(out: Path, k: int, device: str, limit: int | None) -> tuple[float | None, str]:
    """L_k (None for an autoencoder) and the active-units line of ``pyrovae evaluate``."""
    (out / "bounds.csv").unlink(missing_ok=True)
    command = ["pyrovae", "evaluate", str(out), "--k", str(k), "--device", device]
    command += [] if limit is None else ["--limit", str(limit)]
    stdout = run(command, capture=True)
    print(stdout, flush=True)
    active = stdout.strip().splitlines()[-1].removeprefix("active units: ")
    bounds = pd.read_csv(out / "bounds.csv") if (out / "bounds.csv").exists() else None
    return (None if bounds is None else float(bounds["bound"].iloc[0])), active


def train_and_evaluate(name: str, options: list[str], args: argparse.Namespace) -> dict:
    out = args.runs / re.sub(r"[^a-z0-9]+", "_", name).strip("_")
    if not (out / "checkpoint.pt").exists():
        run(["pyrovae", "train", "--dataset", "binarized-mnist", "--data-dir", args.data_dir, "--out", str(out),
             "--epochs", str(args.epochs), "--batch-size", "100", "--lr", "1e-3", "--objective", "elbo",
             "--device", args.device, "--no-progress", "--force", *options])  # fmt: skip
    metrics = pd.read_csv(out / "metrics.csv")
    l_1, _ = evaluate(out, 1, args.device, None)
    l_5000, active = evaluate(out, 5000, args.device, args.ll_limit)
    return {
        "model": name,
        "L_1 (test ELBO)": "n/a" if l_1 is None else round(l_1, 2),
        "L_5000": "n/a" if l_5000 is None else round(l_5000, 2),
        "active units": active,
        "seconds / epoch": round(metrics["seconds"].mean(), 1),
        "options": " ".join(o.replace(str(Path(__file__).parent) + "/", "benchmarks/") for o in options),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ll-limit", type=int, default=1000, help="test images for L_5000 and active units")
    parser.add_argument("--runs", type=Path, default=Path("runs/models"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of the models")
    args = parser.parse_args()
    start = time.perf_counter()
    table = pd.DataFrame([train_and_evaluate(name, MODELS[name], args) for name in args.models.split(",")])
    budget = f"""{args.epochs} epochs of the 50,000 training images for every model, batch 100, Adam lr 1e-3,
  objective `elbo`, Bernoulli likelihood; the options of each row are in its last column"""
    evaluation = f"""evaluation: L_1 (the ELBO) on all 10,000 test images; L_5000 (the log-likelihood estimate) and
  active units (Cov_x(E_q[z_u]) > 0.01, per latent layer) on a seeded random {args.ll_limit:,} test images;
  nats per image. The autoencoders have no density over x, so no bound: n/a.
  The conditional VAE needs labels, which static binarized MNIST does not have."""
    notes = [
        evaluation,
        "seconds / epoch: training steps only, mean over the epochs",
        f"total wall-clock time of this benchmark: {(time.perf_counter() - start) / 60:.1f} min",
    ]
    title = "The model family on static binarized MNIST"
    write_report("models.md", header(title, budget=budget, notes=notes, device=args.device), table)


if __name__ == "__main__":
    main()
