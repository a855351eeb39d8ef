"""The ``pyrovae`` command: ``train``, ``evaluate``, ``sample`` and ``plot``.

Heavy libraries (torch, Pyro) are imported inside the commands, so that
``pyrovae --help`` answers at once. Every expected failure ends with one
readable line on stderr, ``pyrovae: error: ...``, and an exit status:

* 2: bad input, any :class:`pyrovae.errors.InputError` (an option out of
  range, bad data, a missing, damaged or unsafe checkpoint, a wrong
  ``config.json``, an existing or locked run directory); refused before
  anything is written;
* 1: a fault during the run (NaN or infinite loss, a failed write, out of
  memory) or an unexpected error (a bug: ``PYROVAE_TRACEBACK=1`` shows its
  traceback); the last checkpoint is intact;
* 128 + the signal's number (130 for SIGINT, 143 for SIGTERM): training was
  stopped and can be continued with ``--resume``.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence

from pyrovae import __version__
from pyrovae.errors import is_out_of_memory, one_line

MODEL_FILE_HELP = "the model file of a run trained with --model-file (pyrovae runs no code a run directory names)"
UNSET = object()  # the default of an option not written on the command line, when asked for


def choices(command: str | None) -> dict[str, tuple[str, ...] | None]:
    """The choices of ``command``'s options, from the registries that define them: data sets, objectives,
    activations, built-in models, the distribution families (likelihoods, guides) and the figure kinds.

    Only the command named on the command line reads them (they import torch and matplotlib), so that
    ``pyrovae --help`` answers at once; for the others every choice is ``None`` (not checked, not shown).
    """
    names = ("dataset", "objective", "activation", "model", "likelihood", "guide", "kind", "discrete")
    if command == "train":
        from pyrovae import families, spec
        from pyrovae.data import DATASETS
        from pyrovae.inference.objectives import OBJECTIVES
        from pyrovae.nets import ACTIVATIONS

        stochastic = [n for n in families.names("guide") if not families.get(n, "guide").capabilities.deterministic]
        guides = ("diag", *(n for n in stochastic if n not in ("diag", "normal")))  # diag is the Normal's name
        from pyrovae.models.vqvae import VQ_MODELS

        models = (*spec.BUILTIN, *VQ_MODELS)
        found = (DATASETS, OBJECTIVES, tuple(ACTIVATIONS), models, families.names("likelihood"), guides, None)
        found += (spec.ESTIMATORS,)
        return dict(zip(names, found, strict=True))
    if command == "plot":
        from pyrovae.viz.figures import KINDS

        return dict.fromkeys(names) | {"kind": KINDS}
    return dict.fromkeys(names)


def _dataset(names: Sequence[str] | None) -> Callable[[str], str]:
    """``--dataset``'s type: a data set of ``names`` (unchecked when ``None``) or a data file, by its suffix."""

    def dataset(text: str) -> str:
        from pyrovae.arrays import SUFFIXES, is_data_file

        if names is None or text in names or is_data_file(text):
            return text
        listed = ", ".join(repr(n) for n in names)
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {listed}, or give a data file: {', '.join(SUFFIXES)}, or a "
            "folder of images)"
        )

    return dataset


