"""A label generated from the latents: log p(x, y | z) = log p(x | z) + log p(y | z), y observed or sampled."""

import torch
from pyro import poutine

from pyrovae import spec
from pyrovae.inference import log_weights
from pyrovae.inference.log_weights import elbo_terms

JOINT = """likelihood = "bernoulli"
hidden = [8]
[[latent]]
name = "z"
size = 2
encoder = { given = ["x"] }
[x]
given = ["z"]
[[observed]]
name = "y"
classes = 4
given = ["z"]
"""


def test_the_label_adds_its_log_likelihood_to_the_log_weights():
    model, guide = spec.build(spec.tomllib.loads(JOINT), data_dim=6)
    x, y = torch.bernoulli(torch.full((5, 6), 0.5)), torch.tensor([0, 1, 2, 3, 1])
    z = guide.conditionals["encoder_z"](x).sample()  # (5, 2)
    conditioned = poutine.condition(model, data={"z": z})
    trace = poutine.trace(conditioned).get_trace(x, y)
    decoder_y = model.conditionals["decoder_y"]
    expected = torch.log_softmax(decoder_y.decoder(z), -1).gather(-1, y[:, None]).squeeze(-1)  # log p(y | z)
    torch.testing.assert_close(trace.nodes["y"]["fn"].log_prob(y), expected)
    # Given z, the likelihood term of the bound is log p(x | z) + log p(y | z), per datapoint.
    observed = sum(trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"]) for name in ("x", "y"))
    torch.testing.assert_close(observed, model.conditionals["decoder"](z).log_prob(x) + expected)
    log_likelihood, _ = elbo_terms(model, guide, x, y, num_particles=3)
    assert log_likelihood.shape == (3, 5)
    assert log_weights(model, guide, x, y, num_particles=7).shape == (7, 5)


def test_without_the_label_the_model_samples_it_and_x_still_decodes():
    model, guide = spec.build(spec.tomllib.loads(JOINT), data_dim=6)
    trace = poutine.trace(model).get_trace(None, batch_size=3)
    assert trace.nodes["y"]["value"].shape == (3,) and trace.nodes["x"]["value"].shape == (3, 6)
    assert guide(torch.zeros(3, 6)).shape == (3, 2)  # the guide reads x alone
