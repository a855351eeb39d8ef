"""Disentanglement metrics of a representation against known discrete factors of variation.

Each metric takes ``codes``, an ``(N, D)`` float array (numpy or torch: the posterior means of N
datapoints, say), and ``factors``, the ``(N, F)`` integer indices of the true factor values of the
same rows. Scores lie in [0, 1], higher is more disentangled:

* ``mig``: the Mutual Information Gap, per factor the gap between the two code dimensions most
  informative of it, over its entropy;
* ``beta_vae_score``: how well a linear classifier names the factor held fixed in pairs of rows
  from their mean absolute code differences;
* ``factor_vae_score``: the same by a majority vote on the code dimension of least variance;
* ``dci``: disentanglement, completeness and informativeness of a tree-ensemble importance matrix.

The implementation follows disentanglement_lib (Locatello et al.), with one change forced by taking
a fixed data set rather than a simulator: "rows sharing the value of factor k" are drawn from the
given rows with an equal value of factor k (the observational version of the beta-VAE and FactorVAE
scores), so the other factors vary as they do in the data. A factor that takes a single value is
skipped by every metric (it has no entropy and nothing to hold fixed). All randomness comes from
``numpy.random.default_rng(seed)``.

References: I. Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", ICLR 2017; H. Kim, A. Mnih, "Disentangling by Factorising", ICML 2018;
R. T. Q. Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018; C. Eastwood,
C. K. I. Williams, "A Framework for the Quantitative Evaluation of Disentangled Representations",
ICLR 2018; F. Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
Disentangled Representations", ICML 2019 (disentanglement_lib: the implementation choices).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import entropy
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score

MIN_ROWS = 10  # fewer rows leave no train/test split nor pairs to speak of
_CHUNK = 2**22  # float64 elements of one gathered (votes, batch, D) block: 32 MiB


def _as_arrays(codes: np.ndarray | torch.Tensor, factors: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(N, D)`` float64 codes and ``(N, F)`` integer factors."""
    codes, factors = (
        x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in (codes, factors)
    )
    if codes.ndim != 2 or factors.ndim != 2:
        raise ValueError(
            f"need codes (N, D) and factors (N, F), got shapes {codes.shape}, {factors.shape}: "
            "reshape a single column with x.reshape(-1, 1)"
        )
    if len(codes) != len(factors):
        raise ValueError(f"codes have {len(codes)} rows but factors {len(factors)}: pass the factors of the same rows")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(
            f"factors must be integer indices of discrete values, got dtype {factors.dtype}: "
            "cast them (x.astype(int), tensor.long()) or bin a continuous factor first"
        )
    if len(codes) < MIN_ROWS:
        raise ValueError(f"need at least {MIN_ROWS} rows, got {len(codes)}: pass more datapoints")
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or inf: check the encoder's outputs")
    return codes.astype(np.float64), factors


def _varying(factors: np.ndarray) -> np.ndarray:
    """Indices of the factors taking more than one value (the others are skipped)."""
    (varying,) = np.nonzero((factors != factors[:1]).any(axis=0))
    if not len(varying):
        raise ValueError("every factor takes a single value: there is nothing to measure")
    return varying


