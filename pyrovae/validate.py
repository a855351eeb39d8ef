"""Checks of every command's input, run before anything is loaded, created or written.

One function per command (:func:`check_train`, :func:`check_evaluate`,
:func:`check_sample`, :func:`check_plot`) takes the parsed arguments and raises :class:`UsageError`
with one line naming the problem and the fix; ``pyrovae.cli.main`` prints it and
exits with status 2. A new option gets its check here, in its command's function
(or in :func:`check_config` when it is stored in ``config.json``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from pyrovae import model_file, spec
from pyrovae.arrays import is_data_file
from pyrovae.checkpoint import CHECKPOINT, load_checkpoint
from pyrovae.data import FACTORED, LABELLED, require_data_dir
from pyrovae.errors import FieldError, InputError, check_float, check_int
from pyrovae.inference.objectives import OBJECTIVES, check_options, objective_options
from pyrovae.inference.train_config import TrainConfig
from pyrovae.models.vqvae import VQ_FIGURES, VQ_MODELS, check_vq_options
from pyrovae.run_config import OBJECTIVE_FLAGS, OVERRIDES, RunConfig, check_overrides, model_spec, read_config
from pyrovae.store import check_is_run_dir

MODEL = ("model", "spec", "model_file", "model_digest")  # RunConfig's model fields, set by _model
RESUMABLE = ("epochs", "lr", "clip_norm", "compile", "device", "no_progress")  # train options --resume may change
# A pixel standard deviation whose square (the variance) is a normal float32 number: below, the Gaussian
# log-density underflows to a zero variance or overflows to infinity; 1e-50 is 0 in float32.
SCALE_RANGE = (math.sqrt(torch.finfo(torch.float32).tiny), math.sqrt(torch.finfo(torch.float32).max))
CLASSES = 10  # the classes of every labelled data set (digits, or the ten kinds of clothing)


CURVES_LABEL = "--kind curves draws the training curves, which no label conditions; drop --label"


class UsageError(InputError):
    """The user's input cannot work; the message names the problem and the fix."""


def check_label(inputs: Mapping[str, int] | Sequence[tuple[str, int]], label: int | None) -> None:
    """``--label``: a class of the model's label input (``inputs``: its name and number of classes), if given."""
    if label is None:
        return
    inputs = dict(inputs)
    if not inputs:
        raise UsageError(
            f"--label {label}: this model has no label input (a label-conditioned model such as --model cvae has one)"
        )
    ((name, classes),) = inputs.items()
    if not 0 <= label < classes:
        raise UsageError(f"--label must be a class of {name} in 0..{classes - 1}, got {label}")


def check_train(args: argparse.Namespace, *, given: set[str]) -> RunConfig:
    """The :class:`RunConfig` that ``pyrovae train`` will run, checked.

    :param args: the parsed ``train`` arguments.
    :param given: the names of the options written on the command line (the rest are defaults).
    """
    out = Path(args.out)
    if args.resume and args.force:
        raise UsageError("--resume and --force contradict each other: continue the run, or start it over")
    if args.resume:
        return _check_resume(args, given)
    _check_new_out(out, force=args.force)
    options = vars(args) | {"epochs": TrainConfig.epochs if args.epochs is None else args.epochs}
    if options.get("data_dir") is not None:  # config.json works from any directory
        options["data_dir"] = _absolute(options["data_dir"])
    if is_data_file(options["dataset"]):
        options["dataset"] = _absolute(options["dataset"])
    if options.get("model") == "vqvae-prior" and options.get("first_stage") is not None:
        options |= _first_stage_data(Path(options["first_stage"]), given)
    with _as_options():
        config = RunConfig(
            **{f.name: options[f.name] for f in fields(RunConfig) if f.name in options and f.name not in MODEL},
            **_model(options, given),
            train=TrainConfig(
                **{f.name: options[f.name] for f in fields(TrainConfig) if f.name in options},
                objective_options=_objective_flags(args, given),
            ),
        )
    check_config(config)
    return config


