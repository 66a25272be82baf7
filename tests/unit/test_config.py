"""Settings → Config: defaults, precedence, and one clear line for every bad value."""

from pathlib import Path

import pytest

from preloader.config import SETTINGS, load_config
from preloader.errors import ConfigError

MINIMAL = {"OLLAMA_PRELOAD_MODELS": "llama3.2"}


def test_defaults_are_what_the_readme_promises() -> None:
    config = load_config(MINIMAL)
    assert config.host.base_url == "http://127.0.0.1:11434"
    assert [entry.text for entry in config.models] == ["llama3.2"]
    assert config.keep_alive is None  # the server's own default applies
    assert (config.num_predict, config.wait_timeout, config.warm_timeout) == (1, 300.0, 1800.0)
    assert (config.attempts, config.concurrency, config.pull) == (3, 1, "never")
    assert (config.best_effort, config.log_format, config.report_path) == (False, "text", None)
    assert config.api_key is None and config.max_loaded_models is None and config.warnings == ()


def test_every_setting_is_read_from_its_variable() -> None:
    config = load_config(
        {
            "OLLAMA_HOST": "ollama:11434",
            "OLLAMA_PRELOAD_MODELS": "a, b?num_ctx=8192",
            "OLLAMA_PRELOAD_KEEP_ALIVE": "-1",
            "OLLAMA_PRELOAD_NUM_PREDICT": "5",
            "OLLAMA_PRELOAD_WAIT_TIMEOUT": "90s",
            "OLLAMA_PRELOAD_WARM_TIMEOUT": "1h",
            "OLLAMA_PRELOAD_ATTEMPTS": "2",
            "OLLAMA_PRELOAD_CONCURRENCY": "4",
            "OLLAMA_PRELOAD_PULL": "missing",
            "OLLAMA_PRELOAD_BEST_EFFORT": "yes",
            "OLLAMA_PRELOAD_LOG_FORMAT": "JSON",
            "OLLAMA_PRELOAD_REPORT": "/tmp/r.json",
            "OLLAMA_API_KEY": "sk-secret",
            "OLLAMA_MAX_LOADED_MODELS": "2",
            "OLLAMA_PRELOAD_VERBOSE": "1",
        }
    )
    assert config.host.base_url == "http://ollama:11434"
    assert [entry.text for entry in config.models] == ["a", "b"]
    assert config.keep_alive is not None and config.keep_alive.wire == -1
    assert (config.num_predict, config.wait_timeout, config.warm_timeout) == (5, 90.0, 3600.0)
    assert (config.attempts, config.concurrency, config.pull, config.best_effort) == (2, 4, "missing", True)
    assert (config.log_format, config.report_path) == ("json", Path("/tmp/r.json"))
    assert (config.api_key, config.max_loaded_models, config.verbose) == ("sk-secret", 2, True)


def test_flags_take_precedence_over_the_environment() -> None:
    config = load_config({**MINIMAL, "OLLAMA_PRELOAD_NUM_PREDICT": "9"}, {"OLLAMA_PRELOAD_NUM_PREDICT": "3"})
    assert config.num_predict == 3


def test_a_bad_flag_is_blamed_on_the_flag_not_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(MINIMAL, {"OLLAMA_PRELOAD_PULL": "always"})
    assert caught.value.problems == ["--pull='always' is invalid; accepted: never or missing"]


@pytest.mark.parametrize("key", ["sk-one\nsk-two", "sk-\rx", "sk-\x00x"])
def test_an_api_key_with_a_control_character_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "OLLAMA_API_KEY": key})
    assert "OLLAMA_API_KEY contains a control character" in caught.value.problems[0]
    assert "sk-" not in str(caught.value)


def test_the_api_key_never_appears_in_the_configs_repr() -> None:
    assert "sk-secret" not in repr(load_config({**MINIMAL, "OLLAMA_API_KEY": "sk-secret"}))


