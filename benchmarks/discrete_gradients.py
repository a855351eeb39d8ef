"""Gradient estimators of discrete latents on static binarized MNIST: their variance at the same parameters,
and the ELBO and L_5000 each reaches in the same training budget, for a categorical latent and for 200 binary
units.

    python benchmarks/discrete_gradients.py --data-dir ../shared/data/binarized_mnist --epochs 3 --ll-limit 100

Two models, each trained by ``pyrovae train`` once per estimator:

- **categorical**: the built-in gmvae (y ~ Cat(1/10), z | y ~ N(mu_y, sigma_y), x | z; q(y | x) q(z | x, y)),
  with ``--discrete`` ``enumerate`` (y summed exactly, TraceEnum_ELBO), ``relaxed`` (Concrete, temperature
  0.5), ``straight-through``, ``score`` (the score function with NVIL's baseline) and ``vimco`` (the score
  function in L_5 with VIMCO's leave-one-out baselines, ``--objective iwae --particles 5``);
- **binary**: a sigmoid belief net layer of 200 binary units with linear networks (``benchmarks/specs/sbn.toml``),
  with the same estimators but ``enumerate``, which cannot sum 2^200 values.

Every run is evaluated as the discrete model (``pyrovae evaluate``: y summed exactly, h importance-sampled),
L_1 on the whole test set and L_5000 on ``--ll-limit`` test images. The gradient variance is measured at the
parameters of one reference run per model (gmvae: ``enumerate``; SBN: ``score``) for every estimator:
``--repeats`` gradients of the training loss on one fixed batch of 100 test images, their variance per
coordinate averaged over each network; for ``score`` the baseline is first fitted for 300 steps at those
parameters. VIMCO's loss is L_5's, the others' the ELBO's: their mean gradients differ by that too. Writes
``benchmarks/results/discrete_gradients.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyro
import torch

import pyrovae
from pyrovae import spec
from pyrovae.data import load_dataset
from pyrovae.inference.log_weights import enumerated_sites
from pyrovae.inference.objectives import make_objective
from pyrovae.inference.parameters import baseline_sites

from report import header, run, write_report

SBN = str(Path(__file__).parent / "specs" / "sbn.toml")
ESTIMATORS = {  # name -> (--discrete, objective options)
    "enumerate": ("enumerate", ["--objective", "elbo"]),
    "relaxed": ("relaxed", ["--objective", "elbo"]),
    "straight-through": ("straight-through", ["--objective", "elbo"]),
    "score": ("score", ["--objective", "elbo"]),
    "vimco": ("score", ["--objective", "iwae", "--particles", "5"]),
}


@dataclass(frozen=True)
class Setup:
    """One model of the benchmark: its ``pyrovae train`` options, estimators, networks and reference run."""

    name: str
    model: tuple[str, ...]
    estimators: tuple[str, ...]
    groups: dict[str, tuple[str, str]]  # column -> (model or guide, conditional's key)
    reference: str


SETUPS = (
    Setup(
        "categorical",
        ("--model", "gmvae"),
        tuple(ESTIMATORS),
        {"q(y | x)": ("guide", "encoder_y"), "q(z | x, y)": ("guide", "encoder_z"), "decoder": ("model", "decoder")},
        "enumerate",
    ),
    Setup(
        "binary",
        ("--spec", SBN),
        ("relaxed", "straight-through", "score", "vimco"),
        {"q(h | x)": ("guide", "encoder_h"), "p(h)": ("model", "prior_h"), "decoder": ("model", "decoder")},
        "score",
    ),
)


def train_and_evaluate(setup: Setup, estimator: str, args: argparse.Namespace) -> dict:
    out = args.runs / setup.name / estimator
    discrete, objective = ESTIMATORS[estimator]
    if not (out / "checkpoint.pt").exists():
        data = ["--dataset", "binarized-mnist", "--data-dir", args.data_dir, "--out", str(out)]
        options = [*setup.model, "--discrete", discrete, *objective, "--epochs", str(args.epochs)]
        run(["pyrovae", "train", *data, *options, "--no-progress", "--force"])
    metrics = pd.read_csv(out / "metrics.csv")
    bounds = {}
    for k, limit in ((1, []), (5000, ["--limit", str(args.ll_limit)])):
        run(["pyrovae", "evaluate", str(out), "--k", str(k), *limit], capture=True)
        bounds[k] = float(pd.read_csv(out / "bounds.csv")["bound"].iloc[0])
    return {
        "estimator": estimator,
        "valid ELBO (last epoch)": metrics["valid_elbo"].iloc[-1],
        "L_1": bounds[1],
        f"L_5000 ({args.ll_limit} images)": bounds[5000],
        "seconds / epoch": metrics["seconds"].mean(),
    }


def gradient_variance(setup: Setup, estimator: str, args: argparse.Namespace, x: torch.Tensor) -> dict:
    """Var[gradient] per coordinate, averaged over each network, at the reference run's parameters."""
    trained = pyrovae.load(args.runs / setup.name / setup.reference)
    discrete, objective_args = ESTIMATORS[estimator]
    model, guide = spec.build(spec.with_options(trained.spec, discrete=discrete), data_dim=x.shape[1])
    model.load_state_dict(trained.model.state_dict())
    guide.load_state_dict(trained.guide.state_dict(), strict=False)  # score: a baseline that may be new
    pyro.clear_param_store()
    k = int(objective_args[-1]) if "--particles" in objective_args else 1
    objective = make_objective(
        objective_args[1],
        num_particles=k,
        enumerated=bool(enumerated_sites(model, guide, x)),
        baselines=bool(baseline_sites(guide, x)),
    )
    if estimator == "score":  # NVIL's baseline fitted at these parameters first (only its own are stepped)
        optimizer = torch.optim.Adam(guide.baselines.parameters(), lr=1e-3)
        for _ in range(300):
            optimizer.zero_grad()
            with pyro.validation_enabled(False):
                objective.differentiable_loss(model, guide, x).backward()
            optimizer.step()
    programs = {"model": model, "guide": guide}
    networks = {name: [*programs[part].conditionals[key].parameters()] for name, (part, key) in setup.groups.items()}
    samples = {name: [] for name in networks}
    for _ in range(args.repeats):  # without validation, as the trainer steps: a Concrete sample may round onto an edge
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
    x = next(load_dataset("binarized-mnist", data_dir=args.data_dir).eval_batches("test", 100))
    sections = []
    for setup in SETUPS:
        trained = pd.DataFrame([train_and_evaluate(setup, e, args) for e in setup.estimators])
        torch.manual_seed(0)
        variance = pd.DataFrame([gradient_variance(setup, e, args, x) for e in setup.estimators])
        sections += [
            f"## {TITLES[setup.name]}: after the same budget (evaluated as the discrete model)",
            trained.round(3),
            f"## {TITLES[setup.name]}: gradient variance at the {setup.reference} run's parameters, per coordinate, "
            "averaged per network",
            variance.round(6),
        ]
    budget = (
        f"{args.epochs} epochs per estimator on the 50,000 training images (Adam 1e-3, batches of 100) of the gmvae "
        "(K = 10, z of 16, 400-400 ReLU networks) and of the SBN (200 binary units, linear networks); gradients: "
        f"{args.repeats} repeats on 100 test images"
    )
    write_report(
        "discrete_gradients.md",
        header("Gradient estimators of discrete latents (static binarized MNIST)", budget=budget),
        *sections,
    )


TITLES = {"categorical": "Categorical latent (gmvae; y summed exactly when evaluated)",
          "binary": "200 binary units (SBN; h importance-sampled when evaluated)"}  # fmt: skip


if __name__ == "__main__":
    main()