def _objective_flags(args: argparse.Namespace, given: set[str]) -> dict:
    """The objective options given on the command line (``--particles``, ...) by their names; one that the
    objective does not take is refused, naming the objectives that do."""
    options = {OBJECTIVE_FLAGS[k]: getattr(args, k) for k in sorted(given & set(OBJECTIVE_FLAGS))}
    takes = objective_options(args.objective)
    for flag, name in OBJECTIVE_FLAGS.items():
        if name in options and name not in takes:
            users = [o for o in OBJECTIVES if name in objective_options(o)]
            raise UsageError(
                f"--{flag.replace('_', '-')} is an option of --objective {' and '.join(users)}, not of "
                f"{args.objective}; drop it, or choose one of those objectives"
            )
    return options


def _model(options: dict, given: set[str]) -> dict:
    """The model fields of a new run's :class:`RunConfig`: the resolved spec (of ``--model`` or ``--spec``
    with the model options given), or the ``--model-file`` with its digest."""
    sources = [name for name in ("model", "spec", "model_file") if name in given]
    if len(sources) > 1:
        raise UsageError(f"give one of --model, --spec and --model-file, not {' and '.join(sources)}")
    overrides = {k: options[k] for k in OVERRIDES if k in options}
    if "model_file" in given:
        if overrides:
            raise UsageError(
                f"--{next(iter(overrides)).replace('_', '-')}: the model options apply to spec models; a model "
                "file's factory sets its own sizes and families"
            )
        path, factory = model_file.parse_ref(options["model_file"])
        return {"model": "file", "model_file": f"{path}:{factory}", "model_digest": model_file.digest(path)}
    if "binarize" in given:
        raise UsageError("--no-binarize applies to --model-file runs; a spec's likelihood decides for itself")
    if options.get("model") in VQ_MODELS:
        return _vq_model(options, given, overrides)
    vq_given = sorted(given & set(VQ_FLAGS))
    if vq_given:
        raise UsageError(f"--{vq_given[0].replace('_', '-')} is an option of --model vqvae and vqvae-prior")
    base = spec.load(options["spec"] if "spec" in options else options.get("model", "vae"))
    # The model is stored resolved and whole, so that the run rebuilds it on its own even if models/specs change.
    with _as_options():
        check_overrides(overrides)
    resolved = spec.with_options(base, **overrides)
    _check_scales(resolved)
    return {"model": "spec" if "spec" in options else options.get("model", "vae"), "spec": spec.to_table(resolved)}


# The VQ-VAE's command-line options, by their names in RunConfig.vq.
VQ_FLAGS = ("codebook_size", "code_dim", "commitment", "codebook_update", "ema_decay", "restart_after", "prior_layers")
VQ_FLAGS += ("first_stage",)  # --from RUN


def _vq_value(flag: str, value: object) -> object:
    """A VQ option as stored: ``--from RUN`` as RUN's absolute path."""
    return _absolute(value) if flag == "first_stage" and value is not None else value


def _vq_model(options: dict, given: set[str], overrides: dict) -> dict:
    """The model fields of a new VQ-VAE run: ``vqvae``, or ``vqvae-prior --from RUN`` with RUN's codebook options."""
    if overrides:
        raise UsageError(
            f"--{next(iter(overrides)).replace('_', '-')}: the model options apply to spec models; a VQ-VAE takes "
            "--codebook-size, --code-dim, --commitment, --codebook-update, --ema-decay and --restart-after"
        )
    name = options["model"]
    vq = {k: _vq_value(k, options[k]) for k in sorted(given & set(VQ_FLAGS))}
    if name == "vqvae-prior":
        vq = _first_stage_options(vq)
    elif "first_stage" in vq or "prior_layers" in vq:
        raise UsageError("--from and --prior-layers are options of --model vqvae-prior (the second stage)")
    with _as_options():
        return {"model": name, "spec": None, "vq": check_vq_options(name, vq)}