def test_ollama_models_is_the_list_only_when_the_preload_list_is_empty() -> None:
    assert [e.text for e in load_config({"OLLAMA_MODELS": "a,b"}).models] == ["a", "b"]
    assert [e.text for e in load_config({"OLLAMA_MODELS": "a", "OLLAMA_PRELOAD_MODELS": "c"}).models] == ["c"]
    assert [e.text for e in load_config({"OLLAMA_MODELS": "a", "OLLAMA_PRELOAD_MODELS": " "}).models] == ["a"]


def test_ollama_models_is_not_consulted_when_the_preload_list_is_set() -> None:
    config = load_config({"OLLAMA_MODELS": "/root/.ollama/models", "OLLAMA_PRELOAD_MODELS": "llama3.2"})
    assert [entry.text for entry in config.models] == ["llama3.2"] and config.warnings == ()


@pytest.mark.parametrize("path", ["/root/.ollama/models", "~/.ollama/models", "./models", "../models", "."])
def test_ollama_models_that_looks_like_a_path_is_ignored_and_named_as_the_reason(path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"OLLAMA_MODELS": path})
    assert "models-directory" in caught.value.problems[0] and repr(path) in caught.value.problems[0]
    assert "no model listed" in caught.value.problems[1]


# Each row: settings, then what the single problem line must contain (the name, the value, what is accepted).
BAD_SETTINGS = [
    ({}, ["OLLAMA_PRELOAD_MODELS", "no model listed"]),
    ({"OLLAMA_PRELOAD_MODELS": " , \n"}, ["OLLAMA_PRELOAD_MODELS", "no model listed"]),
    ({"OLLAMA_PRELOAD_MODELS": "bad!name"}, ["invalid model name", "bad!name", "Ollama's name rules"]),
    ({"OLLAMA_PRELOAD_MODELS": "my.ns/model"}, ["namespace", "my.ns"]),
    ({"OLLAMA_PRELOAD_MODELS": "model:"}, ["tag part is empty"]),
    ({"OLLAMA_PRELOAD_MODELS": "llama3.2,llama3.2:latest"}, ["same model", "list each model once"]),
    ({"OLLAMA_PRELOAD_MODELS": "m?num_ctx"}, ["key=value"]),
    ({"OLLAMA_PRELOAD_MODELS": "m?keep_alive=1d"}, ['unknown unit "d"']),
    ({"OLLAMA_PRELOAD_NUM_PREDICT": "0"}, ["OLLAMA_PRELOAD_NUM_PREDICT='0'", "1 to 5"]),
    ({"OLLAMA_PRELOAD_NUM_PREDICT": "9"}, ["OLLAMA_PRELOAD_NUM_PREDICT='9'", "1 to 5"]),
    ({"OLLAMA_PRELOAD_NUM_PREDICT": "abc"}, ["OLLAMA_PRELOAD_NUM_PREDICT='abc'", "1 to 5"]),
    ({"OLLAMA_PRELOAD_NUM_PREDICT": "1.5"}, ["OLLAMA_PRELOAD_NUM_PREDICT='1.5'"]),
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "1d"}, ["OLLAMA_PRELOAD_KEEP_ALIVE='1d'", 'unknown unit "d"', "30m"]),
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "forever"}, ["OLLAMA_PRELOAD_KEEP_ALIVE='forever'", "invalid duration"]),
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "1.5"}, ["OLLAMA_PRELOAD_KEEP_ALIVE='1.5'"]),
    ({"OLLAMA_PRELOAD_WAIT_TIMEOUT": "soon"}, ["OLLAMA_PRELOAD_WAIT_TIMEOUT='soon'", "a duration from 1ms"]),
    ({"OLLAMA_PRELOAD_WAIT_TIMEOUT": "0"}, ["OLLAMA_PRELOAD_WAIT_TIMEOUT='0'", "must be positive"]),
    ({"OLLAMA_PRELOAD_WAIT_TIMEOUT": "-5m"}, ["OLLAMA_PRELOAD_WAIT_TIMEOUT='-5m'"]),
    ({"OLLAMA_PRELOAD_WARM_TIMEOUT": "10 minutes"}, ["OLLAMA_PRELOAD_WARM_TIMEOUT='10 minutes'"]),
    ({"OLLAMA_PRELOAD_PULL": "always"}, ["OLLAMA_PRELOAD_PULL='always'", "never or missing"]),
    ({"OLLAMA_PRELOAD_BEST_EFFORT": "maybe"}, ["OLLAMA_PRELOAD_BEST_EFFORT='maybe'", "true or false"]),
    ({"OLLAMA_PRELOAD_LOG_FORMAT": "xml"}, ["OLLAMA_PRELOAD_LOG_FORMAT='xml'", "text or json"]),
    ({"OLLAMA_PRELOAD_ATTEMPTS": "0"}, ["OLLAMA_PRELOAD_ATTEMPTS='0'", "1 to 10"]),
    ({"OLLAMA_PRELOAD_CONCURRENCY": "100"}, ["OLLAMA_PRELOAD_CONCURRENCY='100'", "1 to 16"]),
    ({"OLLAMA_MAX_LOADED_MODELS": "-1"}, ["OLLAMA_MAX_LOADED_MODELS='-1'", "an integer from 0 to"]),
    ({"OLLAMA_PRELOAD_REPORT": "/tmp/reports/"}, ["OLLAMA_PRELOAD_REPORT", "directory"]),
]


