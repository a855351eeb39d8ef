"""Clustering accuracy of a discrete latent: how well q(y | x) recovers the classes of labelled data.

A mixture model's component y has no given meaning; its clusters are matched one to one with
the classes so that the most datapoints agree (the Hungarian algorithm on the contingency
table), and the accuracy is the fraction that then agree. With more clusters than classes the
unmatched clusters count as errors.

References: H. W. Kuhn, "The Hungarian Method for the Assignment Problem", Naval Research Logistics
Quarterly 1955; J. Xie, R. Girshick, A. Farhadi, "Unsupervised Deep Embedding for Clustering
Analysis", ICML 2016 (the accuracy under the best one-to-one mapping).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pyro import poutine
from pyro.distributions import Categorical
from scipy.optimize import linear_sum_assignment

from pyrovae.inference.diagnostics import is_latent, posterior_means


def clustering_accuracy(clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of datapoints whose cluster, under the best one-to-one mapping of clusters to
    classes, is their class; ``clusters`` and ``labels`` are ``(N,)`` indices."""
    if clusters.shape != labels.shape or clusters.ndim != 1 or not len(clusters):
        raise ValueError(
            f"need clusters and labels of one shape (N,), got {tuple(clusters.shape)}, {tuple(labels.shape)}"
        )
    k, c = int(clusters.max()) + 1, int(labels.max()) + 1
    table = torch.zeros(k, c, dtype=torch.long)
    table.index_put_((clusters.cpu(), labels.cpu()), torch.ones_like(clusters.cpu()), accumulate=True)
    rows, cols = linear_sum_assignment(table.numpy(), maximize=True)
    return float(table[rows, cols].sum()) / len(clusters)


@torch.no_grad()
def categorical_sites(guide: Callable, *args) -> list[str]:
    """The guide's latent sites whose distribution is a ``Categorical`` (run once on ``args``)."""
    with torch.random.fork_rng():
        trace = poutine.trace(guide).get_trace(*args)
    return [name for name, site in trace.nodes.items() if is_latent(site) and isinstance(site["fn"], Categorical)]


@torch.no_grad()
def cluster_assignments(guide: Callable, batches: Iterable, *, site: str) -> torch.Tensor:
    """argmax_y q(y | x) of the guide's categorical ``site`` for every datapoint: ``(N,)``."""
    return posterior_means(guide, batches)[site].argmax(-1)
