"""pyrovae's fast Bernoulli log-density: Pyro's gradients, also under TraceGraph_ELBO's provenance tracking."""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceGraph_ELBO
from torch import nn

from pyrovae.families.bernoulli import Bernoulli


def decoder_gradient(likelihood: type) -> torch.Tensor:
    """d(-ELBO)/d(decoder weights) under TraceGraph_ELBO, a score-function site y upstream of x (so that the
    values carry Pyro's provenance), with ``likelihood`` as p(x | y)."""
    torch.manual_seed(0)
    decoder, encoder = nn.Linear(3, 5), nn.Linear(5, 3)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=torch.zeros(3)))
            pyro.sample("x", likelihood(logits=decoder(nn.functional.one_hot(y, 3).float())).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=encoder(x)))

    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    TraceGraph_ELBO().loss_and_grads(model, guide, torch.bernoulli(torch.full((4, 5), 0.3)))
    return decoder.weight.grad


def test_under_tracegraph_provenance_the_fast_log_prob_has_pyros_gradient():
    fast = decoder_gradient(Bernoulli)
    assert fast is not None and fast.abs().sum() > 0  # an autograd.Function would have cut it off
    torch.testing.assert_close(fast, decoder_gradient(dist.Bernoulli))
