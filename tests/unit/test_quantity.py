"""resource.Quantity parsing, canonical form and int accessors, against the
values upstream's own quantity_test.go and a real API server produce."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kubeling.api.quantity import QuantityError, cpu_millis, format_canonical, parse_quantity, to_bytes

FORMAT_WRONG = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


@pytest.mark.parametrize("text, value", [
    ("0", "0"),
    ("100m", "0.1"),
    ("0.5", "0.5"),
    ("1", "1"),
    ("2k", "2000"),
    ("1M", "1000000"),
    ("3G", "3e9"),
    ("1E", "1e18"),
    ("5n", "5e-9"),
    ("7u", "7e-6"),
    ("1Ki", "1024"),
    ("128Mi", "134217728"),
    ("1.5Gi", "1610612736"),
    ("2Ti", str(2 * 2**40)),
    ("1Ei", str(2**60)),
    ("1e3", "1000"),
    ("1E3", "1000"),
    ("1e-3", "0.001"),
    ("1.5e+3", "1500"),
    ("-1.5", "-1.5"),
    ("+2", "2"),
    (".5", "0.5"),
    ("5.", "5"),
    ("1.G", "1e9"),  # upstream accepts a bare trailing dot
    ("-", "0"),       # ... and a bare sign
    ("0.9n", "1e-9"),  # rounded up to a whole nano
    ("1e-20", "1e-9"),
    ("8Ei", str(2**63 - 1)),  # binary quantities are capped
    ("18446744073709551616", "18446744073709551616"),  # decimal ones are not
])
def test_parse_value(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


def test_huge_exponent_is_cheap() -> None:
    assert parse_quantity("1e999999999") == Decimal("1e999999999")
    assert parse_quantity("1e-999999999") == Decimal("1e-9")


@pytest.mark.parametrize("text, message", [
    ("", FORMAT_WRONG),
    ("abc", FORMAT_WRONG),
    ("1.2.3", FORMAT_WRONG),
    ("1 ", FORMAT_WRONG),
    (" 1", FORMAT_WRONG),
    ("1e", "unable to parse quantity's suffix"),
    ("1K", "unable to parse quantity's suffix"),
    ("1ki", "unable to parse quantity's suffix"),
    ("1mi", "unable to parse quantity's suffix"),
    ("1e+", "unable to parse quantity's suffix"),
    ("e-20", "unable to parse numeric part of quantity"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as e:
        parse_quantity(text)
    assert str(e.value) == message


@pytest.mark.parametrize("text, canonical", [
    ("0", "0"),
    ("0m", "0"),
    ("0.5", "500m"),
    ("1000m", "1"),
    ("100m", "100m"),
    ("1.5", "1500m"),
    ("1500000", "1500k"),
    ("1000k", "1M"),
    ("1.5Gi", "1536Mi"),
    ("1024Ki", "1Mi"),
    ("1025Ki", "1025Ki"),
    ("1Mi", "1Mi"),
    ("512Mi", "512Mi"),
    ("1.5Ki", "1536"),  # binary below 1024 or fractional falls back to decimal
    ("0.0001Ki", "102400u"),
    ("1.1Ki", "1126400m"),
    ("8Ei", "9223372036854775807"),
    ("1e3", "1e3"),
    ("1.5e3", "1500"),
    ("12e6", "12e6"),
    ("1e-100", "1e-9"),
    ("1000E", "1e21"),  # beyond "E" there is no decimal suffix
    ("-1.5", "-1500m"),
    ("+1Mi", "+1Mi"),  # already canonical after the sign: upstream keeps the input
    ("0500m", "0500m"),
])
def test_canonical(text: str, canonical: str) -> None:
    assert format_canonical(text) == canonical


@pytest.mark.parametrize("text, millis", [
    ("100m", 100), ("0.5", 500), ("1", 1000), ("2", 2000), ("0.0001", 1), ("1n", 1),
    ("250m", 250), ("1.2345m", 2), ("-0.0001", -1),
])
def test_cpu_millis_rounds_up(text: str, millis: int) -> None:
    assert cpu_millis(text) == millis


@pytest.mark.parametrize("text, value", [
    ("128Mi", 134217728), ("1Gi", 1073741824), ("1k", 1000), ("1.5", 2), ("100m", 1), ("0", 0),
    ("-1.5", -2), ("1e999999999", 2**63 - 1),
])
def test_to_bytes_rounds_up(text: str, value: int) -> None:
    assert to_bytes(text) == value