@pytest.mark.parametrize(("settings", "fragments"), BAD_SETTINGS)
def test_each_bad_value_gives_one_line_naming_it_and_what_is_accepted(
    settings: dict[str, str], fragments: list[str]
) -> None:
    env = {**MINIMAL, **settings} if "OLLAMA_PRELOAD_MODELS" not in settings and settings else settings
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert len(caught.value.problems) == 1, caught.value.problems
    for fragment in fragments:
        assert fragment in caught.value.problems[0]


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "OLLAMA_PRELOAD_NUM_PREDICT": "0", "OLLAMA_PRELOAD_PULL": "x"})
    assert len(caught.value.problems) == 2


def test_every_setting_has_a_flag_and_a_help_text() -> None:
    flags = [setting.flag for setting in SETTINGS]
    assert len(set(flags)) == len(flags)
    assert all(setting.flag.startswith("--") and setting.help for setting in SETTINGS)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OLLAMA_PRELOAD_ATTEMPTS", "\uff13"),
        ("OLLAMA_PRELOAD_ATTEMPTS", "\u0661"),
        ("OLLAMA_PRELOAD_CONCURRENCY", "1_0"),
        ("OLLAMA_PRELOAD_NUM_PREDICT", "1e0"),
        ("OLLAMA_MAX_LOADED_MODELS", "0x3"),
        ("OLLAMA_PRELOAD_WAIT_TIMEOUT", "1e3"),
        ("OLLAMA_PRELOAD_WARM_TIMEOUT", "1ns"),
        ("OLLAMA_PRELOAD_WAIT_TIMEOUT", "0.0001"),
        ("OLLAMA_PRELOAD_KEEP_ALIVE", "9999999999h"),
        ("OLLAMA_PRELOAD_KEEP_ALIVE", "9223372037"),
    ],
)
def test_numbers_follow_one_strict_ascii_grammar_per_kind(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, var: value})
    assert len(caught.value.problems) == 1 and var in caught.value.problems[0]


@pytest.mark.parametrize(("value", "attempts"), [("+3", 3), (" 3 ", 3), ("03", 3)])
def test_integers_may_carry_a_plus_sign_leading_zeros_and_surrounding_spaces(value: str, attempts: int) -> None:
    assert load_config({**MINIMAL, "OLLAMA_PRELOAD_ATTEMPTS": value}).attempts == attempts


@pytest.mark.parametrize(
    "host",
    ["http://user:hunter2@ollama:11434", "https://hunter2@ollama", "user:hunter2@ollama:11434", "'http://u:hunter2@h'"],
)
def test_a_host_carrying_credentials_is_refused_and_they_are_never_shown(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "OLLAMA_HOST": host})
    (problem,) = caught.value.problems
    assert "OLLAMA_HOST" in problem and "credentials" in problem and "hunter2" not in problem


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("ftp://ollama", "scheme 'ftp'"),
        ("unix:///run/ollama.sock", "scheme 'unix'"),
        ("tcp://ollama:11434", "scheme 'tcp'"),
        ("http://oll ama", "' '"),
        ("http://ollama/a?b", "'?'"),
        ("ollama#1", "'#'"),
    ],
)
def test_a_host_ollamas_go_client_could_not_use_is_refused(host: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "OLLAMA_HOST": host})
    (problem,) = caught.value.problems
    assert fragment in problem and repr(host) in problem


