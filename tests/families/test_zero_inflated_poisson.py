"""The zero-inflated Poisson likelihood: its density from the decoder's outputs, by the formula."""

import math

import torch

from pyrovae import families


def test_the_density_is_a_gate_on_zero_plus_a_gated_poisson():
    family = families.get("zero-inflated-poisson", "likelihood")
    assert family.num_outputs(3) == 6 and family.capabilities.support == "count"
    raw_rate, gate_logits = torch.tensor([[0.3, -2.0, 1.5]]), torch.tensor([[0.0, 2.0, -1.0]])
    fn = family.from_outputs(torch.cat([raw_rate, gate_logits], dim=-1))
    x = torch.tensor([[0.0, 0.0, 4.0]])
    rate = torch.nn.functional.softplus(raw_rate) + 1e-6
    gate = torch.sigmoid(gate_logits)
    by_hand = [  # p(0) = g + (1 - g) e^-r; p(k) = (1 - g) r^k e^-r / k!
        math.log(gate[0, 0] + (1 - gate[0, 0]) * math.exp(-rate[0, 0])),
        math.log(gate[0, 1] + (1 - gate[0, 1]) * math.exp(-rate[0, 1])),
        math.log(1 - gate[0, 2]) + 4 * math.log(rate[0, 2]) - rate[0, 2] - math.log(24),
    ]
    torch.testing.assert_close(fn.log_prob(x), torch.tensor([sum(by_hand)]))
    assert fn.event_shape == (3,) and (fn.sample() >= 0).all()