def _data_size(text: str) -> int | str:
    """``--data-size``: ``all`` or a whole number (checked for range with the rest of the run's settings)."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or all, got {text!r}") from None


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


def _vq_options(train: argparse.ArgumentParser, keep: str) -> None:
    """The VQ-VAE's options (``--model vqvae``, then ``--model vqvae-prior --from RUN``)."""
    vq = train.add_argument_group("VQ-VAE (--model vqvae; then --model vqvae-prior --from RUN learns a prior)")
    vq.add_argument("--codebook-size", type=int, default=keep, help="K codebook entries (default: 512)")
    vq.add_argument("--code-dim", type=int, default=keep, help="D, the size of each entry (default: 16)")
    vq.add_argument("--commitment", type=float, default=keep, help="beta of the commitment loss (default: 0.25)")
    vq.add_argument(
        "--codebook-update",
        default=keep,
        choices=("ema", "loss"),
        help="moving averages of the encoder outputs, or the codebook loss (default: ema)",
    )
    vq.add_argument("--ema-decay", type=float, default=keep, help="decay of the moving averages (default: 0.99)")
    vq.add_argument(
        "--restart-after",
        type=int,
        default=keep,
        help="steps an entry may go unused before it restarts at an encoder output; 0: never (default: 20)",
    )
    vq.add_argument(
        "--from", dest="first_stage", default=keep, metavar="RUN", help="vqvae-prior: the vqvae run (default: none)"
    )
    vq.add_argument("--prior-layers", type=int, default=keep, help="vqvae-prior: PixelCNN layers (default: 5)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, unless the help states it already (or there is none to state:
    a required option, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        nothing = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default:" in help or action.required or nothing:
            return help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``pyrovae: error: ...``, and exit status 2."""

    hint: str | None = None  # the help to point to (the command's, when the command line names one)

    def error(self, message: str) -> None:  # argparse's hook: must not return
        message = " ".join(message.split())
        sys.stderr.write(f"pyrovae: error: {message}; see {self.hint or self.prog} --help\n")
        sys.exit(2)


def _parser(*, unset: Sequence[str] = (), command: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser; ``unset``: ``train`` options that read :data:`UNSET` unless given;
    ``command``: the command named on the command line, for the hint of the top-level parser's errors."""
    fmt, choice = _HelpFormatter, choices(command)
    parser = _Parser(prog="pyrovae", description="Variational autoencoders on Pyro.", formatter_class=fmt)
    parser.hint = f"pyrovae {command}" if command else None
    parser.add_argument("--version", action="version", version=f"pyrovae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model into a run directory", formatter_class=fmt)
    train.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    names = ", ".join(choice["dataset"] or ())
    train.add_argument(
        "--dataset",
        default="mnist-5k",
        type=_dataset(choice["dataset"]),
        metavar="NAME|FILE",
        help=f"a data set ({names}), a data file (.npy, .npz, .pt, .csv, .tsv: arrays train, test[, valid] or one "
        "array) or a folder of images (train/, test/[, valid/] or one split; class sub-folders as ImageFolder)",
    )
    train.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="a data file of one array: the rows kept for the test split, seeded (default: 0.1)",
    )
    train.add_argument(
        "--valid-fraction",
        type=float,
        default=None,
        help="hold out this fraction of the training split (seeded) as a validation split, monitored every epoch "
        "in place of the test split (default: none; a data set's own valid split is used where it has one)",
    )
    train.add_argument(
        "--label-column",
        default=None,
        help="a table (.csv, .tsv): the column of class labels, a name or an index (default: none, unlabelled)",
    )
    train.add_argument(
        "--data-dir",
        default=None,
        help="directory holding the data files (default: none; every data set but mnist-5k needs one)",
    )
    train.add_argument(
        "--data-size",
        type=_data_size,
        default=None,
        metavar="N|all",
        help="sprites: images drawn (seeded, the same in every run) from the 737,280 of the full product, or all "
        "of them (12 GB as float32) (default: 20,000)",
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the training set (default: 50; with --resume, the run's: pass a larger N to train on)",
    )
    train.add_argument("--batch-size", type=int, default=100, help="datapoints per step")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--objective", default="elbo", choices=choice["objective"], help="training objective")
    train.add_argument("--particles", type=int, default=1, help="samples of z per datapoint (k for iwae, renyi)")
    train.add_argument("--iwae-gradient", default="standard", choices=("standard", "dreg"), help="IWAE estimator")
    train.add_argument("--alpha", type=float, default=0.5, help="order of the Renyi bound (--objective renyi)")
    train.add_argument("--beta", type=float, default=1.0, help="KL weight (beta-VAE)")
    train.add_argument(
        "--tc-weight",
        type=float,
        default=6.0,
        help="--objective tc-elbo (beta-TCVAE): weight of the total correlation, beta that of the other KL terms",
    )
    train.add_argument("--gamma", type=float, default=1000.0, help="--objective capacity: weight of |KL - C|")
    train.add_argument(
        "--capacity", type=float, default=25.0, help="--objective capacity: C_max, the target KL in nats"
    )
    train.add_argument(
        "--capacity-steps", type=int, default=100_000, help="--objective capacity: steps over which C rises to C_max"
    )
    train.add_argument(
        "--labelled",
        type=int,
        default=None,
        help="m2 (a partially observed latent): keep N training labels, balanced per class (default: all)",
    )
    train.add_argument(
        "--classifier-weight",
        type=float,
        default=None,
        help="m2: weight of -log q(y | x) per labelled datapoint (default: Kingma et al.'s 0.1 N / N_labelled)",
    )
    train.add_argument("--kl-anneal", default="constant", help="constant | linear:STEPS | cyclical:PERIOD[:RATIO]")
    train.add_argument(
        "--lr-schedule", default="constant", help="constant | cosine (to 0 over --epochs) | step:EVERY:GAMMA"
    )
    train.add_argument(
        "--clip-norm",
        type=float,
        default=None,
        help="bound on the per-datapoint loss's gradient norm, e.g. 100 (default: none, no clipping)",
    )
    train.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a higher validation ELBO, keeping the best epoch in best.pt (which "
        "evaluate, sample, plot and pyrovae.load then read) (default: none; needs a validation split)",
    )
    train.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="trace each training step (guide, model, loss, gradients) into one graph compiled by torch.compile: "
        "the same loss and gradients, faster where Python's overhead dominates; the first steps compile (seconds); "
        "--resume may turn it on or off (default: off)",
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
        help="epochs after which to save reconstructions_eN.png and samples_eN.png (one fixed Z), e.g. 1,5,10 "
        "(default: none)",
    )
    model = train.add_argument_group(
        "model (options left out take the values of the model's spec, models/specs/FAMILY.toml; "
        "the defaults below are the vae's)"
    )
    model.add_argument(
        "--model",
        default=argparse.SUPPRESS,
        choices=choice["model"],
        help="built-in family; vqvae and vqvae-prior are the two stages of a VQ-VAE (default: vae)",
    )
    model.add_argument(
        "--spec", default=argparse.SUPPRESS, help="TOML file declaring the model instead of --model (default: none)"
    )
    model.add_argument(
        "--model-file",
        default=None,
        metavar="FILE.py:FACTORY",
        help="a hand-written Pyro model instead: FACTORY() returns (model, guide) or an object with model and guide "
        "methods, each called as fn(x); evaluate, sample, plot and --resume need it again (default: none)",
    )
    model.add_argument(
        "--no-binarize",
        dest="binarize",
        action="store_false",
        help="--model-file: feed grey values in [0, 1] instead of binarizing the images at every pass",
    )
    keep = argparse.SUPPRESS  # an override absent from the command line keeps the spec's value
    model.add_argument(
        "--latent-dim", type=_ints, default=keep, help="latent sizes, e.g. 20, or 100,50 for hvae (default: 20)"
    )
    model.add_argument(
        "--hidden", type=_int_list, default=keep, help="hidden widths of every network (default: 400,400)"
    )
    model.add_argument(
        "--activation", default=keep, choices=choice["activation"], help="hidden activation (default: relu)"
    )
    model.add_argument(
        "--likelihood",
        default=keep,
        choices=choice["likelihood"],
        help="p(x | z) (default: bernoulli, every built-in's)",
    )
    model.add_argument("--obs-scale", type=float, default=keep, help="gaussian: pixel std (default: 0.1)")
    model.add_argument("--min-obs-scale", type=float, default=keep, help="learned-gaussian: std floor (default: 0.01)")
    model.add_argument(
        "--guide",
        default=keep,
        choices=choice["guide"],
        help="q(z | x)'s family (pyrovae/families): diagonal or full-covariance Normal, an inverse autoregressive "
        "flow, Laplace, Student-t (default: diag; the autoencoders' is a point mass)",
    )
    model.add_argument(
        "--arch", default=keep, choices=("mlp", "conv"), help="networks reading or writing images (default: mlp)"
    )
    model.add_argument(
        "--corruption",
        default=keep,
        help="dae input corruption: mask:P | gaussian:SIGMA (default: none; the dae's: mask:0.3)",
    )
    model.add_argument(
        "--discrete",
        default=keep,
        choices=choice["discrete"],
        help="how the discrete latents (gmvae's y, binary units) train: summed exactly, through their Concrete "
        "relaxation (plain or straight-through), or by the score function (NVIL with --objective elbo, VIMCO "
        "with iwae) (default: the spec's, enumerate)",
    )
    _vq_options(train, keep)
    train.set_defaults(**dict.fromkeys(unset, UNSET))

    evaluate = commands.add_parser(
        "evaluate", help="importance-weighted bounds L_k and active units of a trained run", formatter_class=fmt
    )
    evaluate.add_argument("run_dir", help="run directory")
    evaluate.add_argument("--k", type=_int_list, default="1,5,50,5000", help="particle counts; 1 is the ELBO")
    evaluate.add_argument("--split", default="test", help="data split")
    evaluate.add_argument(
        "--limit",
        type=int,
        default=None,
        help="a seeded random subset of this many datapoints (default: the whole split)",
    )
    evaluate.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="particles per vectorized pass (memory) (default: about 2048 particle-datapoint rows per pass on a CPU)",
    )
    evaluate.add_argument(
        "--disentanglement",
        action="store_true",
        help="also the disentanglement metrics of the posterior means against the data set's factors (sprites): "
        "MIG, beta-VAE, FactorVAE and DCI scores, into disentanglement.csv",
    )
    evaluate.add_argument("--batch-size", type=int, default=100, help="datapoints per pass")
    evaluate.add_argument("--device", default="auto", help="auto | cpu | cuda")
    evaluate.add_argument("--model-file", default=None, metavar="FILE.py:FACTORY", help=MODEL_FILE_HELP)

    sample = commands.add_parser("sample", help="grid of decoded prior samples", formatter_class=fmt)
    sample.add_argument("run_dir", help="run directory")
    sample.add_argument("--n", type=int, default=64, help="number of samples")
    sample.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/samples.png)")
    sample.add_argument(
        "--label", type=int, default=None, help="class to generate, for a cvae (default: 8 of each class)"
    )
    sample.add_argument("--device", default="auto", help="auto | cpu | cuda")
    sample.add_argument("--model-file", default=None, metavar="FILE.py:FACTORY", help=MODEL_FILE_HELP)

    plot = commands.add_parser("plot", help="a figure of a trained run, as a PNG", formatter_class=fmt)
    plot.add_argument("run_dir", help="run directory")
    plot.add_argument("--kind", required=True, choices=choice["kind"], help="figure")
    plot.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/KIND.png)")
    plot.add_argument(
        "--site", default=None, help="the latent to draw, for a model with several (e.g. z1 or z2 of an hvae)"
    )
    plot.add_argument(
        "--colour-by",
        default=None,
        metavar="Y",
        help="latent-map: colour by argmax q(Y | x) of a categorical latent (a gmvae's y) (default: the labels)",
    )
    plot.add_argument(
        "--label",
        type=int,
        default=None,
        metavar="Y",
        help="a label-conditioned model (cvae): decode every figure with class Y, the encoder reading each test "
        "image with its own label; latent-map and kl-per-dim keep only the test images of class Y (default: "
        "samples one row per class, manifold one panel per class, interpolate pairs of one class decoded with "
        "their class, arithmetic each mean with its class and a - b + c with a, the rest each image's own label)",
    )
    plot.add_argument("--temperature", type=float, default=1.0, help="samples: prior spread scale")
    plot.add_argument(
        "--classes",
        type=_triple,
        action="append",
        help="arithmetic: A,B,C for mean A - mean B + mean C (repeatable) (default: 7,1,4 8,0,1 9,4,3 6,0,5)",
    )
    plot.add_argument("--device", default="auto", help="auto | cpu | cuda")
    plot.add_argument("--model-file", default=None, metavar="FILE.py:FACTORY", help=MODEL_FILE_HELP)
    return parser


