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
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from report import RESULTS, header, run, write_report

ARCH = ["--latent-dim", "50", "--hidden", "200,200", "--activation", "tanh"]  # IWAE paper, 1 stochastic layer
MODELS = {  # name -> objective options
    "VAE (elbo)": ["--objective", "elbo"],
    "IWAE k=5": ["--objective", "iwae", "--particles", "5"],
    "IWAE k=5 DReG": ["--objective", "iwae", "--particles", "5", "--iwae-gradient", "dreg"],
    "IWAE k=50": ["--objective", "iwae", "--particles", "50"],
    "IWAE k=50 DReG": ["--objective", "iwae", "--particles", "50", "--iwae-gradient", "dreg"],
}


def train_and_evaluate(name: str, options: list[str], args: argparse.Namespace) -> dict:
    out = args.runs / name.replace(" ", "_").replace("(", "").replace(")", "").replace("=", "")
    resume = ["--resume"] if (out / "checkpoint.pt").exists() else []  # a killed benchmark continues
    done = len(pd.read_csv(out / "metrics.csv")) if resume else 0
    settings = ["--dataset", "binarized-mnist", "--data-dir", args.data_dir, "--batch-size", "100", "--lr", "1e-3"]
    if done < args.epochs:
        run(["pyrovae", "train", "--out", str(out), "--epochs", str(args.epochs), "--device", args.device,
             "--no-progress", *(resume or [*settings, *ARCH, *options])])  # fmt: skip
    metrics = pd.read_csv(out / "metrics.csv")
    run(["pyrovae", "evaluate", str(out), "--k", "1", "--device", args.device])
    elbo_full = pd.read_csv(out / "bounds.csv").set_index("k").loc[1, "bound"]
    limit = [] if args.ll_limit is None else ["--limit", str(args.ll_limit)]
    evaluation = run(
        ["pyrovae", "evaluate", str(out), "--k", "1,5,50,5000", "--device", args.device, *limit], capture=True
    )
    print(evaluation, flush=True)
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")
    return {
        "model": name,
        **{f"L_{k}": bounds.loc[k, "bound"] for k in (1, 5, 50, 5000)},
        "L_5000 stderr": bounds.loc[5000, "stderr"],
        "active units": int(evaluation.strip().splitlines()[-1].split()[-1]),
        "L_1, all 10,000": elbo_full,
        "epochs": int(metrics["epoch"].iloc[-1]),
        "seconds / epoch": metrics["seconds"].mean(),
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


PUBLISHED = {1: -88.71, 5: -87.63, 50: -87.10}  # IWAE paper appendix, 1 layer, IWAE k: test log p(x) (L_5000)
PAPER_PASSES = sum(3**i for i in range(8))  # Burda et al. train 3^i passes at learning rate 1e-3 * 10^(-i / 7), i < 8


def reading(table: pd.DataFrame, epochs: int) -> str:
    """What the table says about the IWAE paper's finding and the published figures, from its numbers."""
    vae = table.iloc[0]
    iwae = table.iloc[1:]
    higher = iwae[iwae["L_5000"] > vae["L_5000"]]["model"].tolist()
    more_units = iwae[iwae["active units"] >= vae["active units"]]["model"].tolist()
    gap = {int(m.split("k=")[1].split()[0]): PUBLISHED[int(m.split("k=")[1].split()[0])] - v
           for m, v in zip(iwae["model"], iwae["L_5000"], strict=True) if " DReG" not in m}  # fmt: skip
    gap[1] = PUBLISHED[1] - vae["L_5000"]
    hours = PAPER_PASSES * table["seconds / epoch"] / 3600
    return f"""## Reading (generated from the table)

- IWAE-trained models with a higher L_5000 than the ELBO-trained VAE ({vae["L_5000"]:.2f}):
  {len(higher)} of {len(iwae)} ({", ".join(higher) or "none"}); with at least as many active units
  ({int(vae["active units"])} for the VAE): {len(more_units)} of {len(iwae)}.
- Every model's L_k rises with k: {
        all((row[[f"L_{k}" for k in (1, 5, 50, 5000)]].diff().dropna() > 0).all() for _, row in table.iterrows())
    }.
- Against the published static-MNIST log-likelihoods of this architecture (IWAE paper, k = 1, 5, 50:
  {PUBLISHED[1]}, {PUBLISHED[5]}, {PUBLISHED[50]}), our L_5000 is lower by
  {", ".join(f"{gap[k]:.1f} (k = {k})" for k in sorted(gap))} nats after {epochs} passes over the data;
  the paper trained for {PAPER_PASSES:,} passes (3^i passes for i = 0..7, learning rate decayed).
  The gap is the budget: at the seconds per epoch measured here, the paper's schedule would take
  {hours.min():.0f} to {hours.max():.0f} hours of training per model on this machine.
"""


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
    budget = f"""{args.epochs} epochs of the 50,000 training images for every model, batch 100, Adam lr 1e-3;
  architecture of the IWAE paper's 1-stochastic-layer model (784-200-200-50 tanh MLPs, Bernoulli decoder)"""
    evaluation = f"""evaluation: L_1 (the ELBO), L_5, L_50, L_5000 (the log-likelihood estimate) and active units
  (Cov_x(E_q[z_u]) > 0.01) on {subset} test images, the same images for every k and model;
  mean over images in nats, stderr over images; L_1 also on all 10,000 test images"""
    minutes = f"total wall-clock time of this benchmark: {(time.perf_counter() - start) / 60:.1f} min"
    write_report(
        "bounds.md",
        header(
            "Bounds of ELBO- and IWAE-trained models (static binarized MNIST)",
            budget=budget,
            notes=[evaluation, minutes],
            device=args.device,
        ),
        table,
        "![bounds](bounds.png)",
        reading(table, args.epochs),
    )


if __name__ == "__main__":
    main()
