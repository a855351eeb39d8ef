"""Gradient estimators of a categorical latent on static binarized MNIST: their variance at the same
parameters, and the ELBO and L_5000 each reaches in the same training budget.

    python benchmarks/discrete_gradients.py --data-dir ../shared/data/binarized_mnist --epochs 3 --ll-limit 100

The model is the built-in gmvae (y ~ Cat(1/10), z | y ~ N(mu_y, sigma_y), x | z; q(y | x) q(z | x, y)),
trained by ``pyrovae train --discrete E`` for each estimator E: ``enumerate`` (y summed exactly,
TraceEnum_ELBO), ``relaxed`` (Concrete, temperature 0.5), ``straight-through``, and ``score``
(the score function with NVIL's baseline). Every run is evaluated as the discrete model
(``pyrovae evaluate``: y summed exactly), L_1 on the whole test set and L_5000 on ``--ll-limit``
test images. The gradient variance is measured at the parameters of the ``enumerate`` run after
training, for every estimator: ``--repeats`` gradients of the training loss on one fixed batch of 100
test images, their variance per coordinate averaged over each network (q(y | x), q(z | x, y), the
decoder); for ``score`` the baseline is first fitted for 300 steps at those parameters. Writes
``benchmarks/results/discrete_gradients.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyro
import torch

import pyrovae
from pyrovae import spec
from pyrovae.data import load_dataset
from pyrovae.inference.log_weights import enumerated_sites
from pyrovae.inference.objectives import make_objective
from pyrovae.inference.training import baseline_sites

from report import header, run, write_report

ESTIMATORS = ("enumerate", "relaxed", "straight-through", "score")
GROUPS = {"q(y | x)": "encoder_y", "q(z | x, y)": "encoder_z", "decoder": "decoder"}


def train_and_evaluate(estimator: str, args: argparse.Namespace) -> dict:
    out = args.runs / estimator
    if not (out / "checkpoint.pt").exists():
        options = [
            "--model",
            "gmvae",
            "--discrete",
            estimator,
            "--epochs",
            str(args.epochs),
            "--no-progress",
            "--force",
        ]
        run(
            [
                "pyrovae",
                "train",
                "--dataset",
                "binarized-mnist",
                "--data-dir",
                args.data_dir,
                "--out",
                str(out),
                *options,
            ]
        )
    metrics = pd.read_csv(out / "metrics.csv")
    bounds = {}
    for k, limit in ((1, []), (5000, ["--limit", str(args.ll_limit)])):
        run(["pyrovae", "evaluate", str(out), "--k", str(k), *limit], capture=True)
        bounds[k] = float(pd.read_csv(out / "bounds.csv")["bound"].iloc[0])
    return {
        "estimator": estimator,
        "test ELBO (last epoch)": metrics["test_elbo"].iloc[-1],
        "L_1": bounds[1],
        f"L_5000 ({args.ll_limit} images)": bounds[5000],
        "seconds / epoch": metrics["seconds"].mean(),
    }


def gradient_variance(estimator: str, reference: Path, x: torch.Tensor, repeats: int) -> dict:
    """Var[gradient] per coordinate, averaged over each network, at the reference run's parameters."""
    trained = pyrovae.load(reference)
    model, guide = spec.build(spec.with_options(trained.spec, discrete=estimator), data_dim=x.shape[1])
    model.load_state_dict(trained.model.state_dict())
    guide.load_state_dict(trained.guide.state_dict(), strict=False)  # score: its baseline is new
    pyro.clear_param_store()
    objective = make_objective(
        "elbo", enumerated=bool(enumerated_sites(model, guide, x)), baselines=bool(baseline_sites(guide, x))
    )
    if estimator == "score":  # NVIL's baseline fitted at these parameters first (only its own are stepped)
        optimizer = torch.optim.Adam(guide.baselines.parameters(), lr=1e-3)
        for _ in range(300):
            optimizer.zero_grad()
            with pyro.validation_enabled(False):
                objective.differentiable_loss(model, guide, x).backward()
            optimizer.step()
    networks = {name: [*model.conditionals[key].parameters()] if key == "decoder" else [
        *guide.conditionals[key].parameters()] for name, key in GROUPS.items()}  # fmt: skip
    samples = {name: [] for name in GROUPS}
    for _ in range(repeats):  # without validation, as the trainer steps: a Concrete sample may round onto an edge
        with pyro.validation_enabled(False):
            loss = objective.differentiable_loss(model, guide, x) / x.shape[0]  # per datapoint
        grads = torch.autograd.grad(loss, [p for params in networks.values() for p in params], allow_unused=True)
        flat = iter(grads)
        for name, params in networks.items():
            parts = [next(flat) for _ in params]
            samples[name].append(torch.cat([g.flatten() for g in parts if g is not None]))
    return {
        "estimator": estimator,
        **{f"Var {name}": float(torch.stack(s).var(0).mean()) for name, s in samples.items()},
        **{f"|E g| {name}": float(torch.stack(s).mean(0).norm()) for name, s in samples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="the static binarized MNIST files")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ll-limit", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--runs", type=Path, default=Path("runs/discrete_gradients"))
    args = parser.parse_args()
    trained = pd.DataFrame([train_and_evaluate(e, args) for e in ESTIMATORS])
    x = next(load_dataset("binarized-mnist", data_dir=args.data_dir).eval_batches("test", 100))
    torch.manual_seed(0)
    variance = pd.DataFrame([gradient_variance(e, args.runs / "enumerate", x, args.repeats) for e in ESTIMATORS])
    budget = (
        f"{args.epochs} epochs of the gmvae (K = 10, z of 16, 400-400 ReLU networks, Adam 1e-3, batches of 100) per "
        f"estimator on the 50,000 training images; gradients: {args.repeats} repeats on 100 test images"
    )
    write_report(
        "discrete_gradients.md",
        header("Gradient estimators of a categorical latent (gmvae, static binarized MNIST)", budget=budget),
        "## After the same budget (every run evaluated as the discrete model, y summed exactly)",
        trained.round(3),
        "## Gradient variance at the same parameters (the enumerate run's), per coordinate, averaged per network",
        variance.round(6),
    )


if __name__ == "__main__":
    main()