def _train(args: argparse.Namespace) -> None:
    import warnings

    from pyrovae import distributed
    from pyrovae.inference.diagnostics import PosteriorCollapseWarning
    from pyrovae.run_config import model_spec
    from pyrovae.runs import train_run
    from pyrovae.validate import check_train

    shard = distributed.from_env()  # under torchrun: this process's rank, the process group joined
    config = check_train(args, given=args.given)
    if config.train.compile:  # inductor's import logs that a CPU-only machine has no CUDA toolkit: noise here
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    distributed.barrier()  # every rank checked the run directory before rank 0 creates it
    with warnings.catch_warnings():  # a collapse warning is one line in the epoch log (stdout), each time
        warnings.simplefilter("always", PosteriorCollapseWarning)
        warnings.showwarning = lambda message, *_: print(f"pyrovae: warning: {message}", flush=True)
        history = train_run(
            config,
            args.out,
            resume=args.resume,
            force=args.force,
            progress=not args.no_progress,
            model_file=args.model_file,
            shard=shard,
        )
    if history and (shard is None or shard.main):
        from pyrovae.inference.train_config import best_epoch, heldout_elbo

        autoencoder = config.has_spec and model_spec(config).deterministic
        kept = history[-1]  # the run's parameters: the last epoch's, or with early stopping the best one's
        if config.train.early_stopping is not None:
            kept = history[best_epoch(history) - 1]
        split, score = heldout_elbo(kept)
        name = f"{split} log p(x | f(x)) (autoencoder)" if autoencoder else f"{split} ELBO"
        which = f"best (epoch {kept['epoch']})" if config.train.early_stopping is not None else "final"
        print(f"{which} {name}: {score:.3f} nats")


