import math

import pyro.distributions as dist
import pytest
import torch
from pyro.poutine.messenger import Messenger

from pyrovae.inference import bounds, iwae_bound, log_likelihood, log_mean_exp, log_weights, renyi_bound

from linear_gaussian import LinearGaussian


@pytest.mark.parametrize(("k", "chunk_size"), [(1, None), (5, None), (50, 7), (500, 64)])
def test_exact_posterior_makes_every_bound_log_px(k: int, chunk_size: int | None):
    lg = LinearGaussian()
    x = lg.sample_x(8)
    bound = iwae_bound(lg.model, lg.exact_guide, x, num_particles=k, chunk_size=chunk_size)
    assert torch.allclose(bound, lg.log_px(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_exact_posterior_makes_every_renyi_bound_log_px(alpha: float):
    lg = LinearGaussian()
    x = lg.sample_x(8)
    log_w = log_weights(lg.model, lg.exact_guide, x, num_particles=9)
    assert torch.allclose(renyi_bound(log_w, alpha), lg.log_px(x), rtol=0, atol=1e-10)


def test_exact_posterior_log_likelihood_has_zero_error():
    lg = LinearGaussian()
    x = lg.sample_x(8)
    estimate, stderr = log_likelihood(lg.model, lg.exact_guide, x, num_samples=1000, chunk_size=300)
    assert torch.allclose(estimate, lg.log_px(x), rtol=0, atol=1e-10)
    assert torch.all(stderr < 1e-6)


def test_bounds_increase_with_k_and_stay_below_log_px():
    lg = LinearGaussian()
    x = lg.sample_x(400)
    means, ses = [], []
    for k in (1, 5, 50):
        draws = torch.stack([iwae_bound(lg.model, lg.shifted_guide, x, num_particles=k) for _ in range(5)])
        gap = draws - lg.log_px(x)  # per-datapoint gap to log p(x): negative in expectation
        means.append(gap.mean().item())
        ses.append(gap.mean(0).std().item() / math.sqrt(x.shape[0]))
    for i in range(len(means) - 1):  # strictly increasing in k
        assert means[i + 1] - means[i] > 4 * math.hypot(ses[i], ses[i + 1])
    assert means[-1] + 4 * ses[-1] < 0  # still below log p(x)


def test_log_likelihood_lands_within_three_standard_errors():
    lg = LinearGaussian()
    x = lg.sample_x(6)
    estimate, stderr = log_likelihood(lg.model, lg.shifted_guide, x, num_samples=20_000, chunk_size=2_000)
    assert torch.all(stderr > 0)
    assert torch.all((estimate - lg.log_px(x)).abs() < 3 * stderr)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [-5000.0, 3000.0])
def test_log_mean_exp_is_stable_for_weights_spanning_thousands_of_nats(dtype: torch.dtype, offset: float):
    base = torch.linspace(-2000.0, 0.0, 5000, dtype=torch.float64).reshape(5000, 1).repeat(1, 3)
    expected = log_mean_exp(base) + offset  # shifting every log-weight shifts the bound
    result = log_mean_exp((base + offset).to(dtype))
    assert result.dtype == dtype and torch.all(torch.isfinite(result))
    assert torch.allclose(result.double(), expected, rtol=0, atol=1e-3 if dtype == torch.float32 else 1e-9)
    renyi = renyi_bound((base + offset).to(dtype), 0.5).double()
    assert torch.allclose(renyi, renyi_bound(base, 0.5) + offset, rtol=0, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_streaming_sum_equals_one_pass_for_extreme_weights(monkeypatch, dtype: torch.dtype):
    all_log_w = torch.cat([torch.full((2500, 2), -4000.0), torch.randn(2500, 2) * 800 - 6000]).to(dtype)
    chunks = iter(all_log_w.split(128))
    monkeypatch.setattr(bounds, "log_weights", lambda *a, num_particles, **k: next(chunks))
    estimate, stderr = log_likelihood(None, None, num_samples=5000, chunk_size=128)
    assert torch.allclose(estimate.double(), log_mean_exp(all_log_w.double()), atol=1e-2)
    assert torch.all(torch.isfinite(stderr)) and torch.all(stderr > 0)


@pytest.mark.parametrize("k", [2, 7, 500])
def test_log_likelihood_standard_error_is_the_delta_method_one_with_the_unbiased_variance(monkeypatch, k: int):
    # sd(w) / (sqrt(k) mean(w)), sd with the k - 1 denominator, for weights known in closed form
    w = torch.linspace(0.5, 3.0, k, dtype=torch.float64).reshape(k, 1) * torch.tensor([1.0, 2.0], dtype=torch.float64)
    chunks = iter(w.log().split(3))
    monkeypatch.setattr(bounds, "log_weights", lambda *a, num_particles, **kw: next(chunks))
    estimate, stderr = log_likelihood(None, None, num_samples=k, chunk_size=3)
    torch.testing.assert_close(estimate, w.mean(0).log())
    torch.testing.assert_close(stderr, w.std(0, unbiased=True) / (k**0.5 * w.mean(0)))


class ObservedShapes(Messenger):
    """Records the batch shape of the distribution at the observed site ``"x"``."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def _postprocess_message(self, msg):
        if msg["name"] == "x":
            self.shapes.append(tuple(msg["fn"].batch_shape))


def test_chunks_bound_memory_whatever_the_number_of_samples():
    lg = LinearGaussian()
    spy = ObservedShapes()
    log_likelihood(spy(lg.model), lg.exact_guide, lg.sample_x(3), num_samples=5000, chunk_size=40)
    # 125 passes of at most 40 particles x 3 datapoints: never a 5000 x 3 x data tensor
    assert len(spy.shapes) == 125 and set(spy.shapes) == {(40, 3)}


@pytest.mark.parametrize(("batch", "num_samples", "passes"), [(3, 5000, 8), (100, 5000, 250), (4096, 10, 10)])
def test_automatic_chunks_hold_about_rows_per_pass(batch: int, num_samples: int, passes: int):
    lg = LinearGaussian()
    spy = ObservedShapes()
    x = lg.sample_x(batch)
    estimate, _ = log_likelihood(spy(lg.model), lg.exact_guide, x, num_samples=num_samples)
    assert bounds.ROWS_PER_PASS["cpu"] == 2048
    assert len(spy.shapes) == passes  # ceil(num_samples / max(1, 2048 // batch)) passes
    assert max(k * b for k, b in spy.shapes) <= max(2048, batch)
    assert torch.allclose(estimate, lg.log_px(x), atol=1e-4)  # the exact guide: every chunking gives log p(x)


def test_normal_sanity_of_the_linear_gaussian_reference():
    lg = LinearGaussian(data_dim=2, latent_dim=1)
    x = lg.sample_x(1)
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64).reshape(-1, 1)
    joint = dist.Normal(0.0, 1.0).log_prob(z).squeeze(-1) + dist.Normal(z @ lg.W.T + lg.b, lg.noise).log_prob(x).sum(-1)
    numeric = torch.logsumexp(joint, 0) + math.log(24 / 200_000)  # quadrature of p(x) = int p(x, z) dz
    assert numeric.item() == pytest.approx(lg.log_px(x).item(), abs=1e-6)
