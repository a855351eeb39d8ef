"""Training and evaluation speed of pyrovae against plain PyTorch loops written here.

    python benchmarks/speed.py --data-dir ../shared/data/binarized_mnist [--device cpu] [--ll-images 500]

Each measurement runs in its own process (so peak RSS is its own):
- training throughput (examples/s) of the step ``pyrovae train`` runs
  (``Trainer.step``: Pyro traces, the objective's surrogate, Adam over the param
  store) for ``elbo``, ``mf-elbo`` and IWAE k = 5, 50, against a hand-written
  PyTorch step with the same architecture (784-400-400-50 ReLU MLPs), batch size,
  optimiser and data (static binarized MNIST, resident on the device);
- ``log_likelihood`` with k = 5000 on ``--ll-images`` test images: pyrovae's
  chunked estimator, a plain PyTorch chunked loop, and per-datapoint evaluation
  (one image at a time, as pythae's ``get_nll`` does);
- startup: ``pyrovae --help``.
Writes ``benchmarks/results/speed.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

RESULTS = Path(__file__).parent / "results"
TRAINING = {"elbo": ("elbo", 1), "mf-elbo": ("mf-elbo", 1), "iwae k=5": ("iwae", 5), "iwae k=50": ("iwae", 50)}


def _setup(args: argparse.Namespace):
    from pyrovae.data import load_dataset
    from pyrovae.guides import NormalGuide
    from pyrovae.models import VAE
    from pyrovae.nets import Decoder, GaussianEncoder

    torch.manual_seed(0)
    data = load_dataset("binarized-mnist", data_dir=args.data_dir, device=args.device)
    model = VAE(Decoder(50, 784, (400, 400)), 50).to(args.device)
    guide = NormalGuide(GaussianEncoder(784, 50, (400, 400))).to(args.device)
    return data, model, guide


def _plain_loss(model, guide, x: torch.Tensor, objective: str, k: int) -> torch.Tensor:
    """The same objectives written directly in PyTorch (per-datapoint, summed, scaled by N / B)."""
    loc, scale = guide.encoder(x)
    z = loc + scale * torch.randn((k, *loc.shape), device=x.device)  # (k, B, D)
    log_px_z = -F.binary_cross_entropy_with_logits(model.decoder(z), x.expand(k, -1, -1), reduction="none").sum(-1)
    if objective == "mf-elbo":
        kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - scale.log().sum(-1)
        return -(log_px_z.mean(0) - kl).sum()
    log_w = log_px_z + (-0.5 * z**2).sum(-1) - (-0.5 * ((z - loc) / scale) ** 2 - scale.log()).sum(-1)
    if objective == "elbo":
        return -log_w.mean(0).sum()
    return -(torch.logsumexp(log_w, 0) - math.log(k)).sum()


def measure_training(args: argparse.Namespace, name: str, implementation: str) -> dict:
    from pyrovae.inference import TrainConfig, Trainer

    objective, k = TRAINING[name]
    data, model, guide = _setup(args)
    train = data.split("train")
    n = train.shape[0]
    if implementation == "pyrovae":
        config = TrainConfig(batch_size=args.batch_size, objective=objective, particles=k)
        trainer = Trainer(model, guide, data, config, progress=False)

        def step(x):
            trainer.step(x, 1.0)
    else:
        params = [*model.parameters(), *guide.parameters()]
        optimizer = torch.optim.Adam(params, lr=1e-3)

        def step(x):
            loss = _plain_loss(model, guide, x, objective, k) * (n / x.shape[0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    order = torch.randperm(n, device=train.device).split(args.batch_size)
    for index in order[: args.warmup]:
        step(train[index])
    _sync(args.device)
    start = time.perf_counter()
    for index in order[args.warmup : args.warmup + args.steps]:
        step(train[index])
    _sync(args.device)
    return {"examples_per_s": args.steps * args.batch_size / (time.perf_counter() - start)}


def measure_log_likelihood(args: argparse.Namespace, implementation: str) -> dict:
    from pyrovae.inference import log_likelihood

    data, model, guide = _setup(args)
    test = data.split("test")[torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[: args.ll_images]]
    start = time.perf_counter()
    with torch.no_grad():
        if implementation == "pyrovae":
            estimates = [log_likelihood(model, guide, x, num_samples=5000, chunk_size=250)[0] for x in test.split(100)]
        elif implementation == "plain":
            estimates = [_plain_log_likelihood(model, guide, x) for x in test.split(100)]
        else:  # one datapoint at a time
            estimates = [_plain_log_likelihood(model, guide, x) for x in test.split(1)]
    _sync(args.device)
    return {"seconds": time.perf_counter() - start, "log_likelihood": torch.cat(estimates).mean().item()}


def _plain_log_likelihood(model, guide, x: torch.Tensor, k: int = 5000, chunk: int = 250) -> torch.Tensor:
    log_w = torch.cat([-_plain_loss_parts(model, guide, x, chunk) for _ in range(k // chunk)])  # (k, B)
    return torch.logsumexp(log_w, 0) - math.log(k)


def _plain_loss_parts(model, guide, x: torch.Tensor, k: int) -> torch.Tensor:
    """Negative log-weights ``(k, B)`` with normalising constants (so the estimate is log p(x))."""
    loc, scale = guide.encoder(x)
    z = loc + scale * torch.randn((k, *loc.shape), device=x.device)
    log_px_z = -F.binary_cross_entropy_with_logits(model.decoder(z), x.expand(k, -1, -1), reduction="none").sum(-1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    return -(log_px_z + log_pz - log_qz)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def child(args: argparse.Namespace) -> None:
    """Run one measurement and print it as JSON with this process's peak memory."""
    kind, name, implementation = args.child.split("|")
    result = (
        measure_training(args, name, implementation)
        if kind == "train"
        else measure_log_likelihood(args, implementation)
    )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def spawn(args: argparse.Namespace, spec: str) -> dict:
    options = {"--data-dir": args.data_dir, "--device": args.device, "--batch-size": args.batch_size,
               "--steps": args.steps, "--warmup": args.warmup, "--ll-images": args.ll_images}  # fmt: skip
    command = [sys.executable, __file__, "--child", spec, *(str(v) for kv in options.items() for v in kv)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def startup_seconds() -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(["pyrovae", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per training configuration")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--ll-images", type=int, default=10_000, help="test images for the k = 5000 estimate")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    rows = []
    for name in TRAINING:
        ours, plain = spawn(args, f"train|{name}|pyrovae"), spawn(args, f"train|{name}|plain")
        rows.append({
            "configuration": f"train {name}, batch {args.batch_size}",
            "pyrovae examples/s": ours["examples_per_s"], "plain PyTorch examples/s": plain["examples_per_s"],
            "ratio": ours["examples_per_s"] / plain["examples_per_s"],
            "pyrovae peak RSS MB": ours["peak_rss_mb"], "plain peak RSS MB": plain["peak_rss_mb"],
        })  # fmt: skip
    ll = {impl: spawn(args, f"ll||{impl}") for impl in ("pyrovae", "plain", "per-datapoint")}
    ll_table = pd.DataFrame(
        [{"implementation": impl, "seconds": r["seconds"], "images/s": args.ll_images / r["seconds"],
          "mean log p(x) estimate": r["log_likelihood"], "peak RSS MB": r["peak_rss_mb"]} for impl, r in ll.items()]
    ).round(2)  # fmt: skip
    report = f"""# Speed: pyrovae against plain PyTorch

- machine: {platform.machine()} CPU, {torch.get_num_threads()} torch threads, device `{args.device}`
- date: {datetime.date.today()}
- command: `python benchmarks/speed.py --data-dir {args.data_dir} --device {args.device} --steps {args.steps} \
--ll-images {args.ll_images}`
- architecture: 784-400-400-50 ReLU MLPs, Bernoulli decoder, Adam lr 1e-3, static binarized MNIST on the device;
  {args.steps} timed steps after {args.warmup} warm-up steps per configuration, each in its own process

## Training throughput

{pd.DataFrame(rows).round(2).to_markdown(index=False)}

## log p(x) with k = 5000 on {args.ll_images:,} test images (untrained networks; same estimator)

{ll_table.to_markdown(index=False)}

## Startup

`pyrovae --help`: {startup_seconds():.2f} s (best of 5)
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
