"""The ``pyrovae`` command: ``train``, ``evaluate``, ``sample`` and ``plot``.

Heavy libraries (torch, Pyro) are imported inside the commands, so that
``pyrovae --help`` answers at once. Every expected failure ends with one
readable line on stderr, ``pyrovae: error: ...``, and an exit status:

* 2: bad input (an option out of range, bad data, a missing or damaged
  checkpoint, an existing run directory); checked by :mod:`pyrovae.validate`
  before anything is written;
* 1: a fault during the run (NaN or infinite loss, a failed write); the last
  checkpoint is intact;
* 128 + the signal's number (130 for SIGINT, 143 for SIGTERM): training was
  stopped and can be continued with ``--resume``.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from collections.abc import Sequence

DATASETS = ("mnist-5k", "binarized-mnist", "mnist", "fashion-mnist")  # == pyrovae.data.DATASETS
OBJECTIVES = ("elbo", "mf-elbo", "iwae", "renyi")  # == pyrovae.inference.objectives.OBJECTIVES
ACTIVATIONS = ("relu", "softplus", "tanh", "elu")  # == pyrovae.nets.ACTIVATIONS
MODELS = ("vae", "cvae", "hvae", "ae", "dae")  # == pyrovae.spec.BUILTIN
LIKELIHOODS = ("bernoulli", "gaussian", "learned-gaussian", "continuous-bernoulli")  # == models.likelihoods
UNSET = object()  # the default of an option not written on the command line, when asked for
PLOT_KINDS = (  # == pyrovae.figures.KINDS
    "samples",
    "reconstructions",
    "latent-map",
    "manifold",
    "interpolate",
    "traverse",
    "arithmetic",
    "kl-per-dim",
    "curves",
)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def _ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers, their range checked by :mod:`pyrovae.validate`."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _triple(text: str) -> tuple[int, int, int]:
    try:
        a, b, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three class labels A,B,C, got {text!r}") from None
    return a, b, c


def _parser(*, unset: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command-line parser; ``unset``: ``train`` options that read :data:`UNSET` unless given."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="pyrovae", description="Variational autoencoders on Pyro.", formatter_class=fmt
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model into a run directory", formatter_class=fmt)
    train.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    train.add_argument("--dataset", default="mnist-5k", choices=DATASETS, help="data set")
    train.add_argument("--data-dir", default=None, help="directory holding the data files")
    train.add_argument("--epochs", type=int, default=None, help="passes over the training set (default: 50)")
    train.add_argument("--batch-size", type=int, default=100, help="datapoints per step")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--objective", default="elbo", choices=OBJECTIVES, help="training objective")
    train.add_argument("--particles", type=int, default=1, help="samples of z per datapoint (k for iwae, renyi)")
    train.add_argument("--iwae-gradient", default="standard", choices=("standard", "dreg"), help="IWAE estimator")
    train.add_argument("--alpha", type=float, default=0.5, help="order of the Renyi bound (--objective renyi)")
    train.add_argument("--beta", type=float, default=1.0, help="KL weight (beta-VAE)")
    train.add_argument("--kl-anneal", default="constant", help="constant | linear:STEPS | cyclical:PERIOD[:RATIO]")
    train.add_argument(
        "--clip-norm", type=float, default=None, help="bound on the per-datapoint loss's gradient norm, e.g. 100"
    )
    train.add_argument("--seed", type=int, default=0, help="random seed")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--force", action="store_true", help="start over in an existing --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--snapshot-epochs",
        type=_int_list,
        default=(),
        help="epochs after which to save reconstructions_eN.png and samples_eN.png (one fixed Z), e.g. 1,5,10",
    )
    model = train.add_argument_group("model (options left out take the model's spec values)")
    model.add_argument("--model", default=argparse.SUPPRESS, choices=MODELS, help="built-in family (default: vae)")
    model.add_argument("--spec", default=argparse.SUPPRESS, help="TOML file declaring the model instead of --model")
    keep = argparse.SUPPRESS  # an override absent from the command line keeps the spec's value
    model.add_argument("--latent-dim", type=_ints, default=keep, help="latent sizes, e.g. 20, or 100,50 for hvae")
    model.add_argument("--hidden", type=_int_list, default=keep, help="hidden widths of every network, e.g. 400,400")
    model.add_argument("--activation", default=keep, choices=ACTIVATIONS, help="hidden activation")
    model.add_argument("--likelihood", default=keep, choices=LIKELIHOODS, help="p(x | z) (built-ins: bernoulli)")
    model.add_argument("--obs-scale", type=float, default=keep, help="gaussian: pixel std (default 0.1)")
    model.add_argument("--min-obs-scale", type=float, default=keep, help="learned-gaussian: std floor (default 0.01)")
    model.add_argument("--guide", default=keep, choices=("diag", "full"), help="q(z | x): diagonal or full covariance")
    model.add_argument("--arch", default=keep, choices=("mlp", "conv"), help="networks reading or writing images")
    model.add_argument("--corruption", default=keep, help="dae input corruption: mask:P | gaussian:SIGMA")
    train.set_defaults(**dict.fromkeys(unset, UNSET))

    evaluate = commands.add_parser(
        "evaluate", help="importance-weighted bounds L_k and active units of a trained run", formatter_class=fmt
    )
    evaluate.add_argument("run_dir", help="run directory")
    evaluate.add_argument("--k", type=_int_list, default="1,5,50,5000", help="particle counts; 1 is the ELBO")
    evaluate.add_argument("--split", default="test", help="data split")
    evaluate.add_argument("--limit", type=int, default=None, help="a seeded random subset of this many datapoints")
    evaluate.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="particles per vectorized pass (memory); default: about 2048 particle-datapoint rows per pass on a CPU",
    )
    evaluate.add_argument("--batch-size", type=int, default=100, help="datapoints per pass")
    evaluate.add_argument("--device", default="auto", help="auto | cpu | cuda")

    sample = commands.add_parser("sample", help="grid of decoded prior samples", formatter_class=fmt)
    sample.add_argument("run_dir", help="run directory")
    sample.add_argument("--n", type=int, default=64, help="number of samples")
    sample.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/samples.png)")
    sample.add_argument("--label", type=int, default=None, help="class to generate (cvae; default: 8 of each)")
    sample.add_argument("--device", default="auto", help="auto | cpu | cuda")

    plot = commands.add_parser("plot", help="a figure of a trained run, as a PNG", formatter_class=fmt)
    plot.add_argument("run_dir", help="run directory")
    plot.add_argument("--kind", required=True, choices=PLOT_KINDS, help="figure")
    plot.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/KIND.png)")
    plot.add_argument("--temperature", type=float, default=1.0, help="samples: prior spread scale")
    plot.add_argument(
        "--classes", type=_triple, action="append", help="arithmetic: A,B,C for mean A - mean B + mean C (repeatable)"
    )
    plot.add_argument("--device", default="auto", help="auto | cpu | cuda")
    return parser


def _train(args: argparse.Namespace) -> None:
    import warnings

    from pyrovae.inference.diagnostics import PosteriorCollapseWarning
    from pyrovae.runs import model_spec, train_run
    from pyrovae.validate import check_train

    config = check_train(args, given=args.given)
    with warnings.catch_warnings():  # a collapse warning is one line in the epoch log (stdout), each time
        warnings.simplefilter("always", PosteriorCollapseWarning)
        warnings.showwarning = lambda message, *_: print(f"pyrovae: warning: {message}", flush=True)
        history = train_run(config, args.out, resume=args.resume, force=args.force, progress=not args.no_progress)
    if history:
        name = "test ELBO" if model_spec(config).guide != "delta" else "test log p(x | f(x)) (autoencoder)"
        print(f"final {name}: {history[-1]['test_elbo']:.3f} nats")


def _evaluate(args: argparse.Namespace) -> None:
    from pyrovae.runs import evaluate_run
    from pyrovae.validate import check_evaluate

    check_evaluate(args)
    table, active = evaluate_run(
        args.run_dir,
        ks=args.k,
        split=args.split,
        limit=args.limit,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        device=args.device,
    )
    if table is None:
        print("ELBO, bounds L_k and log-likelihood: not applicable (an autoencoder has no density over x)")
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("active units: " + ", ".join(f"{site} {n}" for site, n in active.items()))


def _sample(args: argparse.Namespace) -> None:
    from pathlib import Path

    from pyrovae.plots import save_samples
    from pyrovae.runs import load_run, resolve_device, sample_inputs
    from pyrovae.validate import check_sample

    check_sample(args)
    run = load_run(args.run_dir, args.device)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.png"
    inputs = sample_inputs(run.model, args.label, n=args.n, device=resolve_device(args.device))
    save_samples(run.model, run.image_shape, out, n=inputs[0].shape[0] if inputs else args.n, inputs=inputs)
    print(out)


def _plot(args: argparse.Namespace) -> None:
    from pyrovae.figures import PlotOptions, plot_run
    from pyrovae.validate import check_plot

    check_plot(args)
    triples = {"triples": tuple(args.classes)} if args.classes else {}
    options = PlotOptions(temperature=args.temperature, device=args.device, **triples)
    print(plot_run(args.run_dir, args.kind, out=args.out, options=options))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":  # which options were written, to tell what --resume would change
        marked = _parser(unset=sorted(set(vars(args)) - {"command"})).parse_args(argv)
        args.given = {k for k, v in vars(marked).items() if v is not UNSET} - {"command"}
    from pyrovae.runs import RunError, RunInterrupted

    keep_freed_memory()
    try:
        {"train": _train, "evaluate": _evaluate, "sample": _sample, "plot": _plot}[args.command](args)
    except ValueError as e:  # pyrovae's UsageError, DataError, CheckpointError, and bad values met later
        return _fail(e, 2)
    except (RunError, OSError) as e:
        return _fail(e, 1)
    except RunInterrupted as e:
        return _fail(e, 128 + e.signum, "stopped")
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C
        return _fail("interrupted", 130, "stopped")
    return 0


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse rather than give it back to the system.

    Every training step allocates and frees the same activation buffers (up to
    tens of MB with many particles); by default glibc returns such blocks to the
    system (unmap, trim), and the next step pays a page fault per 4 KiB page. With
    the thresholds raised, those steps reuse warm memory (``benchmarks/results/speed.md``
    measures the difference); the price is that the process keeps its peak heap.
    A no-op where the C library is not glibc.

    :returns: whether both settings were applied.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    # 32 MiB is the largest mmap threshold glibc accepts on 64-bit; trim only above 1 GiB of free heap
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _fail(message: object, status: int, kind: str = "error") -> int:
    print(f"pyrovae: {kind}: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