@pytest.mark.parametrize("host", ["HTTP://ollama", "https://ollama/prefix", "[::1]:11434", "ollama.com"])
def test_hosts_ollama_accepts_are_accepted(host: str) -> None:
    load_config({**MINIMAL, "OLLAMA_HOST": host})


@pytest.mark.parametrize("key", ["sk-caf\u00e9", "sk-\U0001f511", "sk-\u00a0x"])
def test_an_api_key_an_http_header_cannot_carry_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "OLLAMA_API_KEY": key})
    (problem,) = caught.value.problems
    assert "non-ASCII" in problem and "sk-" not in problem


def test_the_proxy_is_decided_once_in_the_config_as_gos_client_decides_it() -> None:
    env = {**MINIMAL, "OLLAMA_HOST": "http://ollama:11434", "HTTP_PROXY": "http://u:hunter2@proxy:3128"}
    config = load_config(env)
    assert config.proxy.url == "http://u:hunter2@proxy:3128" and config.proxy.variable == "HTTP_PROXY"
    assert "hunter2" not in repr(config)
    assert load_config({**env, "OLLAMA_HOST": "127.0.0.1:11434"}).proxy.url is None
    assert load_config({**MINIMAL, "OLLAMA_HOST": "ollama", "ALL_PROXY": "http://proxy:1"}).proxy.url is None


def test_an_unusable_proxy_is_a_config_error_and_one_go_cannot_parse_is_ignored_with_a_warning() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "OLLAMA_HOST": "ollama", "HTTP_PROXY": "socks5://u:hunter2@p:1"})
    assert "socks5" in caught.value.problems[0] and "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "OLLAMA_HOST": "ollama", "HTTP_PROXY": "http://u:hunter2@p:notaport"})
    assert "HTTP_PROXY" in caught.value.problems[0] and "hunter2" not in str(caught.value)
    config = load_config({**MINIMAL, "OLLAMA_HOST": "ollama", "HTTP_PROXY": "proxy host:1"})
    assert config.proxy.url is None and "HTTP_PROXY" in config.warnings[0]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("m?num_ctx=8k", "num_ctx='8k'"),
        ("m?num_ctx=8192.5", "integer"),
        ("m?seed=99999999999999999999", "integer"),
        ("m?temperature=warm", "temperature='warm'"),
        ("m?temperature=1e39", "number"),
        ("m?use_mmap=1", "true or false"),
        ("m?think=maybe", "think='maybe'"),
        ("m?think=1", "think='1'"),
        ("m?custom=1e999", "too large"),
    ],
)
def test_an_option_value_of_the_wrong_type_for_ollama_is_refused_up_front(entry: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"OLLAMA_PRELOAD_MODELS": entry})
    (problem,) = caught.value.problems
    assert fragment in problem


@pytest.mark.parametrize("flag", ["127.0.0.1:19464", ""], ids=["address", "empty-turns-it-off"])
def test_the_listen_flag_alone_decides_where_watch_mode_serves(flag: str) -> None:
    # Found on the real tier: the flag was ignored and a keeper bound 0.0.0.0:9464.
    config = load_config({"OLLAMA_PRELOAD_MODELS": "smollm2:135m"}, {"OLLAMA_PRELOAD_LISTEN": flag})
    assert config.listen == (("127.0.0.1", 19464) if flag else None)


def test_an_unset_listen_serves_on_the_default_address_and_an_empty_one_serves_nothing() -> None:
    assert load_config({"OLLAMA_PRELOAD_MODELS": "a"}).listen == ("0.0.0.0", 9464)
    assert load_config({"OLLAMA_PRELOAD_MODELS": "a", "OLLAMA_PRELOAD_LISTEN": ""}).listen is None
