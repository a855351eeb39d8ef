"""The disentanglement metrics on synthetic factors (dSprites-lite) with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.inference.disentanglement import (
    _Groups,
    beta_vae_score,
    dci,
    dci_from_importance,
    dci_importance,
    disentanglement_scores,
    factor_vae_score,
    mig,
    mig_per_factor,
)

SIZES = (3, 6, 10, 10)  # the values of each of the F = 4 factors
N = 4000
IGNORED = 2  # the factor the "ignoring" representation replaces by noise
METRICS = ("mig", "beta_vae", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness")


def synthetic(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Factors drawn uniformly from the product of SIZES, and representations of them: ``aligned``
    (the standardized factors + noise of sd 0.1, then 2 pure-noise dims), a ``rotated`` one (a random
    rotation of it), a ``mixed`` one (45-degree rotations in the planes of factors 0, 1 and 2, 3) and
    an ``ignoring`` one (the column of factor IGNORED replaced by noise)."""
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, size, N) for size in SIZES], axis=1)  # (N, 4)
    signal = (factors - factors.mean(0)) / factors.std(0) + 0.1 * rng.standard_normal(factors.shape)
    aligned = np.concatenate([signal, rng.standard_normal((N, 2))], axis=1)  # (N, 6)
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    mix = np.eye(6)
    mix[:4, :4] = np.kron(np.eye(2), np.array([[1, 1], [-1, 1]]) / 2**0.5)
    ignoring = aligned.copy()
    ignoring[:, IGNORED] = rng.standard_normal(N)
    return factors, {"aligned": aligned, "rotated": aligned @ rotation, "mixed": aligned @ mix, "ignoring": ignoring}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return synthetic()


@pytest.fixture(scope="module")
def scores(data) -> dict[str, dict[str, float]]:
    """Every metric of every representation at the defaults (computed once: DCI takes ~1.5 s each)."""
    factors, codes = data
    return {name: disentanglement_scores(z, factors) for name, z in codes.items()}


def test_aligned_codes_score_near_one(scores):
    """Noise of sd 0.1 blurs neighbouring values of the 10-valued factors (0.35 apart once standardized):
    the binned MI and the tree classifiers lose a little there (measured MIG 0.93, DCI-I 0.965)."""
    assert scores["aligned"]["beta_vae"] == scores["aligned"]["factor_vae"] == 1.0
    assert scores["aligned"]["mig"] > 0.9
    assert scores["aligned"]["dci_disentanglement"] > 0.97 and scores["aligned"]["dci_completeness"] > 0.97
    assert scores["aligned"]["dci_informativeness"] > 0.95


def test_a_random_rotation_breaks_mig_and_dci_but_not_the_vote_scores(scores):
    """MIG and DCI measure axis alignment (measured 0.18 and D, C 0.47, 0.39). The beta-VAE score's linear
    classifier still names the fixed factor from rotated differences (0.995), and the FactorVAE score's
    vote still works while each factor has its own most-aligned dimension (0.98): both stay high."""
    rotated, aligned = scores["rotated"], scores["aligned"]
    assert rotated["mig"] < 0.3
    assert rotated["dci_disentanglement"] < 0.6 and rotated["dci_completeness"] < 0.6
    assert rotated["dci_informativeness"] < aligned["dci_informativeness"] - 0.3  # axis-aligned trees suffer
    assert rotated["beta_vae"] > 0.95 and rotated["factor_vae"] > 0.95


def test_45_degree_mixing_of_factor_pairs_breaks_every_metric(scores):
    """z = (v0 + v1, v1 - v0) / sqrt 2: fixing v0 or v1 lowers both codes alike, so neither vote score can
    tell the pair apart (measured 0.54, 0.52: chance within each pair) and no code is v0's alone."""
    mixed = scores["mixed"]
    assert mixed["mig"] < 0.05
    assert mixed["beta_vae"] < 0.6 and mixed["factor_vae"] < 0.6
    assert mixed["dci_disentanglement"] < 0.6 and mixed["dci_completeness"] < 0.7


