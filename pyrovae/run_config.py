"""A run's configuration: ``config.json``, checked, and the model it builds.

:class:`RunConfig` holds every setting of a run (the model's spec table whole,
the command line's overrides, the training settings); its fields are checked for
type and range when it is made, so a wrong ``config.json`` is named by its key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pyrovae import spec
from pyrovae.checkpoint import CHECKPOINT, fits
from pyrovae.data import DATASETS
from pyrovae.errors import (
    FieldError,
    InputError,
    check_choice,
    check_sizes,
    check_type,
    one_line,
)
from pyrovae.inference.training import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run's model and continue its training.

    ``pyrovae train`` stores the model's spec table whole (the user's file, or the
    built-in family's as it was when the run started), so a ``config.json``
    rebuilds its model on its own even after ``models/specs`` change; with
    ``spec`` None (configurations written before this), ``model``'s current file is read.
    """

    dataset: str = "mnist-5k"  # a name in pyrovae.data.DATASETS
    data_dir: str | None = None  # where the data files are (unused by mnist-5k); absolute since pyrovae train stores it
    model: str = "vae"  # the built-in family, pyrovae.spec.BUILTIN, the spec came from (when not from --spec)
    spec: dict | None = None  # the model's TOML spec table as parsed, kept whole; None: the file of `model`
    # Overrides of the model's spec; None keeps the spec's value.
    latent_dim: tuple[int, ...] | None = None  # size of each latent, in the spec's order
    hidden: tuple[int, ...] | None = None  # hidden widths of every encoder; generative networks mirror them
    activation: str | None = None  # a name in pyrovae.nets.ACTIVATIONS
    likelihood: str | None = None  # a name in pyrovae.models.likelihoods.LIKELIHOODS
    obs_scale: float | None = None  # gaussian likelihood: the fixed pixel standard deviation
    min_obs_scale: float | None = None  # learned-gaussian likelihood: floor of the pixel standard deviation
    guide: str | None = None  # diag | full (the autoencoders' guide is a point mass)
    arch: str | None = None  # mlp | conv
    corruption: str | None = None  # dae: mask:P | gaussian:SIGMA
    device: str = "auto"  # as requested: auto (cuda when available) | cpu | cuda
    resolved_device: str | None = None  # the device the last training session ran on, e.g. cpu or cuda:0
    snapshot_epochs: tuple[int, ...] = ()  # epochs after which to save reconstructions_eN.png, samples_eN.png
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        """Every setting of the right type and in range (the model's, in full, when it is built), else a
        :class:`~pyrovae.errors.FieldError` naming it."""
        check_choice("dataset", self.dataset, DATASETS)
        check_type("model", self.model, str, "the name of a built-in model")
        if self.spec is None:
            check_choice("model", self.model, spec.BUILTIN)
        else:
            check_type("spec", self.spec, dict, "a spec table (the TOML of the model, as a JSON object)")
        for name in ("data_dir", "activation", "likelihood", "guide", "arch", "corruption", "resolved_device"):
            if getattr(self, name) is not None:
                check_type(name, getattr(self, name), str, "a string")
        for name in ("latent_dim", "hidden"):
            if getattr(self, name) is not None:
                check_sizes(name, getattr(self, name))
        for name in ("obs_scale", "min_obs_scale"):  # their range: pyrovae.validate.check_model, with the spec's
            if getattr(self, name) is not None:
                check_type(name, getattr(self, name), (int, float), "a number")
        check_type("device", self.device, str, "a device name: auto, cpu, cuda or cuda:N")
        check_sizes("snapshot_epochs", self.snapshot_epochs)
        check_type("train", self.train, TrainConfig, "the training settings (a TrainConfig)")

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
        d = dict(d)
        if isinstance(d.get("latent_dim"), int):  # configs written before hierarchical models
            d["latent_dim"] = (d["latent_dim"],)
        sizes = {k: tuple(d[k]) for k in ("latent_dim", "hidden", "snapshot_epochs") if isinstance(d.get(k), list)}
        _known_keys("", d, cls)
        train = d.get("train", {})
        if not isinstance(train, dict):
            raise FieldError("train", f"must be a JSON object of training settings, got {train!r}")
        _known_keys("train.", train, TrainConfig)
        try:
            train = TrainConfig(**train)
        except FieldError as e:
            raise FieldError(f"train.{e.field}", e.problem) from None
        return cls(**{**d, **sizes, "train": train})


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
    """The run's model: its spec (built-in or the user's) with the command line's overrides."""
    options = ("latent_dim", "hidden", "activation", "likelihood", "obs_scale", "min_obs_scale", "guide", "arch")
    base = spec.load(config.spec if config.spec is not None else config.model)
    return spec.with_options(base, corruption=config.corruption, **{k: getattr(config, k) for k in options})


def build_model(
    config: RunConfig, data_dim: int, image_shape: tuple[int, ...] | None = None
) -> tuple[nn.Module, nn.Module]:
    """The run's model and guide (:func:`pyrovae.spec.build`), on the CPU."""
    return spec.build(model_spec(config), data_dim=data_dim, image_shape=image_shape)


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
