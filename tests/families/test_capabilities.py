"""Every registered family does what its capabilities declare, in every role it declares."""

import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.kl import kl_divergence

from pyrovae import families
from pyrovae.graph import DiagonalNormal
from pyrovae.nets import GaussianEncoder, mlp

SIZE, IN_DIM, BATCH = 3, 5, 4
CONDITIONAL = [(n, r) for r in ("guide", "likelihood", "prior") for n in families.names(r) if n != "diag"]
CONDITIONAL = [(n, r) for n, r in CONDITIONAL if families.FAMILIES[families.ALIASES.get(n, n)].capabilities.conditional]


def conditional(name: str, role: str) -> tuple[families.Family, torch.nn.Module]:
    family = families.get(name, role)
    net = mlp(IN_DIM, (8,), family.num_outputs(SIZE))
    return family, family.conditional(net, IN_DIM, SIZE)


@pytest.mark.parametrize(("name", "role"), CONDITIONAL, ids=[f"{r}-{n}" for n, r in CONDITIONAL])
def test_a_conditional_has_the_declared_shapes_and_capabilities(name: str, role: str):
    family, module = conditional(name, role)
    fn = module(torch.randn(BATCH, IN_DIM))
    caps = family.capabilities
    event = () if caps.support == "class" else (SIZE,)  # a class index, of SIZE classes
    assert fn.batch_shape == (BATCH,) and fn.event_shape == event
    z = fn.rsample() if caps.reparameterized else fn.sample()
    assert z.shape == (BATCH, *event) and fn.log_prob(z).shape == (BATCH,) and torch.isfinite(fn.log_prob(z)).all()
    assert fn.has_rsample == caps.reparameterized or role == "likelihood"
    if caps.has_mean:
        assert fn.mean.shape == (BATCH, SIZE)
    elif caps.support == "class":  # Categorical.mean is NaN: the diagnostics read its probabilities instead
        assert fn.probs.shape == (BATCH, SIZE) and torch.isnan(fn.mean).all()
    else:
        with pytest.raises(NotImplementedError):
            fn.mean  # noqa: B018
    if caps.enumerable:  # a finite support that Pyro can sum over: SIZE classes, or 2^SIZE binary vectors
        values = fn.enumerate_support()
        assert values.shape == ((SIZE, BATCH) if caps.support == "class" else (2**SIZE, BATCH, SIZE))
        assert len(values[:, 0].unique(dim=0)) == values.shape[0]  # each value once
        torch.testing.assert_close(fn.log_prob(values).logsumexp(0), torch.zeros(BATCH))  # the whole support
    if caps.reparameterized and not caps.deterministic:  # pathwise gradients reach the network
        fn.log_prob(fn.rsample()).sum().backward()
        assert all(p.grad is not None for p in module.parameters())
    if role == "likelihood":
        family.check(z)  # its own samples lie in its support