def _first_stage_options(vq: dict) -> dict:
    """``vqvae-prior``'s options: those of the ``vqvae`` run named by ``--from`` (its codebook and networks), with
    the prior's own."""
    if vq.get("first_stage") is None:
        raise UsageError("--model vqvae-prior learns a prior over the codes of a trained VQ-VAE: give --from RUN, "
                         "the directory of a pyrovae train --model vqvae run")  # fmt: skip
    first = Path(vq["first_stage"])
    fixed = sorted(set(vq) - {"first_stage", "prior_layers"})
    if fixed:
        raise UsageError(f"--{fixed[0].replace('_', '-')}: a vqvae-prior takes its codebook from --from {first}")
    config, _ = _run_config_and_model(first)
    if config is None or config.model != "vqvae":
        raise UsageError(f"--from {first}: not the directory of a trained pyrovae train --model vqvae run")
    return {**config.vq, **vq}


DATA_FIELDS = ("dataset", "data_dir", "test_fraction", "valid_fraction", "label_column")


def _first_stage_data(first: Path, given: set[str]) -> dict:
    """A ``vqvae-prior``'s data options not given: those of its first stage, whose codes it models."""
    config, _ = _run_config_and_model(first)
    if config is None:  # refused, naming the problem, with the model options
        return {}
    return {name: getattr(config, name) for name in DATA_FIELDS if name not in given}


def _check_resume(args: argparse.Namespace, given: set[str]) -> RunConfig:
    """``--resume``: the stored configuration with what may change (``RESUMABLE``, a moved ``--data-dir``) changed;
    other options only when they repeat the stored values."""
    out = Path(args.out)
    config, done = _resume_config(out)
    changed = sorted(
        k for k in given - {*RESUMABLE, "out", "resume", "data_dir"} if not _repeats(k, args, config, given)
    )
    if changed:
        names = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise UsageError(
            f"{names}: --resume continues with the settings in {out / 'config.json'}; only --epochs, --lr, "
            "--clip-norm, --[no-]compile, --device and a moved --data-dir may change (start a new run with another "
            "--out to change the rest)"
        )
    new = {k: getattr(args, k) for k in given & {f.name for f in fields(TrainConfig)}}
    moved = {"data_dir": _absolute(args.data_dir)} if "data_dir" in given and args.data_dir is not None else {}
    with _as_options():
        config = replace(
            config,
            train=replace(config.train, **new),
            device=args.device if "device" in given else config.device,
            **moved,
        )
    check_config(config)
    if "epochs" in given and config.train.epochs <= done:
        raise UsageError(
            f"{out} already has {done} epochs; pass --epochs N with N > {done} to train on "
            f"(or pyrovae evaluate {out} to evaluate it)"
        )
    return config


def _repeats(name: str, args: argparse.Namespace, config: RunConfig, given: set[str]) -> bool:
    """Whether option ``name`` as given on the command line is the run's stored setting; the model's
    options repeat it when, with the model (``--model``, ``--spec``, or the run's), they resolve to the run's."""
    value = getattr(args, name)
    if name in {f.name for f in fields(TrainConfig)}:
        return getattr(config.train, name) == value
    if name in OBJECTIVE_FLAGS:
        option = OBJECTIVE_FLAGS[name]
        return check_options(config.train.objective, config.train.objective_options).get(option) == value
    if name == "model_file":
        return config.model == "file"  # checked against the run's file and digest when the model is built
    if name in VQ_FLAGS:
        return config.vq is not None and config.vq.get(name) == _vq_value(name, value)
    if name == "model" and config.model in VQ_MODELS:
        return value == config.model
    if name in ("model", "spec", *OVERRIDES):
        if not config.has_spec:
            return False
        try:
            base = args.spec if "spec" in given else args.model if "model" in given else config.spec
            overrides = {k: getattr(args, k) for k in OVERRIDES if k in given}
            return spec.with_options(spec.load(base), **overrides) == model_spec(config)
        except (ValueError, TypeError):
            return False
    if name == "binarize":
        return config.binarize == value
    return getattr(config, name, None) == value


