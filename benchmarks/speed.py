"""Training and evaluation speed of pyrovae against plain PyTorch loops written here.

    python benchmarks/speed.py --data-dir ../shared/data/binarized_mnist [--device cpu] [--repeats 3]

Each measurement runs in its own process (so peak RSS is its own), and the
processes of one configuration are interleaved over ``--repeats`` rounds; the
table gives the median throughput of the rounds.
- Training throughput (examples/s) of ``pyrovae train``'s loop (``Trainer.train_epoch``:
  per-epoch shuffle, Pyro traces, the objective, one fused Adam, a host sync every
  50 steps; the epoch's ``seconds`` count its steps only) for ``elbo``, ``mf-elbo`` and
  IWAE k = 5, 50, against a hand-written PyTorch epoch with the same architecture
  (784-400-400-50 ReLU MLPs), batch size, data (static binarized MNIST, a seeded
  ``--train-images`` subset resident on the device) and Adam, once as a plain
  script is usually written and once tuned (fused Adam, pyrovae's Bernoulli log-density and
  malloc settings).
  The first epoch is a warm-up; the others are timed.
- ``log_likelihood`` with k = 5000 on ``--ll-images`` test images: pyrovae's chunked
  estimator (automatic chunks), a plain PyTorch loop with the same chunks, and
  per-datapoint evaluation (one image at a time, 1,000 particles per pass) on
  ``--per-datapoint-images`` of them.
- Startup: ``pyrovae --help``.
Writes ``benchmarks/results/speed.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time

import pandas as pd
import torch
import torch.nn.functional as F

from pyrovae.families.bernoulli import Bernoulli

from report import header, run, write_report

TRAINING = {"elbo": ("elbo", 1), "mf-elbo": ("mf-elbo", 1), "iwae k=5": ("iwae", 5), "iwae k=50": ("iwae", 50)}
# plain: torch.optim.Adam's defaults, binary_cross_entropy_with_logits, the process as Python starts it;
# plain tuned: Adam(fused=True), pyrovae's vectorized Bernoulli log-density and its malloc settings
# (pyrovae.cli.keep_freed_memory): the fastest plain loop we know how to write
IMPLEMENTATIONS = ("pyrovae", "plain", "plain tuned")


def _setup(args: argparse.Namespace, train_images: int | None = None):
    from pyrovae.data import Dataset, load_dataset
    from pyrovae.guides import NormalGuide
    from pyrovae.models import VAE
    from pyrovae.nets import Decoder, GaussianEncoder

    data = load_dataset("binarized-mnist", data_dir=args.data_dir, device=args.device)
    if train_images is not None:  # a seeded random subset: the benchmark's epochs are short
        subset = torch.randperm(50_000, generator=torch.Generator().manual_seed(0))[:train_images]
        data = Dataset(data.name, {"train": data.split("train")[subset.to(args.device)], "test": data.split("test")})
    torch.manual_seed(0)
    model = VAE(Decoder(50, 784, (400, 400)), 50).to(args.device)
    guide = NormalGuide(GaussianEncoder(784, 50, (400, 400))).to(args.device)
    return data, model, guide


def _plain_loss(model, guide, x: torch.Tensor, objective: str, k: int, *, tuned: bool = False) -> torch.Tensor:
    """The same objectives written directly in PyTorch (per-datapoint, summed over the batch).

    :param tuned: log p(x | z) by pyrovae's vectorized Bernoulli formula instead of
        ``binary_cross_entropy_with_logits`` (whose CPU kernel is not vectorized).
    """
    loc, scale = guide.encoder(x)
    z = loc + scale * torch.randn((k, *loc.shape), device=x.device)  # (k, B, D)
    if tuned:
        log_px_z = Bernoulli(logits=model.decoder(z), validate_args=False).log_prob(x).sum(-1)
    else:
        log_px_z = -F.binary_cross_entropy_with_logits(model.decoder(z), x.expand(k, -1, -1), reduction="none").sum(-1)
    if objective == "mf-elbo":
        kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - scale.log().sum(-1)
        return -(log_px_z.mean(0) - kl).sum()
    log_w = log_px_z + (-0.5 * z**2).sum(-1) - (-0.5 * ((z - loc) / scale) ** 2 - scale.log()).sum(-1)
    if objective == "elbo":
        return -log_w.mean(0).sum()
    return -(torch.logsumexp(log_w, 0) - math.log(k)).sum()


def measure_training(args: argparse.Namespace, name: str, implementation: str) -> dict:
    """Examples per second over the timed epochs (all but the first)."""
    import pyro

    from pyrovae.cli import keep_freed_memory
    from pyrovae.inference import TrainConfig, Trainer

    objective, k = TRAINING[name]
    if implementation != "plain":
        keep_freed_memory()  # as the `pyrovae` command does at its start
    data, model, guide = _setup(args, args.train_images)
    if implementation == "pyrovae":
        config = TrainConfig(batch_size=args.batch_size, objective=objective, objective_options={"num_particles": k})
        trainer = Trainer(model, guide, data, config, progress=False)
        seconds = [trainer.train_epoch()["seconds"] for _ in range(args.epochs)]
    else:
        params = [*model.parameters(), *guide.parameters()]
        optimizer = torch.optim.Adam(params, lr=1e-3, fused=True if implementation == "plain tuned" else None)
        with pyro.validation_enabled(False):  # no Pyro here, but the same torch.distributions settings
            tuned = implementation == "plain tuned"
            seconds = [
                _plain_epoch(model, guide, optimizer, data, args, objective, k, tuned) for _ in range(args.epochs)
            ]
    timed = seconds[1:]  # the first epoch is a warm-up
    return {"examples_per_s": len(timed) * data.split("train").shape[0] / sum(timed)}


def _plain_epoch(model, guide, optimizer, data, args: argparse.Namespace, objective: str, k: int, tuned: bool) -> float:
    """One shuffled pass of plain PyTorch steps; the loss is read back once, at the end."""
    train = data.split("train")
    n = train.shape[0]
    order = torch.randperm(n, device=train.device)
    total = torch.zeros((), device=train.device)
    start = time.perf_counter()
    for index in order.split(args.batch_size):
        x = train[index]
        loss = _plain_loss(model, guide, x, objective, k, tuned=tuned) * (n / x.shape[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
    total.item()  # one sync: the epoch's work is done
    return time.perf_counter() - start


def measure_log_likelihood(args: argparse.Namespace, implementation: str) -> dict:
    from pyrovae.cli import keep_freed_memory
    from pyrovae.inference import log_likelihood
    from pyrovae.inference.bounds import auto_chunk_size

    keep_freed_memory()  # in every implementation, as `pyrovae evaluate` does
    data, model, guide = _setup(args)
    images = {"pyrovae": args.ll_images, "plain": args.plain_ll_images}.get(implementation, args.per_datapoint_images)
    test = data.split("test")[torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:images]]
    start = time.perf_counter()
    with torch.no_grad():
        if implementation == "pyrovae":
            estimates = [log_likelihood(model, guide, x, num_samples=5000)[0] for x in test.split(100)]
        elif implementation == "plain":  # the chunks log_likelihood chose
            chunk = auto_chunk_size((test[:100],), 5000)
            estimates = [_plain_log_likelihood(model, guide, x, chunk=chunk) for x in test.split(100)]
        else:  # one datapoint at a time
            estimates = [_plain_log_likelihood(model, guide, x, chunk=1000) for x in test.split(1)]
    _sync(args.device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": images, "log_likelihood": torch.cat(estimates).mean().item()}


def _plain_log_likelihood(model, guide, x: torch.Tensor, *, k: int = 5000, chunk: int) -> torch.Tensor:
    """Streaming log-mean-exp over chunks of particles, as log_likelihood does."""
    log_sum = None
    for start in range(0, k, chunk):
        chunk_sum = torch.logsumexp(-_plain_loss_parts(model, guide, x, min(chunk, k - start)), 0)  # (B,)
        log_sum = chunk_sum if log_sum is None else torch.logaddexp(log_sum, chunk_sum)
    return log_sum - math.log(k)


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


def spawn(args: argparse.Namespace, spec: str, batch_size: int = 100) -> dict:
    options = {"--data-dir": args.data_dir, "--device": args.device, "--batch-size": batch_size,
               "--epochs": args.epochs, "--train-images": args.train_images, "--ll-images": args.ll_images,
               "--plain-ll-images": args.plain_ll_images,
               "--per-datapoint-images": args.per_datapoint_images}  # fmt: skip
    command = [sys.executable, __file__, "--child", spec, *(str(v) for kv in options.items() for v in kv)]
    out = run(command, capture=True, echo=False)
    return json.loads(out.strip().splitlines()[-1])


def training_rows(args: argparse.Namespace, batch_size: int) -> list[dict]:
    """One row per objective: median examples/s over interleaved rounds, worst peak memory."""
    rows = []
    for name in TRAINING:
        runs = {impl: [] for impl in IMPLEMENTATIONS}
        for _ in range(args.repeats):  # interleaved, so that a slow spell of the machine hits all three
            for impl in IMPLEMENTATIONS:
                runs[impl].append(spawn(args, f"train|{name}|{impl}", batch_size))
        speed = {impl: statistics.median(r["examples_per_s"] for r in runs[impl]) for impl in IMPLEMENTATIONS}
        memory = "peak_gpu_mb" if args.device == "cuda" else "peak_rss_mb"
        rows.append({
            "configuration": f"train {name}, batch {batch_size}",
            "pyrovae examples/s": speed["pyrovae"],
            "plain examples/s": speed["plain"],
            "plain tuned examples/s": speed["plain tuned"],
            "ratio to plain": speed["pyrovae"] / speed["plain"],
            "ratio to plain tuned": speed["pyrovae"] / speed["plain tuned"],
            "pyrovae examples/s, each round": ", ".join(f"{r['examples_per_s']:.0f}" for r in runs["pyrovae"]),
            "peak memory MB (pyrovae / plain)": "{:.0f} / {:.0f}".format(
                max(r[memory] for r in runs["pyrovae"]), max(r[memory] for r in runs["plain"])),
        })  # fmt: skip
    return rows


def startup_seconds() -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        run(["pyrovae", "--help"], capture=True, echo=False)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/binarized_mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="100", help="comma-separated training batch sizes")
    parser.add_argument("--batch-size", type=int, default=100, help=argparse.SUPPRESS)  # one child's
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per process; the first is a warm-up")
    parser.add_argument("--train-images", type=int, default=10_000, help="seeded subset of the training split")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per training configuration")
    parser.add_argument("--ll-images", type=int, default=10_000, help="test images for the k = 5000 estimate")
    parser.add_argument("--plain-ll-images", type=int, default=2_000, help="of those, for the plain loop")
    parser.add_argument("--per-datapoint-images", type=int, default=1_000, help="of those, one at a time")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    memory = "peak GPU MB" if args.device == "cuda" else "peak RSS MB"
    rows = [row for b in map(int, args.batch_sizes.split(",")) for row in training_rows(args, b)]
    ll = {impl: spawn(args, f"ll||{impl}") for impl in ("pyrovae", "plain", "per-datapoint")}
    ll_table = pd.DataFrame(
        [{"implementation": impl, "images": r["images"], "seconds": r["seconds"],
          "images/s": r["images"] / r["seconds"], "mean log p(x) estimate": r["log_likelihood"],
          memory: r["peak_gpu_mb" if args.device == "cuda" else "peak_rss_mb"]} for impl, r in ll.items()]
    ).round(2)  # fmt: skip
    budget = f"""training: {args.train_images:,} training images, batch sizes {args.batch_sizes},
  {args.epochs} epochs per process of which the first is a warm-up, {args.repeats} interleaved rounds;
  log p(x): {args.ll_images:,} test images (pyrovae), {args.plain_ll_images:,} (plain), {args.per_datapoint_images:,}
  (per-datapoint)"""
    notes = [
        "architecture: 784-400-400-50 ReLU MLPs, Bernoulli decoder, Adam lr 1e-3, static binarized MNIST on the device",
        """training: `pyrovae train`'s epoch loop (with the malloc settings the `pyrovae` command makes) against a
  plain PyTorch epoch: *plain* uses `torch.optim.Adam`'s defaults in a process as Python starts it; *plain
  tuned* uses `Adam(fused=True)`, pyrovae's vectorized Bernoulli log-density and its malloc settings, the
  fastest plain loop we know how to write (so that *ratio to plain tuned* is the cost of Pyro itself);
  median examples/s over the rounds, one process each""",
    ]
    ll_text = f"""pyrovae: `log_likelihood` on batches of 100 with its automatic chunks,
on {args.ll_images:,} test images; plain: the same chunks, on the first {args.plain_ll_images:,} of them;
per-datapoint: one image at a time, 1,000 particles per pass, on the first {args.per_datapoint_images:,}
(all three with pyrovae's malloc settings). Compare images/s."""
    write_report(
        "speed.md",
        header("Speed: pyrovae against plain PyTorch", budget=budget, notes=notes, device=args.device),
        "## Training throughput",
        pd.DataFrame(rows).round(2),
        "## log p(x) with k = 5000 (untrained networks; the same estimator, on a seeded random subset of the test set)",
        ll_text,
        ll_table,
        f"## Startup\n\n`pyrovae --help`: {startup_seconds():.2f} s (best of 5)",
    )


if __name__ == "__main__":
    main()