def _chunks(idx: np.ndarray, per_item: int) -> list[np.ndarray]:
    """``idx`` split so that gathering ``per_item`` floats per index stays under _CHUNK."""
    return np.array_split(idx, max(1, len(idx) * per_item // _CHUNK))


class _Groups:
    """The rows grouped by the value of one factor, to draw rows sharing a value, vectorized."""

    def __init__(self, column: np.ndarray) -> None:
        _, self.inverse, self.counts = np.unique(column, return_inverse=True, return_counts=True)
        self.order = np.argsort(self.inverse, kind="stable")  # rows sorted by value
        self.starts = np.cumsum(self.counts) - self.counts  # first position of each value in order

    def draw(self, anchors: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """``(len(anchors), size)`` rows drawn with replacement among those sharing each anchor's value."""
        g = self.inverse[anchors][:, None]  # (M, 1) value of each anchor
        return self.order[self.starts[g] + rng.integers(0, self.counts[g], (len(anchors), size))]


def _by_factor(
    groups: list[_Groups], num: int, per_item: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[_Groups, np.ndarray]]]:
    """``(num,)`` factors k held fixed, drawn uniformly, and the points of each k in memory-bounded chunks:
    ``[(group of k, point indices)]``, for the vote-based scores to fill in chunk by chunk."""
    ks = rng.integers(0, len(groups), num)
    return ks, [
        (group, chunk) for k, group in enumerate(groups) for chunk in _chunks(np.flatnonzero(ks == k), per_item)
    ]


def _discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    """``(N, D)`` bin of each code among ``bins`` equal-width bins over its own range (histogram_discretize)."""
    return np.stack([np.digitize(c, np.histogram(c, bins)[1][:-1]) for c in codes.T], axis=1)


def mig_per_factor(
    codes: np.ndarray | torch.Tensor, factors: np.ndarray | torch.Tensor, *, bins: int = 20
) -> np.ndarray:
    """``(F,)`` (I(z_a; v_k) - I(z_b; v_k)) / H(v_k) for the two codes a, b most informative of factor k.

    Each code dimension is discretized into ``bins`` equal-width bins; the mutual information is the
    discrete one of ``sklearn.metrics.mutual_info_score``. A factor with a single value (H = 0) is
    skipped: its entry is NaN. With one code dimension the runner-up's information is taken as 0.
    """
    codes, factors = _as_arrays(codes, factors)
    _varying(factors)  # raises when every factor is constant
    binned = _discretize(codes, bins)
    mi = np.array([[mutual_info_score(v, z) for v in factors.T] for z in binned.T])  # (D, F) nats
    h = np.array([mutual_info_score(v, v) for v in factors.T])  # (F,) H(v_k) = I(v_k; v_k)
    top = np.sort(np.vstack([mi, np.zeros(len(h))]), axis=0)[::-1]  # MI >= 0: the zero row only pads D = 1
    gap = np.full(len(h), np.nan)
    varying = h > 0
    gap[varying] = (top[0] - top[1])[varying] / h[varying]
    return gap


def mig(codes: np.ndarray | torch.Tensor, factors: np.ndarray | torch.Tensor, *, bins: int = 20) -> float:
    """The Mutual Information Gap (Chen et al. 2018): the mean of ``mig_per_factor`` over the factors
    that take more than one value."""
    return float(np.nanmean(mig_per_factor(codes, factors, bins=bins)))


def _beta_vae_points(
    codes: np.ndarray, groups: list[_Groups], num: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(num, D)`` features, mean over ``batch_size`` pairs sharing factor k of |z1 - z2|, and ``(num,)`` k."""
    ks, chunks = _by_factor(groups, num, batch_size * codes.shape[1], rng)  # the factor held fixed by each point
    features = np.empty((num, codes.shape[1]))
    for group, chunk in chunks:
        first = rng.integers(0, len(codes), (len(chunk), batch_size))  # (M, L) rows
        second = group.draw(first.ravel(), 1, rng).reshape(first.shape)  # (M, L) rows sharing v_k
        features[chunk] = np.abs(codes[first] - codes[second]).mean(axis=1)  # (M, L, D) -> (M, D)
    return features, ks


def beta_vae_score(
    codes: np.ndarray | torch.Tensor,
    factors: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    seed: int = 0,
) -> float:
    """The beta-VAE score (Higgins et al. 2017): accuracy on ``num_eval`` points of a logistic
    regression trained on ``num_train`` points to name the factor k held fixed.

    A point picks k uniformly among the varying factors, then ``batch_size`` pairs of rows: the first
    row uniform, the second uniform among the rows with the same value of factor k (the observational
    version: with factors drawn independently and uniformly this is the simulator's pair). Its
    features are the mean over pairs of |z1 - z2|, per code dimension. One varying factor scores 1.
    """
    codes, factors = _as_arrays(codes, factors)
    rng = np.random.default_rng(seed)
    groups = [_Groups(factors[:, k]) for k in _varying(factors)]
    if len(groups) == 1:
        return 1.0
    x_train, y_train = _beta_vae_points(codes, groups, num_train, batch_size, rng)
    x_eval, y_eval = _beta_vae_points(codes, groups, num_eval, batch_size, rng)
    model = LogisticRegression(max_iter=5000).fit(x_train, y_train)  # lbfgs: 5000 so that it converges
    return float(model.score(x_eval, y_eval))


def _factor_vae_votes(
    normalized: np.ndarray, groups: list[_Groups], num: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(num,)`` factor k of each vote and ``(num,)`` the (active) dimension of least variance of
    ``batch_size`` rows sharing a value of k, that value taken from a uniformly drawn row."""
    ks, chunks = _by_factor(groups, num, batch_size * normalized.shape[1], rng)
    dims = np.empty(num, dtype=np.int64)
    for group, chunk in chunks:
        rows = group.draw(rng.integers(0, len(normalized), len(chunk)), batch_size, rng)  # (M, B)
        dims[chunk] = normalized[rows].var(axis=1, ddof=1).argmin(axis=1)  # (M, B, D') -> (M, D') -> (M,)
    return ks, dims


def factor_vae_score(
    codes: np.ndarray | torch.Tensor,
    factors: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    seed: int = 0,
) -> float:
    """The FactorVAE score (Kim & Mnih 2018): accuracy on ``num_eval`` votes of the majority-vote
    classifier (code dimension -> factor) fit to ``num_train`` votes.

    The codes are divided by their std over up to ``num_variance_estimate`` rows (drawn without
    replacement). As in disentanglement_lib the active dimensions are those of std > 0: collapsed
    (constant) dimensions are excluded, and no active dimension scores 0. A vote picks a varying
    factor k uniformly and a row uniformly, then ``batch_size`` rows with that row's value of k
    (observational version), and votes for the active dimension of least variance over them.
    """
    codes, factors = _as_arrays(codes, factors)
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 to take a variance, got {batch_size}")
    rng = np.random.default_rng(seed)
    groups = [_Groups(factors[:, k]) for k in _varying(factors)]
    sample = rng.choice(len(codes), min(len(codes), num_variance_estimate), replace=False)
    std = codes[sample].std(axis=0, ddof=1)  # (D,)
    active = std > 0
    if not active.any():
        return 0.0
    normalized = codes[:, active] / std[active]  # (N, D')
    ks, dims = _factor_vae_votes(normalized, groups, num_train, batch_size, rng)
    votes = np.zeros((normalized.shape[1], len(groups)), dtype=np.int64)  # (D', F') counts
    np.add.at(votes, (dims, ks), 1)
    classifier = votes.argmax(axis=1)  # the factor of each dimension; 0 for a dimension never voted for
    ks, dims = _factor_vae_votes(normalized, groups, num_eval, batch_size, rng)
    return float(np.mean(classifier[dims] == ks))


def _split(n: int, num_train: int, num_test: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random train and test rows, both scaled down in proportion when n < num_train + num_test."""
    scale = min(1.0, n / (num_train + num_test))
    n_test = max(1, int(num_test * scale))
    n_train = min(n - n_test, int(num_train * scale))
    perm = rng.permutation(n)
    return perm[:n_train], perm[n_train : n_train + n_test]


def dci_importance(
    codes: np.ndarray | torch.Tensor,
    factors: np.ndarray | torch.Tensor,
    *,
    num_train: int = 2000,
    num_test: int = 1000,
    n_estimators: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(D, F)`` importance matrix R and ``(F,)`` test accuracies of one gradient-boosted tree
    classifier per factor, predicting it from the codes (disentanglement_lib's compute_importance_gbt).

    R[j, k] is the impurity importance of code j for factor k. A factor constant on the training rows
    is skipped: zero column, NaN accuracy. The defaults trade fidelity for time: disentanglement_lib
    fits 100 trees per class on 10000 rows, which fits one tree per class and stage, so minutes on two
    cores for factors of 40 classes; 10 stages on 2000 rows take seconds and rank the codes alike.
    """
    codes, factors = _as_arrays(codes, factors)
    rng = np.random.default_rng(seed)
    train, test = _split(len(codes), num_train, num_test, rng)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = np.full(factors.shape[1], np.nan)
    for k in _varying(factors[train]):
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=int(rng.integers(2**31)))
        model.fit(codes[train], factors[train, k])
        importance[:, k] = np.abs(model.feature_importances_)
        accuracy[k] = model.score(codes[test], factors[test, k])
    return importance, accuracy


def _one_minus_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """1 - H of each slice of ``p`` along ``axis`` normalized to sum 1, H in base ``p.shape[axis]``."""
    n = p.shape[axis]
    if n == 1:  # one outcome: no uncertainty (and no base-1 logarithm)
        return np.ones(p.shape[1 - axis])
    return 1 - entropy(p + 1e-11, base=n, axis=axis)  # + 1e-11: all-zero slices count as uniform


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness (Eastwood & Williams 2018) of a ``(D, F)`` importance matrix.

    Disentanglement is the mean over codes j of 1 - H_F(R[j] / sum R[j]) weighted by each code's share
    of the total importance; completeness the mean over factors k of 1 - H_D(R[:, k] / sum R[:, k])
    weighted by each factor's share. An all-zero matrix counts as uniform (scores 0), as in
    disentanglement_lib.
    """
    r = np.asarray(importance, dtype=np.float64)
    if r.ndim != 2 or not r.size or (r < 0).any():
        raise ValueError(f"need a non-empty (D, F) matrix of non-negative importances, got shape {r.shape}")
    if r.sum() == 0:
        r = np.ones_like(r)
    disentanglement = np.sum(_one_minus_entropy(r, axis=1) * r.sum(axis=1) / r.sum())
    completeness = np.sum(_one_minus_entropy(r, axis=0) * r.sum(axis=0) / r.sum())
    return float(disentanglement), float(completeness)


def dci(
    codes: np.ndarray | torch.Tensor,
    factors: np.ndarray | torch.Tensor,
    *,
    num_train: int = 2000,
    num_test: int = 1000,
    n_estimators: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """DCI (Eastwood & Williams 2018) from ``dci_importance``: ``disentanglement`` and ``completeness``
    of its importance matrix over the varying factors, ``informativeness`` the mean test accuracy."""
    importance, accuracy = dci_importance(
        codes, factors, num_train=num_train, num_test=num_test, n_estimators=n_estimators, seed=seed
    )
    varying = ~np.isnan(accuracy)
    disentanglement, completeness = dci_from_importance(importance[:, varying])
    informativeness = float(accuracy[varying].mean())
    return {"disentanglement": disentanglement, "completeness": completeness, "informativeness": informativeness}


def disentanglement_scores(
    codes: np.ndarray | torch.Tensor,
    factors: np.ndarray | torch.Tensor,
    *,
    seed: int = 0,
    bins: int = 20,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    dci_train: int = 2000,
    dci_test: int = 1000,
) -> dict[str, float]:
    """All the metrics at their defaults but for the arguments given: ``mig``, ``beta_vae``,
    ``factor_vae``, ``dci_disentanglement``, ``dci_completeness`` and ``dci_informativeness``."""
    codes, factors = _as_arrays(codes, factors)
    votes = {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval, "seed": seed}
    scores = {
        "mig": mig(codes, factors, bins=bins),
        "beta_vae": beta_vae_score(codes, factors, **votes),
        "factor_vae": factor_vae_score(codes, factors, **votes),
    }
    for name, value in dci(codes, factors, num_train=dci_train, num_test=dci_test, seed=seed).items():
        scores[f"dci_{name}"] = value
    return scores