def _absolute(path: str) -> str:
    """``path`` absolute, so that ``config.json`` works from any directory."""
    return str(Path(path).expanduser().resolve())


@contextmanager
def _as_options() -> Iterator[None]:
    """A :class:`FieldError` of a configuration built from the command line, named as its option."""
    try:
        yield
    except FieldError as e:
        name = e.field.removeprefix("train.").removeprefix("vq.")
        flags = {f"objective_options.{option}": flag for flag, option in OBJECTIVE_FLAGS.items()}
        raise e.renamed("--" + flags.get(name, name).replace("_", "-")) from None


def check_config(config: RunConfig) -> None:
    """What the configuration's own checks cannot know: the data directory, the device, the model's fit."""
    check_device(config.device)
    generated = config.dataset in ("mnist-5k", "sprites")  # need no files (sprites reads dSprites' where given)
    if not is_data_file(config.dataset) and (not generated or config.data_dir is not None):
        require_data_dir(config.dataset, config.data_dir)
    if config.data_size is not None and config.dataset != "sprites":
        raise UsageError(f"--data-size applies to --dataset sprites, not {config.dataset}; drop it")
    check_model(config)


def check_model(config: RunConfig) -> None:
    """The model's spec with the command line's overrides, and its fit with the objective and the data
    (a hand-written model's fit shows when it is built)."""
    if not config.has_spec:
        return
    model = model_spec(config)  # a SpecError names the field
    _check_scales(model)
    _check_objective(config, model)


def _check_scales(model: spec.ModelSpec) -> None:
    """The likelihood's pixel standard deviations: their squares float32 numbers other than 0 and infinity."""
    low, high = SCALE_RANGE
    for option, value in (
        ("--obs-scale", model.likelihood.obs_scale),
        ("--min-obs-scale", model.likelihood.min_obs_scale),
    ):
        if not low <= value <= high:
            key = option[2:].replace("-", "_")
            raise UsageError(
                f"{option} (or the spec's {key}) is {value:g}; a pixel standard deviation must be in "
                f"{low:.2g} .. {high:.2g}, so that its square, the variance, is a float32 number other than 0 "
                f"and infinity; e.g. {option} 0.1"
            )


def _may_have_labels(dataset: str) -> bool:
    """A labelled data set, or a data file, whose labels (if any) are known only once it is read."""
    return dataset in LABELLED or is_data_file(dataset)


