import pytest

from pyrovae.inference import parse_schedule


def test_constant():
    assert [parse_schedule("constant", 0.5)(s) for s in (0, 10, 10_000)] == [0.5, 0.5, 0.5]


def test_linear_warmup_rises_from_zero_and_holds():
    schedule = parse_schedule("linear:100", 2.0)
    assert [schedule(s) for s in (0, 50, 100, 1000)] == [0.0, 1.0, 2.0, 2.0]


def test_cyclical_restarts_every_period():
    schedule = parse_schedule("cyclical:10:0.5", 1.0)
    assert [schedule(s) for s in (0, 2, 5, 9, 10, 12)] == [0.0, 0.4, 1.0, 1.0, 0.0, 0.4]
    assert parse_schedule("cyclical:10", 1.0)(2) == 0.4  # ratio defaults to 0.5


@pytest.mark.parametrize("spec", ["linear", "linear:0", "linear:x", "cyclical:10:0", "cosine", "constant:3"])
def test_bad_spec_names_the_forms(spec: str):
    with pytest.raises(ValueError, match="linear:STEPS"):
        parse_schedule(spec, 1.0)
