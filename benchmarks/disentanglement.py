"""beta-VAE (beta 1, 4, 8, 16), beta-TCVAE and the capacity objective on sprites: ELBO and the disentanglement
metrics over several seeds, with a latent traversal per model.

    python benchmarks/disentanglement.py [--data-size 20000] [--epochs 12] [--seeds 0,1,2] [--runs DIR]

Every run goes through the real commands: ``pyrovae train --dataset sprites`` (a seeded subset of the
737,280-image product, split 90/10), ``pyrovae evaluate RUN --k 1 --disentanglement`` (the true ELBO at
beta = 1 on the test split, and MIG, the beta-VAE and FactorVAE scores and DCI on the posterior means of the
test split) and, for the first seed, ``pyrovae plot RUN --kind traverse``. Writes
``benchmarks/results/disentanglement.md`` and ``benchmarks/results/figures/disentanglement_*_traverse.png``.
Disentanglement varies more with the seed than with the method (Locatello et al., 2019), so the table gives
the mean and the spread over the seeds, and every run is listed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from report import RESULTS, header, run, write_report

VARIANTS = {  # name -> pyrovae train options
    "beta-VAE, beta 1 (VAE)": ["--objective", "mf-elbo", "--beta", "1"],
    "beta-VAE, beta 4": ["--objective", "mf-elbo", "--beta", "4"],
    "beta-VAE, beta 8": ["--objective", "mf-elbo", "--beta", "8"],
    "beta-VAE, beta 16": ["--objective", "mf-elbo", "--beta", "16"],
    "beta-TCVAE, TC weight 6": ["--objective", "tc-elbo", "--tc-weight", "6"],
    "capacity, C 0 to 25 nats": ["--objective", "capacity", "--gamma", "1000", "--capacity", "25"],
}
CAPACITY_WARMUP = 0.75  # the capacity objective's C reaches C_max after this share of the run's steps
METRICS = {  # disentanglement.csv column -> table heading
    "mig": "MIG",
    "beta_vae": "beta-VAE score",
    "factor_vae": "FactorVAE score",
    "dci_disentanglement": "DCI disent.",
}
NETWORK = ["--hidden", "512,512", "--latent-dim", "10", "--activation", "relu", "--batch-size", "64"]


def one_run(out: Path, options: list[str], seed: int, args: argparse.Namespace) -> dict:
    """Train (unless done), evaluate and return the run's row."""
    data = ["--dataset", "sprites", "--data-size", str(args.data_size)]
    if "capacity" in options:  # Burgess et al.'s 100,000 steps do not fit: C rises over most of this run
        options = [*options, "--capacity-steps", str(int(CAPACITY_WARMUP * steps(args)))]
    if not (out / "checkpoint.pt").exists():
        run(["pyrovae", "train", "--out", str(out), *data, *NETWORK, *options, "--epochs", str(args.epochs),
             "--seed", str(seed), "--device", args.device, "--no-progress", "--force"])  # fmt: skip
    run(["pyrovae", "evaluate", str(out), "--k", "1", "--disentanglement", "--device", args.device])
    bound = pd.read_csv(out / "bounds.csv").iloc[0]
    scores = pd.read_csv(out / "disentanglement.csv").iloc[0]
    last = pd.read_csv(out / "metrics.csv").iloc[-1]
    return {
        "seed": seed,
        "test ELBO": bound["bound"],
        "KL": last["kl"],
        "active units": last["active_units"],
        "seconds": pd.read_csv(out / "metrics.csv")["seconds"].sum(),
        **{heading: scores[column] for column, heading in METRICS.items()},
    }


def steps(args: argparse.Namespace) -> int:
    """The optimisation steps of one run: epochs x batches of 64 over the 90% training split."""
    return args.epochs * -(-int(args.data_size * 0.9) // 64)


def traversal(out: Path, name: str) -> str:
    """The run's latent traversal, copied into the results' figures; its path relative to the results."""
    figure = RESULTS / "figures" / f"disentanglement_{slug(name)}_traverse.png"
    run(["pyrovae", "plot", str(out), "--kind", "traverse", "--out", str(out / "traverse.png")])
    figure.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "traverse.png", figure)
    return str(figure.relative_to(RESULTS))


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.split(",")[0].lower() + name.split(",")[-1]).strip("_")


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant, the mean and the standard deviation over the seeds of every column but the seed."""
    columns = ["test ELBO", "KL", "active units", *METRICS.values()]
    grouped = rows.groupby("variant", sort=False)[columns]
    mean, spread = grouped.mean(), grouped.std()
    table = pd.DataFrame(index=mean.index)
    for column in columns:
        digits = 1 if column in ("test ELBO", "KL", "active units") else 3
        table[column] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(mean[column], spread[column], strict=True)]
    return table.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-size", type=int, default=20_000, help="sprites drawn from the product")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))), help="indices")
    parser.add_argument("--runs", type=Path, default=Path("runs/disentanglement"), help="run directories")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = [list(VARIANTS)[int(i)] for i in args.variants.split(",")]

    rows, figures = [], []
    for name in chosen:
        for seed in seeds:
            out = args.runs / f"{slug(name)}_s{seed}"
            rows.append({"variant": name, **one_run(out, VARIANTS[name], seed, args)})
            if seed == seeds[0]:
                figures.append(f"### {name} (seed {seed})\n\n![{name}]({traversal(out, name)})")
    table = pd.DataFrame(rows)
    budget = (
        f"{args.epochs} epochs over {int(args.data_size * 0.9):,} training sprites ({steps(args):,} steps of 64), "
        f"4096-512-512-10 ReLU MLPs, Bernoulli likelihood, Adam 1e-3; seeds {args.seeds}; metrics on the "
        f"{args.data_size - int(args.data_size * 0.9):,} test sprites"
    )
    write_report(
        "disentanglement.md",
        header(
            "Disentanglement on sprites: beta-VAE, beta-TCVAE and the capacity objective",
            budget=budget,
            device=args.device,
        ),
        "## Mean ± standard deviation over the seeds",
        summary(table),
        "## Every run",
        table.round(3),
        "## Latent traversals (first seed; rows: the latent dimensions by KL, columns: -3 to 3 around the mean)",
        *figures,
    )


if __name__ == "__main__":
    main()