def _check_objective(config: RunConfig, model: spec.ModelSpec) -> None:
    """The objective's needs (analytic KL, a mean-field or reparameterized guide) and the data's labels."""
    partial = [z for z in model.latents if z.partial]
    for option in ("labelled", "classifier_weight"):
        if getattr(config, option) is not None and not partial:
            raise UsageError(
                f"--{option.replace('_', '-')} applies to a model with a partially observed latent (--model m2)"
            )
    if partial and not _may_have_labels(config.dataset):
        raise UsageError(
            f"latent {partial[0].name!r} is observed where its label is known, and {config.dataset} has no labels; "
            f"use a labelled data set: {', '.join(LABELLED)}"
        )
    score = [z.name for z in model.latents if z.estimator == "score"]
    options = config.train.objective_options
    vimco = config.train.objective == "iwae" and options.get("gradient", "standard") == "standard"
    if score and not (config.train.objective == "elbo" or vimco):
        raise UsageError(
            f"--objective {config.train.objective} needs a reparameterized guide, and latent {score[0]!r} trains by "
            "the score function (--discrete score); use --objective elbo (NVIL's baseline), --objective iwae "
            "(VIMCO), or --discrete enumerate or relaxed"
        )
    if score and vimco and options.get("num_particles", 1) < 2:
        raise UsageError(
            f"--objective iwae trains the score-function latent {score[0]!r} by VIMCO, whose baselines are the other "
            "particles: give --particles 2 or more"
        )
    discrete = [z.name for z in model.latents if model.guide_family(z).capabilities.enumerable]
    if config.train.objective == "mf-elbo" and discrete:
        raise UsageError(
            f"--objective mf-elbo would sample the discrete latent {discrete[0]!r} (Pyro's TraceMeanField_ELBO does "
            "not enumerate); use --objective elbo, which sums it exactly, or iwae"
        )
    if config.train.objective == "mf-elbo" and not model.mean_field:
        raise UsageError(
            "--objective mf-elbo takes each latent's KL analytically, which is exact only for a mean-field "
            "guide; this guide's q of one latent reads another (a hierarchical VAE): use --objective elbo or iwae"
        )
    if config.train.objective == "mf-elbo" and not model.deterministic and (names := model.without_analytic_kl()):
        z = next(z for z in model.latents if z.name == names[0])
        raise UsageError(
            f"--objective mf-elbo takes each latent's KL(q || p) in closed form, and latent {z.name!r} has none "
            f"(a {model.guide_family(z).name} guide against a {model.prior_family(z).name} prior): use --objective "
            "elbo or iwae"
        )
    if config.train.objective in ("tc-elbo", "capacity"):
        check_spread_objective(config.train.objective, model)
    if config.train.objective_options.get("gradient") == "dreg":
        stochastic = [z for z in model.latents if not model.guide_family(z).capabilities.reparameterized]
        if stochastic:
            raise UsageError(
                f"--iwae-gradient dreg needs a reparameterized guide; latent {stochastic[0].name!r}'s is not: "
                "use --iwae-gradient standard"
            )
    if model.labels and not _may_have_labels(config.dataset):
        raise UsageError(
            f"this model conditions on a label, and {config.dataset} has none; use a labelled data set: "
            f"{', '.join(LABELLED)}"
        )


def check_spread_objective(objective: str, model: spec.ModelSpec) -> None:
    """tc-elbo and capacity work on a reparameterized posterior's spread: refuse point masses, discrete and
    score-function latents, and for tc-elbo more than one latent or one whose guide does not factorize."""
    what = "the total correlation of q(z)" if objective == "tc-elbo" else "the KL of q(z | x) held at a target"
    if model.deterministic:
        raise UsageError(
            f"--objective {objective} works on {what}, and this model's code is a point mass (an autoencoder); "
            "use --objective elbo"
        )
    for z in model.latents:
        capabilities = model.guide_family(z).capabilities
        if capabilities.enumerable or not capabilities.reparameterized:
            raise UsageError(
                f"--objective {objective} needs reparameterized continuous latents, and {z.name!r} is not; use "
                "--objective elbo"
            )
    if objective == "tc-elbo" and len(model.latents) != 1:
        raise UsageError(
            f"--objective tc-elbo estimates the total correlation of one latent, and this model has "
            f"{len(model.latents)}; use --objective elbo or a model with one latent"
        )
    if objective == "tc-elbo" and not model.guide_family(model.latents[0]).capabilities.factorized:
        raise UsageError(
            f"--objective tc-elbo needs a guide that factorizes over the dimensions of z, and "
            f"{model.guide_family(model.latents[0]).name} does not; use --guide diag"
        )


def check_evaluate(args: argparse.Namespace) -> None:
    """``pyrovae evaluate``: the run directory, the device and the sizes."""
    check_run_dir(args.run_dir)
    check_device(args.device)
    _positive_int(batch_size=args.batch_size)
    if args.chunk_size is not None:
        _positive_int(chunk_size=args.chunk_size)
    if args.limit is not None:
        _positive_int(limit=args.limit)
    if args.disentanglement:
        config, _ = _run_config_and_model(Path(args.run_dir))
        if config is not None and config.dataset not in FACTORED:
            raise UsageError(
                f"--disentanglement compares the codes with a data set's factors, and {args.run_dir} was trained on "
                f"{config.dataset}, which has none; it applies to runs on --dataset {' or '.join(FACTORED)}"
            )