def _evaluate(args: argparse.Namespace) -> None:
    from pyrovae import distributed
    from pyrovae.evaluate import evaluate_run
    from pyrovae.validate import check_evaluate

    shard = distributed.from_env()  # under torchrun: the batches shared out, the bounds gathered
    check_evaluate(args)
    table, active, clusters, scores = evaluate_run(
        args.run_dir,
        ks=args.k,
        split=args.split,
        limit=args.limit,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        device=args.device,
        model_file=args.model_file,
        shard=shard,
        disentanglement=args.disentanglement,
    )
    if shard is not None and not shard.main:
        return
    if table is None:
        print("ELBO, bounds L_k and log-likelihood: not applicable (an autoencoder has no density over x)")
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("active units: " + ", ".join(f"{site} {n}" for site, n in active.items()))
    how = {"classification": "argmax q against the labels", "clustering": "clusters matched one to one with classes"}
    for site, (kind, accuracy) in clusters.items():
        print(f"{kind} accuracy of q({site} | x): {accuracy:.3f} ({how[kind]})")
    if args.disentanglement:
        print("disentanglement: " + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()))


def _sample(args: argparse.Namespace) -> None:
    from pathlib import Path

    from pyrovae.run_config import resolve_device
    from pyrovae.runs import sample_program
    from pyrovae.store import load_run
    from pyrovae.validate import check_sample
    from pyrovae.viz.plots import save_samples

    check_sample(args)
    run = load_run(args.run_dir, args.device, model_file=args.model_file)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.png"
    program, inputs, n = sample_program(run.model, args.label, n=args.n, device=resolve_device(args.device))
    save_samples(program, run.image_shape, out, n=n, inputs=inputs)
    print(out)


