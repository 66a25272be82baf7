"""Model list entries: `name?key=value&...`, the format of Ollama's own preload proposal."""

import pytest

from preloader.entries import EntryError, parse_entry, split_model_list, typed_value


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("a", ["a"]),
        ("a,b", ["a", "b"]),
        ("a, b", ["a", "b"]),
        ("a b\tc", ["a", "b", "c"]),
        ("a\nb\n", ["a", "b"]),
        (" ,a,,b, ", ["a", "b"]),
        ("", []),
        (" \n ", []),
    ],
)
def test_lists_split_on_commas_and_any_whitespace(text: str, items: list[str]) -> None:
    assert split_model_list(text) == items


def test_entry_without_options_is_just_a_name() -> None:
    entry = parse_entry("llama3.2")
    assert (entry.text, entry.keep_alive, entry.prompt, entry.think, dict(entry.options)) == (
        "llama3.2",
        None,
        None,
        None,
        {},
    )


def test_request_fields_and_model_options_are_separated_and_typed() -> None:
    entry = parse_entry(
        "qwen3:0.6b?keep_alive=30m&prompt=Say+hi%21&think=high&num_ctx=8192&temperature=0.2&use_mmap=false&stop=END"
    )
    assert entry.text == "qwen3:0.6b"
    assert entry.keep_alive is not None and entry.keep_alive.wire == "30m"
    assert entry.prompt == "Say hi!"
    assert entry.think == "high"
    assert dict(entry.options) == {"num_ctx": 8192, "temperature": 0.2, "use_mmap": False, "stop": ["END"]}


def test_keepalive_is_accepted_as_a_spelling_of_keep_alive() -> None:
    entry = parse_entry("m?keepalive=-1")
    assert entry.keep_alive is not None and entry.keep_alive.forever


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("m?", "names no option"),
        ("m?num_ctx", "key=value"),
        ("m?num_ctx=", "has no value"),
        ("m?a=1&a=2", "given twice"),
        ("m?keep_alive=1&keepalive=2", "given twice"),
        ("m?keep_alive=1d", 'unknown unit "d"'),
        ("m?keep_alive=forever", "invalid duration"),
        ("m?think=3", "think="),
        ("m?1x=2", "not an identifier"),
        ("bad name?num_ctx=1", "invalid model name"),
        ("m?a=1&&b=2", "key=value"),
    ],
)
def test_malformed_entries_are_rejected_with_the_reason(text: str, fragment: str) -> None:
    with pytest.raises(EntryError) as caught:
        parse_entry(text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("FALSE", False),
        ("0", 0),
        ("-1", -1),
        ("8192", 8192),
        ("0.7", 0.7),
        ("-0.5", -0.5),
        ("1e-3", 0.001),
        ("q8_0", "q8_0"),
        ("1.2.3", "1.2.3"),
        ("yes", "yes"),
    ],
)
def test_option_values_are_typed_bool_int_float_or_string(text: str, value: object) -> None:
    typed = typed_value(text)
    assert typed == value and type(typed) is type(value)