def check_sample(args: argparse.Namespace) -> None:
    """``pyrovae sample``: the run directory, the device, ``--n``, ``--label`` and the figure's path."""
    check_run_dir(args.run_dir)
    check_device(args.device)
    _positive_int(n=args.n)
    _check_png_out(args.out)
    _, model = _run_config_and_model(Path(args.run_dir))
    if model is not None:
        check_label(model.inputs or model.discrete[:1], args.label)  # a label input, or a categorical latent


def check_plot(args: argparse.Namespace) -> None:
    """``pyrovae plot``: the run directory, the device, ``--temperature``, ``--label`` and the figure's path."""
    check_run_dir(args.run_dir)
    check_device(args.device)
    _positive_float(temperature=args.temperature)
    _check_png_out(args.out)
    for triple in args.classes or ():
        if not all(0 <= c < CLASSES for c in triple):
            raise UsageError(f"--classes {','.join(map(str, triple))}: classes are 0..{CLASSES - 1}")
    if args.kind == "curves" and args.label is not None:
        raise UsageError(CURVES_LABEL)
    if args.kind != "curves":
        _check_plottable(Path(args.run_dir), args.kind, args.site, args.label)


def _run_config_and_model(run_dir: Path) -> tuple[RunConfig | None, spec.ModelSpec | None]:
    """The configuration and model of the run in ``run_dir`` (``config.json``, else its checkpoint's copy);
    ``(None, None)`` when neither can be read (loading the run then reports the missing or damaged file)."""
    try:
        try:
            config, _ = read_config(run_dir, None)
        except InputError:  # config.json missing or damaged: the checkpoint's copy (read only then)
            config, _ = read_config(run_dir, load_checkpoint(run_dir / CHECKPOINT))
        return config, model_spec(config) if config.has_spec else None
    except ValueError:
        return None, None


ANY_SITE = ("reconstructions",)  # figure kinds that draw no one latent: a model with several needs no --site


def _check_plottable(run_dir: Path, kind: str, site: str | None = None, label: int | None = None) -> None:
    """The figures other than ``curves`` read one latent layer (``site``, or the only one), decoded with class
    ``label`` of the model's label input where given; some need more of the latent."""
    config, model = _run_config_and_model(run_dir)
    if config is not None and config.model in VQ_MODELS and kind not in VQ_FIGURES:
        raise UsageError(
            f"--kind {kind}: a VQ-VAE's code is a grid of codebook entries, with no continuous latent to traverse "
            f"or interpolate; its figures are {', '.join(VQ_FIGURES)}"
        )
    if model is None:
        return
    check_label(model.inputs, label)
    names = [z.name for z in model.latents]
    if site is None and len(names) > 1 and kind not in ANY_SITE:
        raise UsageError(f"--kind {kind}: this model has the latents {', '.join(names)}; choose one with --site")
    if site is not None and site not in names:
        raise UsageError(f"--site {site}: no such latent; this model has {', '.join(names)}")
    z = next(z for z in model.latents if z.name == (site or names[0]))
    if kind == "arithmetic" and not _may_have_labels(config.dataset):
        raise UsageError(
            f"--kind arithmetic averages the codes of each class, and this run's data set {config.dataset} has no "
            f"labels; use a run trained on a labelled data set ({', '.join(LABELLED)})"
        )
    if kind == "manifold" and z.size != 2:
        raise UsageError(f"--kind manifold needs a 2-D latent, {z.name} has D = {z.size}; train with --latent-dim 2")
    latent_parents = [p for p in z.prior.given if p not in dict(model.inputs)]  # a label is fixed per panel
    if kind == "manifold" and latent_parents:
        raise UsageError(
            f"--kind manifold spans the quantiles of a prior without latent parents, and {z.name}'s reads "
            f"{', '.join(latent_parents)}; choose another --site"
        )
    if kind in ("traverse", "kl-per-dim") and not model.kl_per_dim(z):
        if model.deterministic:
            what = "a point-mass (autoencoder) guide"
        else:
            what = f"a {model.guide_family(z).name} guide and a {model.prior_family(z).name} prior"
        raise UsageError(
            f"--kind {kind} needs the KL of each latent dimension, which needs a guide and a prior that factorize "
            f"over the dimensions, and {z.name} has {what}; use --kind latent-map, interpolate or samples"
        )


