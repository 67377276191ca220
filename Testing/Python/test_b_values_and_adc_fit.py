"""b-value checks and parsing, and the weighted mono-exponential ADC fit (virtualbiopsy.diffusion)."""

from __future__ import annotations

import numpy as np
import pytest

from virtualbiopsy.diffusion import check_b_values, fit_adc
from virtualbiopsy.errors import InputError


@pytest.mark.parametrize(
    ("b_values", "n", "words"),
    [([0, 800], 3, "one b-value per volume"), ([800, 800], 2, "two distinct"), ([0, -5], 2, ">= 0"),
     ([0, 0.8], 2, "units"), (["zero", 800], 2, "numbers")],
)
def test_bad_b_values_are_named(b_values, n, words):
    with pytest.raises(InputError, match=words):
        check_b_values(b_values, n)


def test_weighted_fit_recovers_adc_and_ignores_masked_and_non_positive():
    b = np.array([0.0, 50.0, 400.0, 800.0])
    adc = np.array([0.5e-3, 1.0e-3, 3.0e-3])
    signals = 800.0 * np.exp(-b[:, None] * adc[None, :])
    signals = np.concatenate([signals, np.array([[100.0], [0.0], [0.0], [0.0]])], axis=1)
    fitted, s0 = fit_adc(signals, b, mask=np.array([True, True, True, True]))
    np.testing.assert_allclose(fitted[:3], adc, rtol=1e-6)  # float32 maps
    np.testing.assert_allclose(s0[:3], 800.0, rtol=1e-6)
    assert fitted[3] == 0.0 and s0[3] == 0.0  # one positive signal: no fit, not a made-up number
    masked, _ = fit_adc(signals, b, mask=np.array([True, False, True, False]))
    assert masked[1] == 0.0 and masked[0] == pytest.approx(0.5e-3)


def test_b_values_are_parsed_from_comma_or_semicolon_text_and_words_refused():
    from virtualbiopsy.diffusion import parse_b_values

    assert parse_b_values(" 0, 50;400 ,800 ") == [0.0, 50.0, 400.0, 800.0]
    with pytest.raises(InputError, match="not numbers"):
        parse_b_values("0, fifty")
