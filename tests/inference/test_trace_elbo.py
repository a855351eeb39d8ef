import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovae import spec
from pyrovae.data import Dataset
from pyrovae.guides import FullCovarianceEncoder, FullCovarianceGuide
from pyrovae.inference import TraceELBO, TraceMeanFieldELBO, TrainConfig, Trainer
from pyrovae.primitives import data_plate

from conftest import binary_images, make_vae, options

PAIRS = [(TraceELBO, Trace_ELBO), (TraceMeanFieldELBO, TraceMeanField_ELBO)]


def _loss_and_grads(objective, model, guide, x, **kwargs) -> tuple[float, dict[str, torch.Tensor]]:
    pyro.set_rng_seed(5)
    with poutine.trace(param_only=True) as capture:
        loss = objective.differentiable_loss(model, guide, x, **kwargs)
        loss.backward()
    params = {name: site["value"].unconstrained() for name, site in capture.trace.nodes.items()}
    grads = {name: p.grad.clone() for name, p in params.items()}
    for p in params.values():
        p.grad = None
    return loss.item(), grads


def _vae_pairs():
    data_dim, latent_dim = 10, 3
    yield make_vae(data_dim=data_dim, latent_dim=latent_dim)
    model, _ = make_vae(data_dim=data_dim, latent_dim=latent_dim)
    yield model, FullCovarianceGuide(FullCovarianceEncoder(data_dim, latent_dim, (8,)))


@pytest.mark.parametrize(("ours", "pyros"), PAIRS)
@pytest.mark.parametrize("particles", [1, 4])
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
def test_same_loss_and_gradients_as_pyro(ours, pyros, particles: int, beta: float):
    x = torch.as_tensor(binary_images(6, dim=10), dtype=torch.float64)
    for model, guide in _vae_pairs():
        model, guide = model.double(), guide.double()
        options = dict(num_particles=particles, vectorize_particles=particles > 1)
        kwargs = dict(beta=beta, num_data=60)
        loss, grads = _loss_and_grads(ours(**options), model, guide, x, **kwargs)
        expected, expected_grads = _loss_and_grads(pyros(**options), model, guide, x, **kwargs)
        assert loss == pytest.approx(expected, rel=1e-12)
        assert grads.keys() == expected_grads.keys()
        for name, g in grads.items():
            assert torch.allclose(g, expected_grads[name], rtol=1e-10, atol=1e-12), name
        pyro.clear_param_store()


def test_hierarchical_model_matches_pyros_trace_elbo():
    x = torch.as_tensor(binary_images(5, dim=10), dtype=torch.float64)
    hvae = spec.with_options(spec.load("hvae"), hidden=(8,), latent_dim=(4, 2))
    model, guide = (m.double() for m in spec.build(hvae, data_dim=10))
    loss, grads = _loss_and_grads(TraceELBO(), model, guide, x, num_data=50)
    expected, expected_grads = _loss_and_grads(Trace_ELBO(), model, guide, x, num_data=50)
    assert loss == pytest.approx(expected, rel=1e-12)
    assert all(torch.allclose(g, expected_grads[n], rtol=1e-10, atol=1e-12) for n, g in grads.items())


def test_score_function_sites_take_pyros_surrogate():
    """A discrete latent: the loss is Pyro's value, and the gradient has Pyro's score-function term."""
    logit = torch.tensor(0.3, requires_grad=True)

    def model(x):
        with data_plate(x.shape[0], None, x.device):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(2 * c, 1.0), obs=x)

    def guide(x):
        with data_plate(x.shape[0], None, x.device):
            pyro.sample("c", dist.Bernoulli(logits=logit))

    x = torch.tensor([0.1, 1.9, 2.2])
    results = []
    for objective in (TraceELBO(), Trace_ELBO()):
        pyro.set_rng_seed(3)
        loss = objective.differentiable_loss(model, guide, x)
        (grad,) = torch.autograd.grad(loss, logit)
        results.append((loss.item(), grad.item()))
    assert results[0] == pytest.approx(results[1], rel=1e-6) and results[0][1] != 0


class _HostReads:
    """Counts the tensor methods that copy a value to the host (a device sync on a GPU)."""

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch):
        self.count = 0
        for method in self.METHODS:
            original = getattr(torch.Tensor, method)
            monkeypatch.setattr(torch.Tensor, method, self._counting(original))

    def _counting(self, original):
        def counted(tensor, *args):
            self.count += 1
            return original(tensor, *args)

        return counted


@pytest.mark.parametrize(
    ("objective", "particles", "gradient"),
    [("elbo", 1, "standard"), ("elbo", 3, "standard"), ("mf-elbo", 1, "standard"), ("iwae", 5, "standard"),
     ("iwae", 5, "dreg"), ("renyi", 5, "standard")],
)  # fmt: skip
def test_training_steps_read_nothing_back_to_the_host(monkeypatch, objective: str, particles: int, gradient: str):
    x = torch.as_tensor(binary_images(40, dim=12), dtype=torch.float32)
    data = Dataset("tiny", {"train": x[:32], "test": x[32:]})
    model, guide = make_vae(data_dim=12)
    config = TrainConfig(batch_size=8, objective=objective, objective_options=options(objective, particles, gradient))
    trainer = Trainer(model, guide, data, config, progress=False)
    reads = _HostReads(monkeypatch)
    with pyro.validation_enabled(False):  # as in Trainer.train_epoch
        for i in range(3):
            trainer.step(x[8 * i : 8 * i + 8], 0.5)
    assert reads.count == 0