def _check_png_out(out: str | None) -> None:
    if out is not None:
        out = Path(out)
        if out.is_dir():
            raise UsageError(f"--out {out} is a directory; give a file name, e.g. --out {out / 'figure.png'}")
        if out.suffix.lower() != ".png":
            raise UsageError(f"--out {out}: figures are PNG files; give a name ending in .png")
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: no directory {out.parent}; create it first")


def check_device(name: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, and CUDA present when asked for."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise UsageError(f"unknown device {name!r}; choose from auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise UsageError(
            f"--device {name}: CUDA is not available here (torch {torch.__version__}, {build}); "
            "use --device cpu or auto"
        )
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_run_dir(run_dir: str | Path) -> None:
    """A run directory made by ``pyrovae train``; the checkpoint itself is checked when it is loaded."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UsageError(f"{path}: no such run directory (make one with pyrovae train --out {path})")


def _check_new_out(out: Path, *, force: bool) -> None:
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; pass --resume to continue it or --force to start over")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a run directory")
    ancestor = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not ancestor.is_dir():
        raise UsageError(f"--out {out}: {ancestor} is a file, so the run directory cannot be made")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot write in {ancestor}; choose a directory you can write to")
    if force:
        check_is_run_dir(out)


def _resume_config(out: Path) -> tuple[RunConfig, int]:
    """The configuration of the run in ``out``, checked against its checkpoint when there is one, and the
    number of epochs the checkpoint holds."""
    if not out.is_dir():
        raise UsageError(f"{out}: no such run directory; start a new run without --resume")
    state = load_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).exists() else None
    config, problem = read_config(out, state)
    if problem:
        print(f"pyrovae: warning: {problem}", file=sys.stderr, flush=True)
    if state is None:
        return config, 0
    try:  # in this layout, whatever the layout of the version that wrote it
        saved = asdict(RunConfig.from_dict(state.get("config")))
    except FieldError:
        saved = None
    if saved is None or _settings(saved) != _settings(asdict(config)):
        raise UsageError(
            f"{out / CHECKPOINT}: written with other settings than {out / 'config.json'}; restore the original "
            "config.json (or delete it: it is rebuilt from the checkpoint), or start over with --force"
        )
    try:
        done = len(state["trainer"]["history"])
    except (KeyError, TypeError):
        raise UsageError(
            f"{out / CHECKPOINT}: no training history in it; restore it from a copy, or start over with --force"
        ) from None
    return config, done


def _settings(config: dict) -> dict:
    """A configuration without what ``--resume`` may change (and the device the last session used); the data
    directory too, which may have moved (the checkpoint's data fingerprint tells whether its contents did)."""
    train = config.get("train", {})
    config = {k: v for k, v in config.items() if k not in ("resolved_device", "data_dir")}
    return {**config, "device": None, "train": {k: None if k in RESUMABLE else v for k, v in train.items()}}


def _positive_int(**values: int) -> None:
    for name, value in values.items():
        with _as_options():
            check_int(name, value)


def _positive_float(**values: float) -> None:
    for name, value in values.items():
        with _as_options():
            check_float(name, value, positive=True)