def _plot(args: argparse.Namespace) -> None:
    from pyrovae.validate import check_plot
    from pyrovae.viz.figures import PlotOptions, plot_run

    check_plot(args)
    triples = {"triples": tuple(args.classes)} if args.classes else {}
    options = PlotOptions(
        temperature=args.temperature,
        device=args.device,
        site=args.site,
        label=args.label,
        model_file=args.model_file,
        colour_by=args.colour_by,
        **triples,
    )
    print(plot_run(args.run_dir, args.kind, out=args.out, options=options))


COMMANDS = ("train", "evaluate", "sample", "plot")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pyrovae`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    command = command if command in COMMANDS else None
    args = _parser(command=command).parse_args(argv)
    if args.command == "train":  # which options were written, to tell what --resume would change
        marked = _parser(unset=sorted(set(vars(args)) - {"command"}), command="train").parse_args(argv)
        args.given = {k for k, v in vars(marked).items() if v is not UNSET} - {"command"}
    from pyrovae.errors import InputError
    from pyrovae.runs import RunInterrupted
    from pyrovae.store import RunError

    keep_freed_memory()
    rank = os.environ.get("RANK", "0")  # under torchrun: rank 0 alone reports what every rank meets alike
    try:
        {"train": _train, "evaluate": _evaluate, "sample": _sample, "plot": _plot}[args.command](args)
    except InputError as e:  # bad input, refused before anything is written
        return _fail(e, 2) if rank == "0" else 2
    except (RunError, OSError) as e:
        return _fail(e, 1) if rank == "0" else 1
    except RunInterrupted as e:
        return _fail(e, 128 + e.signum, "stopped") if rank == "0" else 128 + e.signum
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C
        return _fail("interrupted", 130, "stopped")
    except Exception as e:  # out of memory, or not bad input: a check is missing somewhere, or a bug
        if is_out_of_memory(e):
            return _fail(_memory_message(e, args), 1)
        if os.environ.get("PYROVAE_TRACEBACK"):
            raise
        where = "" if rank == "0" else f" on rank {rank}"
        return _fail(
            f"unexpected {one_line(e, 300)}{where}. This is a bug in pyrovae: please report it with the command line "
            "(PYROVAE_TRACEBACK=1 shows the traceback); the files of the run are intact",
            1,
        )
    return 0


def _memory_message(e: BaseException, args: argparse.Namespace) -> str:
    """One line for an allocation that failed: how much, what to make smaller, and what is kept."""
    text = str(e)
    if match := re.search(r"allocate (\d+) bytes", text):  # the CPU allocator's message
        wanted = f"could not allocate {int(match.group(1)) / 2**30:.3g} GiB"
    elif match := re.search(r"[Tt]ried to allocate ([\d.]+ \w+)", text):  # CUDA's
        wanted = f"could not allocate {match.group(1)}"
    else:
        wanted = one_line(e, 300)
    on_cpu = " (or --device cpu)" if "CUDA" in text else ""
    if args.command == "train":
        from pathlib import Path

        from pyrovae.checkpoint import CHECKPOINT

        out, smaller = Path(args.out), "a smaller --particles, --batch-size, --hidden or --latent-dim"
        if (out / CHECKPOINT).is_file():
            fix = (
                f"{out / CHECKPOINT} (the last completed epoch) is kept; continue it with pyrovae train --out {out} "
                f"--resume{' --device cpu' if on_cpu else ''}, or start a new run with {smaller}"
            )
        elif out.exists() and (out / "config.json").is_file():
            fix = f"no epoch was completed; start over with pyrovae train --out {out} --force and {smaller}{on_cpu}"
        else:
            fix = f"nothing was written; use {smaller}{on_cpu}"
    elif args.command == "evaluate":
        fix = f"use a smaller --chunk-size or --batch-size{on_cpu}; the run is unchanged"
    elif args.command == "sample":
        fix = f"use a smaller --n{on_cpu}; the run is unchanged"
    else:
        fix = f"the run is unchanged{'; try --device cpu' if on_cpu else ''}"
    return f"out of memory ({wanted}): {fix}"


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
    line = " ".join(str(message).split())  # one line, whatever the message
    print(f"pyrovae: {kind}: {line}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
