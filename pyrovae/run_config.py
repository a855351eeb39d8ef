"""A run's configuration: ``config.json``, checked, and the model it builds.

:class:`RunConfig` holds every setting of a run (the resolved model's spec table
whole, or a hand-written model's file, and the training settings); its fields are
checked for type and range when it is made, so a wrong ``config.json`` is named by its key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pyrovae import spec
from pyrovae.arrays import is_data_file
from pyrovae.checkpoint import CHECKPOINT, fits
from pyrovae.data import DATASETS
from pyrovae.errors import (
    FieldError,
    InputError,
    check_choice,
    check_float,
    check_int,
    check_sizes,
    check_type,
    one_line,
)
from pyrovae.inference.objectives import objective_options
from pyrovae.inference.train_config import TrainConfig
from pyrovae.model_file import check_same, load_programs
from pyrovae.models.vqvae import VQ_MODELS, build_vq, check_vq_options

OVERRIDES = ("latent_dim", "hidden", "activation", "likelihood", "obs_scale", "min_obs_scale", "guide", "arch")
OVERRIDES += ("corruption", "discrete")  # the command line's model options (pyrovae.spec.with_options)


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run's model and continue its training.

    The model is stored whole and resolved: ``spec`` is the spec table with the command line's
    options applied (:func:`pyrovae.spec.to_table`), so a ``config.json`` rebuilds its model on
    its own even after ``models/specs`` change, and nothing is re-parsed from options. A run of
    a hand-written model stores the file's path, factory and digest instead, never its code
    (:mod:`pyrovae.model_file`). Older layouts (the raw table plus override fields) are
    converted by :meth:`from_dict`.
    """

    dataset: str = "mnist-5k"  # a name in pyrovae.data.DATASETS, or the absolute path of a data file
    test_fraction: float = 0.1  # a data file of one array: the rows kept for the test split (seeded)
    valid_fraction: float | None = None  # hold out this fraction of the training split for validation (seeded)
    label_column: str | None = None  # a table (.csv, .tsv): its column of class labels, a header name or an index
    data_dir: str | None = None  # where the data files are (unused by mnist-5k); absolute since pyrovae train stores it
    # sprites: how many images are drawn from the 737,280 of the product (seeded, fixed); "all": every one;
    # None: the data set's default (pyrovae.sprites.DEFAULT_SIZE)
    data_size: int | str | None = None
    # where the model came from: a built-in name (pyrovae.spec.BUILTIN), "spec", "file", or a VQ-VAE stage
    # (pyrovae.models.vqvae.VQ_MODELS: vqvae, vqvae-prior)
    model: str = "vae"
    spec: dict | None = None  # the resolved model's spec table (pyrovae.spec.to_table); None for a model file
    vq: dict | None = None  # a VQ-VAE's options (pyrovae.models.vqvae.VQ_OPTIONS), resolved; None for the others
    model_file: str | None = None  # --model-file: "ABSOLUTE/PATH.py:FACTORY"; its code runs only when given again
    model_digest: str | None = None  # blake2b of that file's bytes at training time: another file is refused
    binarize: bool = True  # model files: binarize the images per pass (a spec's likelihood decides for itself)
    device: str = "auto"  # as requested: auto (cuda when available) | cpu | cuda
    resolved_device: str | None = None  # the device the last training session ran on, e.g. cpu or cuda:0
    snapshot_epochs: tuple[int, ...] = ()  # epochs after which to save reconstructions_eN.png, samples_eN.png
    # A partially observed latent (m2's y): how many training labels to keep (balanced, seeded by train.seed;
    # None: all), and the weight per labelled datapoint of the classifier term -log q(y | x) (None: Kingma
    # et al.'s alpha = 0.1 N / N_labelled).
    labelled: int | None = None
    classifier_weight: float | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        """Every setting of the right type and in range (the model's, in full, when it is built), else a
        :class:`~pyrovae.errors.FieldError` naming it."""
        if not (isinstance(self.dataset, str) and is_data_file(self.dataset)):
            check_choice("dataset", self.dataset, DATASETS)
        if self.data_size is not None and self.data_size != "all":
            check_int("data_size", self.data_size)
        for name in ("test_fraction", "valid_fraction"):
            value = getattr(self, name)
            if value is None and name == "valid_fraction":  # none held out
                continue
            check_float(name, value, positive=True)
            if not value < 1:
                raise FieldError(name, f"must be below 1, got {value}")
        check_choice("model", self.model, (*spec.BUILTIN, *VQ_MODELS, "spec", "file"))
        if self.model in VQ_MODELS:
            check_vq_options(self.model, self.vq)
            if self.spec is not None or self.model_file is not None:
                raise FieldError("spec", f"is set, but a {self.model} is built from its vq options alone")
        elif self.vq is not None:
            raise FieldError("vq", f"holds VQ-VAE options, but model is {self.model!r}")
        elif self.model == "file":
            check_type("model_file", self.model_file, str, "FILE.py:FACTORY, the hand-written model's file")
            check_type("model_digest", self.model_digest, str, "the model file's digest")
        else:
            check_type("spec", self.spec, dict, "a spec table (the TOML of the model, as a JSON object)")
            if self.model_file is not None:
                raise FieldError("model_file", f"is set, but model is {self.model!r}; set model to 'file'")
        if not isinstance(self.binarize, bool):
            raise FieldError("binarize", f"must be true or false, got {self.binarize!r}")
        for name in ("data_dir", "resolved_device", "label_column"):
            if getattr(self, name) is not None:
                check_type(name, getattr(self, name), str, "a string")
        check_type("device", self.device, str, "a device name: auto, cpu, cuda or cuda:N")
        check_sizes("snapshot_epochs", self.snapshot_epochs)
        if self.labelled is not None:
            check_int("labelled", self.labelled)
        if self.classifier_weight is not None:
            check_float("classifier_weight", self.classifier_weight)
        check_type("train", self.train, TrainConfig, "the training settings (a TrainConfig)")

    @property
    def has_spec(self) -> bool:
        """Whether the model is a spec's (a built-in family or ``--spec``), not a model file or a VQ-VAE."""
        return self.model not in ("file", *VQ_MODELS)

    def to_json(self) -> str:
        """The config as ``config.json`` holds it."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config of a parsed ``config.json``, older layouts included.

        :raises FieldError: naming the key (``train.seed`` for a training setting) that is unknown,
            of the wrong type or out of range.
        """
        if not isinstance(d, dict):
            raise FieldError("the configuration", f"must be a JSON object of settings, got {type(d).__name__}")
        d = _resolved(dict(d))
        sizes = {k: tuple(d[k]) for k in ("snapshot_epochs",) if isinstance(d.get(k), list)}
        _known_keys("", d, cls)
        train = d.get("train", {})
        if not isinstance(train, dict):
            raise FieldError("train", f"must be a JSON object of training settings, got {train!r}")
        train = _objective_options(train)
        _known_keys("train.", train, TrainConfig)
        try:
            train = TrainConfig(**train)
        except FieldError as e:
            raise FieldError(f"train.{e.field}", e.problem) from None
        return cls(**{**d, **sizes, "train": train})


