"""TinyBERT's uniform layer mapping, including non-multiples, and the width/heads checks."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from confdistill.distillation.mapping import check_compatible, layer_mapping
from confdistill.errors import InputError


@pytest.mark.parametrize(("m", "n"), [(1, 1), (2, 4), (3, 6), (4, 12), (6, 12), (12, 12), (2, 6)])
def test_multiples_follow_tinybert(m: int, n: int) -> None:
    k = n // m
    g = layer_mapping(m, n)
    assert g == [i * k for i in range(m + 1)]
    # TinyBERT's code: teacher attention index i*k + k - 1 (0-based) == g(i+1) - 1.
    assert [g[i + 1] - 1 for i in range(m)] == [i * k + k - 1 for i in range(m)]


def test_non_multiples_round_half_up() -> None:
    assert layer_mapping(4, 6) == [0, 2, 3, 5, 6]      # 1.5→2, 3, 4.5→5, 6
    assert layer_mapping(3, 4) == [0, 1, 3, 4]         # 1.33→1, 2.67→3, 4
    assert layer_mapping(5, 12) == [0, 2, 5, 7, 10, 12]  # 2.4, 4.8, 7.2, 9.6, 12


@pytest.mark.parametrize("n", range(1, 25))
def test_mapping_properties(n: int) -> None:
    for m in range(1, n + 1):
        g = layer_mapping(m, n)
        assert g[0] == 0 and g[-1] == n and len(g) == m + 1
        assert all(b > a for a, b in itertools.pairwise(g))  # strictly increasing: no layer reused
        assert all(abs(g[i] - i * n / m) <= 0.5 for i in range(m + 1))  # nearest to the ideal m·N/M


def test_student_deeper_than_teacher_is_input_error() -> None:
    with pytest.raises(InputError, match="wider than allowed by the mapping"):
        layer_mapping(7, 6)


def _cfg(layers: int, hidden: int, heads: int) -> SimpleNamespace:
    return SimpleNamespace(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads)


def test_check_compatible() -> None:
    assert check_compatible(_cfg(3, 128, 12), _cfg(6, 384, 12)) == [0, 2, 4, 6]
    with pytest.raises(InputError, match="wider than allowed"):
        check_compatible(_cfg(3, 768, 12), _cfg(6, 384, 12))
    with pytest.raises(InputError, match="heads"):
        check_compatible(_cfg(3, 128, 4), _cfg(6, 384, 12))
