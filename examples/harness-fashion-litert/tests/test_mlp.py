"""The MLP has exactly the parameters its layers imply, so reports compare it fairly."""

import pytest

from harness_fashion_litert.mlp import HIDDEN_UNITS, Mlp


@pytest.mark.slow
def test_parameter_count_is_that_of_two_dense_layers() -> None:
    model = Mlp().build("dense256", (28, 28, 1), 10)
    assert model.count_params() == 28 * 28 * HIDDEN_UNITS + HIDDEN_UNITS + HIDDEN_UNITS * 10 + 10
    assert model.count_params() == 203_530


def test_an_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="mlp has no variant 'pool'; expected one of dense256"):
        Mlp().build("pool", (28, 28, 1), 10)