# The objective options' command-line names (and their keys in train settings before objective_options).
FLAT_OPTIONS = {"particles": "num_particles", "iwae_gradient": "gradient", "alpha": "alpha"}
# Every objective option's command-line name (those of the newer objectives were never flat train settings).
OBJECTIVE_FLAGS = FLAT_OPTIONS | {name: name for name in ("tc_weight", "gamma", "capacity", "capacity_steps")}


def _objective_options(train: dict) -> dict:
    """Training settings of the layout before objective options (``particles``, ``iwae_gradient``, ``alpha``
    beside ``objective``) in this one: the options that the run's objective takes, in ``objective_options``."""
    if not set(FLAT_OPTIONS) & set(train):
        return train
    train = dict(train)
    flat = {FLAT_OPTIONS[k]: train.pop(k) for k in list(train) if k in FLAT_OPTIONS}
    try:
        takes = objective_options(train.get("objective", TrainConfig.objective))
    except FieldError as e:
        raise FieldError(f"train.{e.field}", e.problem) from None
    return {**train, "objective_options": {k: v for k, v in flat.items() if k in takes}}


def _resolved(d: dict) -> dict:
    """A configuration of the layout before the resolved spec (the spec table, or none for a built-in model,
    plus the command line's overrides) in this one: the spec with the overrides applied, whole."""
    overrides = {k: d.pop(k) for k in OVERRIDES if k in d}
    if d.get("model") in ("file", *VQ_MODELS) or (d.get("spec") is not None and not overrides):
        return d
    if isinstance(overrides.get("latent_dim"), int):  # configs written before hierarchical models
        overrides["latent_dim"] = (overrides["latent_dim"],)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items() if v is not None}
    check_overrides(overrides)
    base = d.get("spec")
    if base is None:
        check_choice("model", d.get("model", "vae"), spec.BUILTIN)
    try:
        resolved = spec.with_options(spec.load(base if base is not None else d.get("model", "vae")), **overrides)
    except (InputError, TypeError, ValueError) as e:
        raise FieldError("spec", f"does not resolve with the run's options ({one_line(e)})") from None
    return {**d, "spec": spec.to_table(resolved)}


