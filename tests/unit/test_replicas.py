"""Several replicas: the hosts list, resolution through an injected resolver, fan-out, per-replica output."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Sequence

import pytest

from preloader.config import load_config
from preloader.entries import parse_entry
from preloader.errors import ConfigError
from preloader.logs import EventLog
from preloader.replicas import LookupFailed, describe, in_parallel, resolve, resolve_within
from preloader.report import ModelRow, ReplicaRow, Report, model_rows, summary_lines
from preloader.results import WarmOutcome

MODELS = {"OLLAMA_PRELOAD_MODELS": "m"}


def config(**env: str):  # type: ignore[no-untyped-def]
    return load_config({**MODELS, **env})


# --- the hosts list -------------------------------------------------------------------------------------------


def test_hosts_are_split_on_commas_and_whitespace_and_each_read_like_ollama_host() -> None:
    cfg = config(OLLAMA_PRELOAD_HOSTS="ollama-a, ollama-b:8080\n http://10.0.0.3 [::1]:11434/prefix")
    assert [t.host.base_url for t in cfg.targets] == [
        "http://ollama-a:11434",
        "http://ollama-b:8080",
        "http://10.0.0.3:80",  # http://h means port 80, as in OLLAMA_HOST
        "http://[::1]:11434/prefix",
    ]
    assert cfg.per_replica


def test_hosts_replace_ollama_host_even_when_that_one_is_invalid() -> None:
    cfg = config(OLLAMA_HOST="ftp://nowhere", OLLAMA_PRELOAD_HOSTS="a,b")
    assert [t.host.base_url for t in cfg.targets] == ["http://a:11434", "http://b:11434"]
    assert cfg.host.base_url == "http://a:11434"


def test_one_target_without_resolution_is_not_labelled_by_replica() -> None:
    assert not config(OLLAMA_HOST="ollama").per_replica
    assert not config(OLLAMA_PRELOAD_HOSTS="ollama").per_replica
    assert config(OLLAMA_HOST="ollama", OLLAMA_PRELOAD_RESOLVE="all").per_replica


def test_the_same_server_listed_twice_in_two_spellings_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        config(OLLAMA_PRELOAD_HOSTS="ollama http://ollama:11434")
    (problem,) = caught.value.problems
    assert "'http://ollama:11434' is the same server as 'ollama'" in problem and "list each server once" in problem


def test_a_bad_entry_in_hosts_is_named_and_credentials_are_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        config(OLLAMA_PRELOAD_HOSTS="ok, ftp://bad, http://user:s3cret@host")
    text = "\n".join(caught.value.problems)
    assert "'ftp://bad'" in text and "OLLAMA_PRELOAD_HOSTS" in text
    assert "s3cret" not in text and "credentials" in text


@pytest.mark.parametrize("env", [{"OLLAMA_HOST": "https://ollama"}, {"OLLAMA_PRELOAD_HOSTS": "a https://b"}])
def test_resolving_an_https_target_to_addresses_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        config(OLLAMA_PRELOAD_RESOLVE="all", **env)
    assert "certificate" in caught.value.problems[0] and "OLLAMA_PRELOAD_HOSTS" in caught.value.problems[0]


def test_resolve_accepts_only_none_or_all() -> None:
    with pytest.raises(ConfigError) as caught:
        config(OLLAMA_PRELOAD_RESOLVE="some")
    assert "OLLAMA_PRELOAD_RESOLVE='some' is invalid; accepted: none or all" in caught.value.problems[0]


# --- resolution -------------------------------------------------------------------------------------------------


class Resolver:
    def __init__(self, answers: dict[str, Sequence[str] | Exception]) -> None:
        self.answers, self.asked = answers, []  # type: list[tuple[str, int]]

    def __call__(self, name: str, port: int) -> Sequence[str]:
        self.asked.append((name, port))
        answer = self.answers.get(name, [])
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_without_resolution_the_targets_are_the_replicas_and_nothing_is_looked_up() -> None:
    resolver = Resolver({})
    resolution = resolve(config(OLLAMA_PRELOAD_HOSTS="a b"), resolver)
    assert [r.url for r in resolution.replicas] == ["http://a:11434", "http://b:11434"]
    assert resolver.asked == []


def test_every_address_of_a_name_is_a_replica_with_the_targets_scheme_port_and_path() -> None:
    resolver = Resolver({"ollama": ["10.0.0.9", "fd00::2", "10.0.0.10", "10.0.0.9"]})
    resolution = resolve(config(OLLAMA_HOST="ollama:8080/api-prefix", OLLAMA_PRELOAD_RESOLVE="all"), resolver)
    assert [r.url for r in resolution.replicas] == [
        "http://10.0.0.9:8080/api-prefix",  # numeric order, each address once, IPv4 first
        "http://10.0.0.10:8080/api-prefix",
        "http://[fd00::2]:8080/api-prefix",
    ]
    assert {r.target for r in resolution.replicas} == {"http://ollama:8080/api-prefix"}
    assert resolver.asked == [("ollama", 8080)]
    assert "http://ollama:8080/api-prefix → 3 replica(s)" in describe(resolution)


def test_a_wildcard_host_is_looked_up_as_the_address_it_connects_to() -> None:
    resolver = Resolver({"127.0.0.1": ["127.0.0.1"]})
    resolution = resolve(config(OLLAMA_HOST="0.0.0.0:1234", OLLAMA_PRELOAD_RESOLVE="all"), resolver)
    assert [r.url for r in resolution.replicas] == ["http://127.0.0.1:1234"]


def test_a_name_without_address_is_unresolved_not_an_error_and_other_names_still_count() -> None:
    resolver = Resolver({"a": ["10.0.0.1"], "b": []})
    resolution = resolve(config(OLLAMA_PRELOAD_HOSTS="a b", OLLAMA_PRELOAD_RESOLVE="all"), resolver)
    assert [r.url for r in resolution.replicas] == ["http://10.0.0.1:11434"]
    (missing,) = resolution.unresolved
    assert (missing.target, missing.temporary) == ("http://b:11434", False)
    assert "b has no address" in missing.reason


def test_a_failed_lookup_is_temporary_and_says_why() -> None:
    resolver = Resolver({"a": LookupFailed("Temporary failure in name resolution")})
    (missing,) = resolve(config(OLLAMA_HOST="a", OLLAMA_PRELOAD_RESOLVE="all"), resolver).unresolved
    assert missing.temporary and "Temporary failure in name resolution" in missing.reason


def test_a_resolver_that_never_answers_is_given_up_on_at_the_lookup_deadline() -> None:
    never = threading.Event()

    def hanging(name: str, port: int) -> Sequence[str]:
        never.wait(10)
        return []

    start = time.monotonic()
    (missing,) = resolve(config(OLLAMA_HOST="a", OLLAMA_PRELOAD_RESOLVE="all"), hanging, timeout=0.2).unresolved
    never.set()
    assert time.monotonic() - start < 2
    assert missing.temporary and "no answer within" in missing.reason


def test_waiting_for_a_name_looks_it_up_again_until_it_has_an_address() -> None:
    answers: list[list[str]] = [[], [], ["10.0.0.1"]]

    def appearing(name: str, port: int) -> Sequence[str]:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    now = [0.0]
    resolution = resolve_within(
        config(OLLAMA_HOST="a", OLLAMA_PRELOAD_RESOLVE="all"),
        10.0,
        appearing,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert [r.url for r in resolution.replicas] == ["http://10.0.0.1:11434"] and not resolution.unresolved


def test_waiting_for_a_name_ends_at_the_deadline_with_it_unresolved() -> None:
    now = [0.0]
    resolution = resolve_within(
        config(OLLAMA_HOST="a", OLLAMA_PRELOAD_RESOLVE="all"),
        3.0,
        Resolver({}),
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + max(s, 0.25)),
    )
    assert not resolution.replicas and resolution.unresolved and now[0] >= 3.0


# --- fan-out ----------------------------------------------------------------------------------------------------


def test_work_for_every_replica_runs_at_once_and_results_keep_their_order() -> None:
    def slow(value: int) -> int:
        time.sleep(0.3)
        return value * 10

    start = time.monotonic()
    assert in_parallel(slow, [1, 2, 3, 4]) == [10, 20, 30, 40]
    assert time.monotonic() - start < 0.9  # four 0.3 s jobs one after the other would take 1.2 s


def test_a_failure_in_any_replicas_thread_reaches_the_caller() -> None:
    def work(value: int) -> int:
        if value == 2:
            raise RuntimeError("replica 2 broke")
        return value

    with pytest.raises(RuntimeError, match="replica 2 broke"):
        in_parallel(work, [1, 2, 3])


def test_a_single_replica_runs_in_the_callers_thread() -> None:
    assert in_parallel(lambda _: threading.current_thread() is threading.main_thread(), [0]) == [True]


# --- per-replica output ----------------------------------------------------------------------------------------


def outcome(model: str) -> WarmOutcome:
    return WarmOutcome(parse_entry(model), "warmed", kind="generate", seconds=1.0, load_seconds=0.5)


def rows_for(replica: str, ok: bool) -> tuple[ModelRow, ...]:
    outcomes = [outcome("a"), outcome("b")] if ok else [outcome("a")]
    return model_rows(["a", "b"], outcomes, {}, replica)


def test_the_table_has_a_replica_column_and_the_verdict_counts_models_and_replicas() -> None:
    rows = rows_for("http://r1:11434", True) + rows_for("http://r2:11434", True) + rows_for("http://r3:11434", False)
    report = Report(
        server="http://ollama:11434",
        server_version=None,
        waited_seconds=None,
        models=rows,
        exit_status=4,
        replicas=tuple(ReplicaRow(f"http://r{i}:11434", "0.11.4", 0.1, True) for i in (1, 2, 3)),
    )
    lines = summary_lines(report)
    assert lines[0].split()[:2] == ["REPLICA", "MODEL"]
    assert lines[-1] == (
        "preloader: 1 of 2 model(s) warmed and resident on 2 of 3 replica(s); not ready: b on http://r3:11434 (exit 4)"
    )
    document = report.to_json()
    assert [row["replica"] for row in document["models"]].count("http://r3:11434") == 2
    assert [replica["server"] for replica in document["replicas"]] == [f"http://r{i}:11434" for i in (1, 2, 3)]


def test_a_replica_that_never_answered_is_named_and_does_not_count_against_the_models() -> None:
    rows = rows_for("http://r1:11434", True) + model_rows(["a", "b"], [], {}, "http://r2:11434")
    report = Report(
        server="x",
        server_version=None,
        waited_seconds=None,
        models=rows,
        exit_status=3,
        note="1 of 2 replica(s) not ready",
        replicas=(
            ReplicaRow("http://r1:11434", "1", 0.1, True),
            ReplicaRow("http://r2:11434", None, None, False, "down"),
        ),
    )
    assert summary_lines(report)[-1] == (
        "preloader: 2 of 2 model(s) warmed and resident on 1 of 2 replica(s); not ready: http://r2:11434 "
        "(server not ready); 1 of 2 replica(s) not ready (exit 3)"
    )


def test_a_report_of_one_server_has_no_replica_fields() -> None:
    report = Report("http://o:11434", "1", 0.1, model_rows(["a"], [outcome("a")], {}), 0)
    document = report.to_json()
    assert "replicas" not in document and "replica" not in document["models"][0]
    assert summary_lines(report)[0].split()[0] == "MODEL"


def test_a_replicas_log_lines_name_it_in_text_and_carry_it_in_json() -> None:
    text, structured = io.StringIO(), io.StringIO()
    EventLog("text", text).for_replica("http://10.0.0.2:11434").info("warmed", "warmed in 1 s", model="a")
    EventLog("text", text).for_replica("http://10.0.0.2:11434").error("not-ready", "down")
    EventLog("json", structured).for_replica("http://10.0.0.2:11434").info("warmed", "warmed", model="a")
    assert text.getvalue().splitlines() == [
        "a on http://10.0.0.2:11434: warmed in 1 s",
        "preloader on http://10.0.0.2:11434: error: down",
    ]
    record = json.loads(structured.getvalue())
    assert (record["model"], record["replica"]) == ("a", "http://10.0.0.2:11434")