@pytest.mark.parametrize("name", [n for n in families.names("guide") if n != "diag"])
def test_declared_analytic_kls_exist_and_match_monte_carlo(name: str):
    family, module = conditional(name, "guide")
    q = module(torch.randn(BATCH, IN_DIM))
    for prior in family.capabilities.analytic_kl:
        p_family = families.get(prior, "prior")
        scale = {"scale": 1.5} if "scale" in {p.name for p in p_family.params} else {}
        p = p_family.free(SIZE, scale, learn=False, context={})().expand(q.batch_shape)  # as the data plate does
        z = q.sample((20000,))
        monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
        torch.testing.assert_close(kl_divergence(q, p).expand(BATCH), monte_carlo, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("name", [n for n in families.names("prior") if n not in ("diag", "vamp", "mixture")])
@pytest.mark.parametrize("learn", [False, True])
def test_a_parentless_prior_is_the_family_at_its_values(name: str, learn: bool):
    family = families.get(name, "prior")
    values = {p.name: 2.0 if p.positive else 0.5 for p in family.params}  # loc 0.5, scale 2 (a categorical's logits)
    prior = family.free(SIZE, values, learn=learn, context={})
    fn = prior()
    discrete = family.capabilities.support == "class"
    assert fn.batch_shape == () and fn.event_shape == (() if discrete else (SIZE,))
    expected = family.distribution(**{k: torch.full((SIZE,), v) for k, v in values.items()})
    z = torch.arange(SIZE) if discrete else torch.randn(7, SIZE)
    if family.capabilities.support == "binary":  # binary units
        z = torch.randint(0, 2, (7, SIZE)).float()
    torch.testing.assert_close(fn.log_prob(z), expected.log_prob(z))
    assert len(list(prior.parameters())) == (len(values) if learn else 0)


def test_the_standard_normal_prior_is_exact_and_parameter_free():
    prior = families.get("normal", "prior").free(SIZE, {}, learn=False, context={})
    assert isinstance(prior().base_dist, dist.Normal) and not list(prior.parameters())
    assert torch.equal(prior().base_dist.scale, torch.ones(SIZE))


def test_the_vamp_prior_reads_the_guide_it_is_given():
    guide = DiagonalNormal(GaussianEncoder(IN_DIM, SIZE, (8,)))
    prior = families.get("vamp", "prior", {"components": 6}).free(
        SIZE, {}, learn=True, context={"guide": guide, "data_dim": IN_DIM}
    )
    assert [name for name, _ in prior.named_parameters()] == ["pseudo_inputs"]
    assert prior().log_prob(torch.zeros(2, SIZE)).shape == (2,)


@pytest.mark.parametrize(
    ("name", "role", "options", "message"),
    [
        ("zipf", "likelihood", {}, "unknown likelihood 'zipf'; choose from bernoulli"),
        ("laplace", "likelihood", {}, "unknown likelihood 'laplace'"),
        ("student-t", "prior", {"df": -1.0}, "df must be > 0"),
        ("student-t", "prior", {"nu": 3.0}, "unknown options ['nu']; its options: df"),
        ("normal", "prior", {"df": 3.0}, "unknown options ['df']; its options: none"),
    ],
)
def test_the_registry_refuses_what_it_does_not_have(name: str, role: str, options: dict, message: str):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("'", ".")):
        families.get(name, role, options)


@pytest.mark.parametrize(
    ("name", "data", "ok"),
    [
        ("bernoulli", [0.0, 1.0], True),
        ("bernoulli", [0.5, 1.0], False),
        ("poisson", [0.0, 7.0], True),
        ("poisson", [0.5, 1.0], False),
        ("negative-binomial", [-1.0, 2.0], False),
        ("continuous-bernoulli", [0.2, 1.0], True),
        ("continuous-bernoulli", [1.5, 1.0], False),
        ("gaussian", [-3.0, float("nan")], False),
    ],
)
def test_likelihoods_check_their_support(name: str, data: list[float], ok: bool):
    family = families.get(name, "likelihood")
    if ok:
        family.check(torch.tensor(data))
    else:
        with pytest.raises(ValueError, match=f"the {name} likelihood needs"):
            family.check(torch.tensor(data))


@pytest.mark.parametrize("name", families.names("label"))
def test_a_label_family_gives_class_indices_and_enumerates(name: str):
    family, module = conditional(name, "label")
    fn = module(torch.randn(BATCH, IN_DIM))  # over SIZE classes
    y = fn.sample()
    assert fn.batch_shape == (BATCH,) and fn.event_shape == () and ((y >= 0) & (y < SIZE)).all()
    assert family.capabilities.enumerable and fn.enumerate_support().shape == (SIZE, BATCH)
    family.check(y)
    with pytest.raises(ValueError, match="class indices"):
        family.check(y.float())


def test_the_mixture_prior_learns_its_components_and_is_their_mixture():
    prior = families.get("mixture", "prior", {"components": 3}).free(SIZE, {}, learn=True, context={})
    assert sorted(name for name, _ in prior.named_parameters()) == ["loc", "logits", "raw_scale"]
    fn, z = prior(), torch.randn(2, 4, SIZE)
    scale = torch.nn.functional.softplus(prior.raw_scale) + 1e-4
    components = dist.Normal(prior.loc, scale).to_event(1)
    expected = dist.MixtureSameFamily(dist.Categorical(logits=prior.logits), components).log_prob(z)
    torch.testing.assert_close(fn.log_prob(z), expected, atol=1e-5, rtol=1e-5)
    fn.log_prob(z).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prior.parameters())
