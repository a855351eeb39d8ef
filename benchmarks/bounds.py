"""ELBO- vs IWAE-trained models, compared on L_1, L_5, L_50, L_5000 and active units.

    python benchmarks/bounds.py --data-dir ../shared/data/binarized_mnist --epochs 5 --ll-limit 2000

Trains, through the real ``pyrovae train`` command and with the same architecture
and epoch budget, a VAE (objective ``elbo``) and IWAEs with k = 5 and k = 50
(standard and DReG gradients) on static binarized MNIST, then runs
``pyrovae evaluate``: L_1, L_5, L_50, L_5000 and active units on ``--ll-limit``
seeded random test images (all 10,000 when omitted), and L_1 on the full test set. Writes
``benchmarks/results/bounds.md`` and ``bounds.png``; run directories are kept
under ``--runs``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch

RESULTS = Path(__file__).parent / "results"
ARCH = ["--latent-dim", "50", "--hidden", "200,200", "--activation", "tanh"]  # IWAE paper, 1 stochastic layer
MODELS = {  # name -> objective options
    "VAE (elbo)": ["--objective", "elbo"],
    "IWAE k=5": ["--objective", "iwae", "--particles", "5"],
    "IWAE k=5 DReG": ["--objective", "iwae", "--particles", "5", "--iwae-gradient", "dreg"],
    "IWAE k=50": ["--objective", "iwae", "--particles", "50"],
    "IWAE k=50 DReG": ["--objective", "iwae", "--particles", "50", "--iwae-gradient", "dreg"],
}


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def train_and_evaluate(name: str, options: list[str], args: argparse.Namespace) -> dict:
    out = args.runs / name.replace(" ", "_").replace("(", "").replace(")", "").replace("=", "")
    resume = ["--resume"] if (out / "checkpoint.pt").exists() else []  # a killed benchmark continues
    settings = ["--dataset", "binarized-mnist", "--data-dir", args.data_dir, "--batch-size", "100", "--lr", "1e-3"]
    run(["pyrovae", "train", "--out", str(out), "--epochs", str(args.epochs), "--device", args.device,
         "--no-progress", *(resume or [*settings, *ARCH, *options])])  # fmt: skip
    metrics = pd.read_csv(out / "metrics.csv")
    run(["pyrovae", "evaluate", str(out), "--k", "1", "--device", args.device])
    elbo_full = pd.read_csv(out / "bounds.csv").set_index("k").loc[1, "bound"]
    limit = [] if args.ll_limit is None else ["--limit", str(args.ll_limit)]
    evaluation = subprocess.run(
        ["pyrovae", "evaluate", str(out), "--k", "1,5,50,5000", "--device", args.device, *limit],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    print(evaluation.stdout, flush=True)
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")
    return {
        "model": name,
        **{f"L_{k}": bounds.loc[k, "bound"] for k in (1, 5, 50, 5000)},
        "L_5000 stderr": bounds.loc[5000, "stderr"],
        "active units": int(evaluation.stdout.strip().splitlines()[-1].split()[-1]),
        "L_1, all 10,000": elbo_full,
        "epochs": int(metrics["epoch"].iloc[-1]),
    }


def plot(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=150)
    ks = [1, 5, 50, 5000]
    for _, row in table.iterrows():
        ax.plot(ks, [row[f"L_{k}"] for k in ks], marker="o", label=row["model"])
    ax.set_xscale("log")
    ax.set_xlabel("k (importance samples at evaluation)")
    ax.set_ylabel("L_k (nats per test image)")
    ax.set_title("Static binarized MNIST: bound L_k by training objective")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ll-limit", type=int, default=None, help="test images for L_5000 (default: all)")
    parser.add_argument("--runs", type=Path, default=Path("runs/bounds"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of the models")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [train_and_evaluate(name, MODELS[name], args) for name in args.models.split(",")]
    table = pd.DataFrame(rows).round(2)
    RESULTS.mkdir(exist_ok=True)
    plot(table, RESULTS / "bounds.png")
    subset = "all 10,000" if args.ll_limit is None else f"a seeded random {args.ll_limit:,}"
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({platform.machine()})"
    report = f"""# Bounds of ELBO- and IWAE-trained models (static binarized MNIST)

- machine: {device}, {torch.get_num_threads()} torch threads; date: {datetime.date.today()}
- command: `python benchmarks/bounds.py --data-dir {args.data_dir} --epochs {args.epochs}` \
{"" if args.ll_limit is None else f"`--ll-limit {args.ll_limit}`"}
- budget: {args.epochs} epochs of the 50,000 training images for every model, batch 100, Adam lr 1e-3;
  architecture of the IWAE paper's 1-stochastic-layer model (784-200-200-50 tanh MLPs, Bernoulli decoder)
- evaluation: L_1 (the ELBO), L_5, L_50, L_5000 (the log-likelihood estimate) and active units
  (Cov_x(E_q[z_u]) > 0.01) on {subset} test images, the same images for every k and model;
  mean over images in nats, stderr over images; L_1 also on all 10,000 test images
- total wall-clock time of this benchmark: {(time.perf_counter() - start) / 60:.1f} min

{table.to_markdown(index=False)}

![bounds](bounds.png)
"""
    (RESULTS / "bounds.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
