"""Objectives, bounds, evaluation and the SVI training loop."""

from pyrovae.inference.annealing import parse_schedule
from pyrovae.inference.bounds import iwae_bound, log_likelihood, log_mean_exp, renyi_bound
from pyrovae.inference.capacity import CapacityELBO
from pyrovae.inference.diagnostics import active_units, kl_per_dim, posterior_means
from pyrovae.inference.evaluation import evaluate_elbo
from pyrovae.inference.handlers import ParticleBroadcastError, with_scales
from pyrovae.inference.iwae import IWAE
from pyrovae.inference.log_weights import elbo_terms, log_weights
from pyrovae.inference.objectives import OBJECTIVES, AuxiliaryLoss, make_objective
from pyrovae.inference.renyi import RenyiBound
from pyrovae.inference.tc_elbo import TCELBO
from pyrovae.inference.trace_elbo import TraceELBO, TraceMeanFieldELBO
from pyrovae.inference.train_config import Diverged, TrainConfig
from pyrovae.inference.training import Trainer

__all__ = [
    "IWAE",
    "OBJECTIVES",
    "TCELBO",
    "AuxiliaryLoss",
    "CapacityELBO",
    "Diverged",
    "ParticleBroadcastError",
    "RenyiBound",
    "TraceELBO",
    "TraceMeanFieldELBO",
    "TrainConfig",
    "Trainer",
    "active_units",
    "elbo_terms",
    "evaluate_elbo",
    "iwae_bound",
    "kl_per_dim",
    "log_likelihood",
    "log_mean_exp",
    "log_weights",
    "make_objective",
    "parse_schedule",
    "posterior_means",
    "renyi_bound",
    "with_scales",
]
