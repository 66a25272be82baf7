"""Durations and keep-alive values, with Go's `time.ParseDuration` rules and error texts."""

import math

import pytest

from preloader.durations import DurationError, format_seconds, parse_go_duration, parse_keep_alive, parse_timeout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("-0", 0.0),
        ("5s", 5.0),
        ("30m", 1800.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("300ms", 0.3),
        ("10us", 1e-5),
        ("10\u00b5s", 1e-5),
        ("10\u03bcs", 1e-5),
        ("1ns", 1e-9),
        ("-1s", -1.0),
        ("+2m", 120.0),
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        (".s", 'time: invalid duration ".s"'),
        ("s", 'time: invalid duration "s"'),
        ("300", 'time: missing unit in duration "300"'),
        ("1h30", 'time: missing unit in duration "1h30"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("5 m", 'time: unknown unit " m" in duration "5 m"'),
        ("1H", 'time: unknown unit "H" in duration "1H"'),
    ],
)
def test_invalid_go_durations_fail_with_gos_own_message(text: str, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_go_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "wire", "seconds"),
    [
        ("-1", -1, math.inf),
        ("-300", -300, math.inf),
        ("0", 0, 0.0),
        ("300", 300, 300.0),
        (" 42 ", 42, 42.0),
        ("30m", "30m", 1800.0),
        ("-1s", "-1s", math.inf),
        ("1h30m", "1h30m", 5400.0),
        ("0s", "0s", 0.0),
    ],
)
def test_keep_alive_integers_go_on_the_wire_as_numbers_and_durations_as_strings(
    text: str, wire: int | str, seconds: float
) -> None:
    keep_alive = parse_keep_alive(text)
    assert keep_alive.wire == wire
    assert type(keep_alive.wire) is type(wire)
    assert keep_alive.seconds == seconds


@pytest.mark.parametrize("text", ["1d", "forever", "1.5", "", "-", "5 minutes", "500ms", "0.5s"])
def test_keep_alive_rejects_what_ollama_keep_alive_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_keep_alive(text)


def test_keep_alive_forever_and_unload_are_recognised() -> None:
    assert parse_keep_alive("-1").forever and parse_keep_alive("-1").describe() == "forever"
    assert parse_keep_alive("0").unloads and not parse_keep_alive("1").unloads


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("0.5", 0.5), ("5m", 300.0), ("1h", 3600.0)])
def test_timeouts_accept_seconds_or_durations(text: str, seconds: float) -> None:
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "-5m", "0s", "inf", "nan", "soon"])
def test_timeouts_must_be_positive_and_finite(text: str) -> None:
    with pytest.raises(DurationError):
        parse_timeout(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.004, "0.00 s"), (0.42, "0.42 s"), (9.994, "9.99 s"), (42.25, "42.2 s"), (300, "5m"), (3725, "1h2m5s")],
)
def test_seconds_are_formatted_for_people(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.mark.parametrize(
    "text",
    [
        "9999999999h",  # more nanoseconds than an int64 holds
        "2562048h",  # just past Go's maximum duration (2562047h47m16.854775807s)
        "9223372037s",
        "99999999999999999999ns",  # overflows while reading the digits
        "2562047h48m",  # overflows when the components are added
    ],
)
def test_durations_past_gos_int64_range_are_invalid_as_go_says(text: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_go_duration(text)
    assert str(caught.value) == f'time: invalid duration "{text}"'


@pytest.mark.parametrize(("text", "seconds"), [("2562047h", 2562047 * 3600.0), ("-9223372036s", -9223372036.0)])
def test_durations_at_the_edge_of_gos_range_still_parse(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == seconds


@pytest.mark.parametrize("text", ["\uff19s", "\u0661s", "1\u0661s"])
def test_durations_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(DurationError):
        parse_go_duration(text)


@pytest.mark.parametrize("text", ["9223372037", "-9223372037", "99999999999999999999"])
def test_keep_alive_seconds_whose_nanoseconds_overflow_int64_are_refused(text: str) -> None:
    with pytest.raises(DurationError, match="out of range"):
        parse_keep_alive(text)


@pytest.mark.parametrize("text", ["\uff11\uff10", "\u0661\u0660", "1_0", "1e3", "+1_0", "0x10"])
def test_keep_alive_integers_are_ascii_digits_only(text: str) -> None:
    with pytest.raises(DurationError):
        parse_keep_alive(text)


@pytest.mark.parametrize(("text", "seconds"), [("+2", 2.0), ("2.", 2.0), (".5", 0.5), (" 7 ", 7.0), ("1ms", 0.001)])
def test_timeouts_in_plain_seconds_follow_one_decimal_grammar(text: str, seconds: float) -> None:
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "1E3",
        "1_0",
        "\uff11\uff10",
        "\u0661\u0660",
        "0x10",
        "0.0001",
        "1ns",
        "999us",
        "9999999999h",
        "9223372037",
    ],
)
def test_timeouts_refuse_exponents_underscores_non_ascii_digits_tiny_and_huge_values(text: str) -> None:
    with pytest.raises(DurationError):
        parse_timeout(text)