def check_overrides(overrides: dict) -> None:
    """The command line's model options (:data:`OVERRIDES`) of the right types, else a :class:`FieldError`
    naming the option; their ranges and fit are the spec's to check (:func:`pyrovae.spec.with_options`)."""
    for name, value in overrides.items():
        if name in ("latent_dim", "hidden"):
            check_sizes(name, value)
        elif name in ("obs_scale", "min_obs_scale"):
            check_type(name, value, (int, float), "a number")
        else:
            check_type(name, value, str, "a string")


def _known_keys(prefix: str, d: dict, cls: type) -> None:
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise FieldError(f"{prefix}{unknown[0]}", "is not a setting of pyrovae (an unknown key); remove it")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; other names are torch's."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """``device`` with its index: ``cpu``, ``cuda:0``."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def model_spec(config: RunConfig) -> spec.ModelSpec:
    """The run's model, resolved (its spec with the command line's options, as stored).

    :raises InputError: for a run of a hand-written model, which has no spec.
    """
    if config.model in VQ_MODELS:
        raise InputError(f"this run's model is a {config.model}, built from its VQ options, which has no spec")
    if config.spec is None:
        raise InputError(f"this run's model is the hand-written {config.model_file}, which has no spec")
    return spec.load(config.spec)


def build_model(
    config: RunConfig,
    data_dim: int,
    image_shape: tuple[int, ...] | None = None,
    *,
    model_file: str | None = None,
    run_dir: Path | None = None,
) -> tuple[nn.Module, nn.Module]:
    """The run's model and guide on the CPU: :func:`pyrovae.spec.build`, or a hand-written model's
    factory when ``model_file`` (``FILE.py:FACTORY``, given by the user) is the run's.

    :raises InputError: a run of a model file without ``model_file``, or another file than the run's.
    """
    if config.model in VQ_MODELS:
        if model_file is not None:
            raise InputError(f"--model-file: {run_dir or 'this run'} is a {config.model}, not a model file's")
        return build_vq(config.model, config.vq, image_shape or (1, data_dim))
    if config.model != "file":
        if model_file is not None:
            raise InputError(f"--model-file: {run_dir or 'this run'} was built from a spec, not from a model file")
        return spec.build(model_spec(config), data_dim=data_dim, image_shape=image_shape)
    path, factory = check_same(model_file, config.model_file, config.model_digest, run_dir or Path("this run"))
    return load_programs(path, factory, data_dim=data_dim, image_shape=tuple(image_shape or (data_dim,)))


def read_config(run_dir: Path, state: dict | None) -> tuple[RunConfig, str | None]:
    """The run's configuration from ``config.json``, or, when that is missing or not JSON, from the copy in its
    checkpoint ``state`` (``train`` rewrites ``config.json``); with the problem that made it use the copy.

    :raises InputError: a ``config.json`` whose settings are wrong (named as its keys), or neither file usable.
    """
    path = run_dir / "config.json"
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # missing, unreadable, not UTF-8 or not JSON
        problem = f"{path}: not found" if isinstance(e, FileNotFoundError) else f"{path}: damaged ({one_line(e)})"
        if state is None:
            raise InputError(
                f"{problem}, and there is no {CHECKPOINT} to rebuild it from, so {run_dir} cannot be resumed; "
                f"start it over with pyrovae train --out {run_dir} --force"
            ) from None
        with fits(run_dir / CHECKPOINT):
            config = RunConfig.from_dict(state["config"])
        return config, f"{problem}; using the copy of the settings in {run_dir / CHECKPOINT}"
    try:
        return RunConfig.from_dict(d), None
    except FieldError as e:
        rebuild = f", or delete it to have it rebuilt from {CHECKPOINT}" if state is not None else ""
        raise e.renamed(f"{path}: {e.field}", f"; correct it in config.json{rebuild}") from None