def test_every_metric_but_beta_vae_drops_when_one_factor_is_ignored(scores):
    """The beta-VAE classifier names the ignored factor by elimination (no code is small): it stays 1."""
    ignoring, aligned = scores["ignoring"], scores["aligned"]
    for metric in ("mig", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert ignoring[metric] < aligned[metric] - 0.05, metric
    assert ignoring["beta_vae"] == 1.0


def test_the_ignored_factor_has_no_gap_and_chance_accuracy(data):
    factors, codes = data
    gaps = mig_per_factor(codes["ignoring"], factors)
    assert gaps[IGNORED] < 0.01 and np.delete(gaps, IGNORED).min() > 0.85
    importance, accuracy = dci_importance(codes["ignoring"], factors)
    assert accuracy[IGNORED] < 1 / SIZES[IGNORED] + 0.08  # chance: 0.1 (measured 0.12)
    assert np.delete(accuracy, IGNORED).min() > 0.9
    share = importance / importance.sum(0)  # (D, F) each factor's importance over the codes
    assert share[:, IGNORED].max() < 0.3  # spread over the noise, no code explains it
    assert np.delete(share.max(0), IGNORED).min() > 0.95


def test_mig_of_a_hand_made_example():
    """a, b fair independent bits; z = (a, a AND b). I(z0; a) = 1 bit, I(z1; a) = I(z1; b) =
    H(1/4) - 1/2 = 3/4 log2(4/3) = h bits, I(z0; b) = 0; H(a) = H(b) = 1 bit: gaps (1 - h, h), MIG 1/2."""
    a = np.tile([0, 0, 0, 0, 1, 1, 1, 1], 2)
    b = np.tile([0, 0, 1, 1, 0, 0, 1, 1], 2)
    factors = np.stack([a, b, np.zeros_like(a)], axis=1)  # the constant third factor is skipped
    codes = np.stack([a, a & b], axis=1).astype(float)
    h = 0.75 * np.log2(4 / 3)
    np.testing.assert_allclose(mig_per_factor(codes, factors), [1 - h, h, np.nan])
    assert mig(codes, factors) == pytest.approx(0.5)
    assert mig(codes[:, [0, 0]], factors[:, :1]) == 0  # a duplicated code leaves no gap


@pytest.mark.parametrize(
    ("importance", "expected"),
    [
        (np.eye(4), (1, 1)),
        (np.eye(4)[[2, 0, 3, 1]] * [1, 2, 3, 4], (1, 1)),  # permuted and unequal: still one code per factor
        (np.ones((5, 3)), (0, 0)),
        (np.zeros((5, 3)), (0, 0)),  # no importance counts as uniform
        (np.array([[1.0, 1.0], [0.0, 0.0]]), (0, 1)),  # one code serves both factors
        (np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]), (1, 1 - np.log(2) / np.log(3) / 2)),  # C_0 = 1 - log3(2)
        (np.array([[3.0]]), (1, 1)),
    ],
)
def test_dci_from_importance(importance, expected):
    assert dci_from_importance(importance) == pytest.approx(expected, abs=1e-8)


def test_dci_returns_its_three_scores_from_the_importance(data):
    factors, codes = data
    importance, accuracy = dci_importance(codes["rotated"], factors, num_train=500, num_test=200)
    scores = dci(codes["rotated"], factors, num_train=500, num_test=200)
    assert (scores["disentanglement"], scores["completeness"]) == dci_from_importance(importance)
    assert scores["informativeness"] == pytest.approx(accuracy.mean())


def test_same_seed_same_scores_and_torch_inputs_match_numpy(data):
    factors, codes = data
    z, kwargs = codes["rotated"], {"num_train": 1000, "num_eval": 500, "dci_train": 500, "dci_test": 200}
    first = disentanglement_scores(z, factors, seed=3, **kwargs)
    assert set(first) == set(METRICS)
    assert disentanglement_scores(torch.as_tensor(z), torch.as_tensor(factors), seed=3, **kwargs) == first
    other = disentanglement_scores(z, factors, seed=4, **kwargs)
    assert other["factor_vae"] != first["factor_vae"] and other["dci_informativeness"] != first["dci_informativeness"]


def test_factor_vae_excludes_constant_codes_and_beta_vae_needs_two_factors(data):
    factors, codes = data
    z = codes["rotated"]
    with_constant = np.concatenate([z, np.full((N, 1), 3.0)], axis=1)
    assert factor_vae_score(with_constant, factors, num_train=500, num_eval=500) == factor_vae_score(
        z, factors, num_train=500, num_eval=500
    )
    assert factor_vae_score(np.ones((N, 2)), factors) == 0.0
    assert beta_vae_score(z, factors[:, :1]) == 1.0


def test_rows_drawn_share_the_anchors_value():
    rng = np.random.default_rng(0)
    column = rng.integers(5, 9, 200)  # values need not start at 0
    anchors = rng.integers(0, 200, 50)
    rows = _Groups(column).draw(anchors, 7, rng)
    assert rows.shape == (50, 7) and (column[rows] == column[anchors][:, None]).all()


METRIC_FUNCTIONS = [mig, mig_per_factor, beta_vae_score, factor_vae_score, dci, dci_importance, disentanglement_scores]
GOOD_CODES, GOOD_FACTORS = np.zeros((20, 3)), np.tile([[0, 1]], (10, 1)).reshape(20, 1)


@pytest.mark.parametrize("metric", METRIC_FUNCTIONS)
@pytest.mark.parametrize(
    ("codes", "factors", "message"),
    [
        (GOOD_CODES[:19], GOOD_FACTORS, "codes have 19 rows but factors 20"),
        (GOOD_CODES[:, 0], GOOD_FACTORS, r"need codes \(N, D\) and factors \(N, F\)"),
        (GOOD_CODES, GOOD_FACTORS[:, 0], r"need codes \(N, D\) and factors \(N, F\)"),
        (GOOD_CODES, GOOD_FACTORS.astype(float), "factors must be integer indices"),
        (GOOD_CODES[:5], GOOD_FACTORS[:5], "need at least 10 rows"),
        (np.full((20, 3), np.nan), GOOD_FACTORS, "codes contain NaN"),
        (GOOD_CODES, np.zeros((20, 2), dtype=int), "every factor takes a single value"),
    ],
)
def test_bad_inputs_raise(metric, codes, factors, message):
    with pytest.raises(ValueError, match=message):
        metric(codes, factors)


def test_bad_importance_and_batch_size_raise():
    with pytest.raises(ValueError, match="non-negative importances"):
        dci_from_importance(-np.eye(2))
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        factor_vae_score(GOOD_CODES, GOOD_FACTORS, batch_size=1)
