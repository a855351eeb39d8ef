"""Milliseconds per training step: what the framework's Python costs, eager and compiled, in one process.

    python benchmarks/overhead.py [--device cpu] [--batch-sizes 100] [--rounds 7] [--threads 1]

One SVI step (ELBO, one particle, the guide's draw, the model, the loss, its backward and one Adam step) of
the same VAE written five ways, on the same binary batch shapes (784 pixels):

- ``plain eager``: the hand-written PyTorch loss of ``speed.py``, as tuned there (the Bernoulli log-density
  pyrovae uses, Monte-Carlo KL), backward, and the same fused Adam as pyrovae's;
- ``plain compiled``: that loss under ``torch.compile`` (inductor; its backward too, by AOTAutograd);
- ``Pyro SVI``: Pyro's own ``SVI`` with ``Trace_ELBO`` and ``pyro.optim.Adam`` (``SVI.step`` returns a
  float: one host sync per step, as Pyro does);
- ``pyrovae``: ``Trainer.step`` (Pyro traces, pyrovae's ``Trace_ELBO``, one fused Adam, no host sync);
- ``pyrovae --compile``: the same with ``TrainConfig(compile=True)`` (:mod:`pyrovae.inference.compiled`).

Two networks: ``tiny`` (784-32-8 MLPs, where a step's cost is the Python around a few small kernels, the
regime of small models on a GPU) and ``standard`` (784-400-400-50, where on a CPU the arithmetic dominates).
Each round runs ``--steps`` steps of every implementation in turn (after a warm-up round, which compiles),
so that a slow spell of a shared machine hits all of them; the table gives the median ms per step over the
rounds and the median (range) of each round's ratio. Writes ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrovae.cli import keep_freed_memory
from pyrovae.data import Dataset
from pyrovae.guides import NormalGuide
from pyrovae.inference import TrainConfig, Trainer
from pyrovae.inference.handlers import bind_scales
from pyrovae.models import VAE
from pyrovae.nets import Decoder, GaussianEncoder

from report import header, write_report
from speed import _plain_loss

NETWORKS = {"tiny": (8, (32,)), "standard": (50, (400, 400))}  # latent size, hidden widths
IMPLEMENTATIONS = ("plain eager", "plain compiled", "Pyro SVI", "pyrovae", "pyrovae --compile")
NUM_DATA = 5_000  # the N of the data plate's N / B (any: the step's cost does not depend on it)


def networks(network: str, device: str) -> tuple[VAE, NormalGuide]:
    """Fresh model and guide, with the same initial weights every time."""
    latent, hidden = NETWORKS[network]
    torch.manual_seed(0)
    return VAE(Decoder(latent, 784, hidden), latent).to(device), NormalGuide(GaussianEncoder(784, latent, hidden)).to(
        device
    )


class Scoped:
    """A param store of its own (Pyro's ``ParamStoreDict.scope``), entered for each use: every implementation
    registers its networks under the same names."""

    def __init__(self) -> None:
        self.state = None

    @contextmanager
    def active(self) -> Iterator[None]:
        with pyro.get_param_store().scope(self.state) as state:
            yield
        self.state = state


def steps(network: str, batch: torch.Tensor, args: argparse.Namespace) -> tuple[dict, Trainer]:
    """Each implementation's store and its step on a batch, returning the loss (a tensor or a float); and the
    compiling trainer."""
    device = batch.device
    built: dict[str, tuple[Scoped, Callable]] = {}
    for name in IMPLEMENTATIONS:
        scope = Scoped()
        with scope.active():
            model, guide = networks(network, device)
            if name.startswith("plain"):
                built[name] = (scope, plain_step(model, guide, compiled=name == "plain compiled"))
            elif name == "Pyro SVI":
                scaled = [bind_scales(fn, beta=1.0, num_data=NUM_DATA) for fn in (model, guide)]
                svi = SVI(*scaled, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
                built[name] = (scope, svi.step)
            else:
                train = torch.zeros(NUM_DATA, 784, device=device)  # the trainer's N; its steps get the batch
                data = Dataset("overhead", {"train": train, "test": train[:100]})
                config = TrainConfig(batch_size=args.batch_size, compile=name.endswith("--compile"))
                trainer = Trainer(model, guide, data, config, progress=False)
                built[name] = (scope, lambda x, trainer=trainer: trainer.step(x, 1.0))
    return built, trainer  # the last: pyrovae --compile's


def plain_step(model: VAE, guide: NormalGuide, *, compiled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-3, fused=True)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return _plain_loss(model, guide, x, "elbo", 1, tuned=True) * (NUM_DATA / x.shape[0])

    loss_fn = torch.compile(loss) if compiled else loss

    def step(x: torch.Tensor) -> torch.Tensor:
        value = loss_fn(x)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        return value.detach()

    return step


def timed(step: Callable, batches: list[torch.Tensor]) -> float:
    """Milliseconds per step over ``batches``, the device synchronized at the end."""
    start = time.perf_counter()
    for x in batches:
        loss = step(x)
    float(loss)  # the last step's loss on the host: every step's work is done
    return 1e3 * (time.perf_counter() - start) / len(batches)


def rounds(network: str, args: argparse.Namespace) -> tuple[dict[str, list[float]], float]:
    """Each implementation's ms per step in each round (the warm-up round dropped), and pyrovae's compile time."""
    generator = torch.Generator().manual_seed(0)
    batches = [torch.bernoulli(torch.full((args.batch_size, 784), 0.3), generator=generator) for _ in range(args.steps)]
    batches = [x.to(args.device) for x in batches]
    implementations, compiling = steps(network, batches[0], args)
    ms: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    with pyro.validation_enabled(False):
        for _ in range(args.rounds + 1):
            for name, (scope, step) in implementations.items():
                with scope.active():
                    ms[name].append(timed(step, batches))
    if compiling.compiled is None or compiling.compiled.failed is not None:
        raise RuntimeError("pyrovae's compiled step fell back to the eager one")
    return {name: values[1:] for name, values in ms.items()}, compiling.compiled.seconds


def ratio(ms: dict[str, list[float]], slower: str, faster: str) -> str:
    """The speed of ``faster`` over ``slower`` (> 1: ``faster`` is faster), per round: median (min-max)."""
    ratios = [s / f for s, f in zip(ms[slower], ms[faster], strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="100", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds, after one warm-up round")
    parser.add_argument("--steps", type=int, default=100, help="steps of each implementation per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated subset")
    parser.add_argument("--out", default="overhead.md", help="report name in benchmarks/results")
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="overhead-inductor-")  # compiles from cold
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    rows = []
    for network in args.networks.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            args.batch_size = batch_size
            ms, compile_seconds = rounds(network, args)
            rows.append(
                {
                    "network": f"{network} (784-{'-'.join(map(str, NETWORKS[network][1]))}-{NETWORKS[network][0]})",
                    "batch": batch_size,
                    **{f"{name} ms": statistics.median(ms[name]) for name in IMPLEMENTATIONS},
                    "--compile vs plain eager": ratio(ms, "plain eager", "pyrovae --compile"),
                    "--compile vs plain compiled": ratio(ms, "plain compiled", "pyrovae --compile"),
                    "pyrovae vs plain eager": ratio(ms, "plain eager", "pyrovae"),
                    "compile s": compile_seconds,
                }
            )
    budget = f"""one ELBO step (1 particle, Adam lr 1e-3) of each implementation on binary 784-pixel batches,
  {args.steps} steps per implementation per round, {args.rounds} rounds after a warm-up round (which compiles);
  ms per step: the median over rounds; ratios: speed of the second over the first, per round, median (min-max)"""
    notes = [
        "compile s: pyrovae's tracing and compiling of its step, once, in the warm-up round, with an empty inductor "
        "cache (`compiled the training step` in `pyrovae train`'s output; inductor's on-disk cache makes later "
        "compiles of the same graph shorter)",
    ]
    write_report(
        args.out,
        header("Overhead: ms per training step, eager and compiled", budget=budget, notes=notes, device=args.device),
        pd.DataFrame(rows).round(2),
    )


if __name__ == "__main__":
    main()
