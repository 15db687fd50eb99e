"""The provider mechanism in-process: the runner returns at the deadline, retry's one event
schema and one give-up message, one group per fetch key."""

from __future__ import annotations

import io
import json
import re
import threading

import pytest

from shim.delivery.audit import Log
from shim.tools.deadline import Deadline
from shim.tools.errors import NotFound, Unavailable
from shim.providers.mechanism import (
    SLACK, Transient, by_fetch_key, call_within, retry, run_concurrently,
)
from shim.syntax.refs import parse_reference


def test_the_runner_returns_at_the_deadline_whatever_a_job_does():
    release = threading.Event()
    deadline = Deadline(0.3)
    jobs = [lambda: "fast", release.wait, lambda: (_ for _ in ()).throw(NotFound("gone"))]
    try:
        results = run_concurrently(jobs, deadline, title="Example")
    finally:
        release.set()
    assert deadline.expired()
    assert results[0] == "fast"
    assert isinstance(results[1], Unavailable)
    assert results[1].message == "Example: no answer within the deadline"
    assert isinstance(results[2], NotFound)
    worker_threads = [t for t in threading.enumerate() if t.name == "shim-provider"]
    assert all(t.daemon for t in worker_threads)  # an abandoned job never holds the exit


def test_a_bug_in_a_job_is_raised_in_the_caller():
    def broken():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_concurrently([broken], Deadline(5), title="Example")


def test_call_within_raises_the_outcome_error():
    with pytest.raises(Unavailable):
        call_within(threading.Event().wait, Deadline(0.1), title="renewal")
    assert call_within(lambda: 7, Deadline(5), title="renewal") == 7
    assert SLACK <= 1.0


def test_retry_logs_one_schema_and_gives_up_with_one_message():
    stream = io.StringIO()
    attempts = []

    def attempt():
        attempts.append(1)
        raise Transient("HTTP 503")

    with pytest.raises(Unavailable) as caught:
        retry(attempt, Deadline(0.8), Log("json", "debug", stream=stream), provider="example",
              title="Example", operation="the read", hint="try later", reference="ref+x://a")
    assert re.fullmatch(rf"Example: HTTP 503 on every attempt \({len(attempts)}, 0\.\ds\) "
                        r"within the deadline", caught.value.message), caught.value.message
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    retries = [e for e in events if e["event"] == "provider.retry"]
    assert len(retries) == len(attempts) - 1 >= 1
    assert {"provider", "operation", "attempt", "reason", "wait", "reference"} <= set(retries[0])
    assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))


def test_retry_waits_at_least_a_retry_after_but_never_past_the_deadline():
    stream = io.StringIO()
    answers = [Transient("HTTP 429", retry_after=0.8), Transient("HTTP 429", retry_after=60)]

    def attempt():
        if answers:
            raise answers.pop(0)
        return "read"

    assert retry(attempt, Deadline(2.5), Log("json", "debug", stream=stream), provider="x",
                 title="X", operation="read", hint="") == "read"
    waits = [json.loads(line)["wait"] for line in stream.getvalue().splitlines()
             if json.loads(line)["event"] == "provider.retry"]
    assert len(waits) == 2
    assert waits[0] >= 0.8            # the store's Retry-After, above the first backoff (<= 0.25)
    assert waits[1] < 2.5             # a Retry-After beyond the deadline is cut to what is left


def test_retry_raises_what_is_not_transient_at_once():
    attempts = []

    def attempt():
        attempts.append(1)
        raise NotFound("gone")

    with pytest.raises(NotFound):
        retry(attempt, Deadline(5), Log("json", "debug", stream=io.StringIO()), provider="x",
              title="X", operation="read", hint="")
    assert len(attempts) == 1


def test_one_group_per_fetch_key():
    a = parse_reference("ref+vault://secret/app#/user")
    b = parse_reference("ref+vault://secret/app#/password")
    c = parse_reference("ref+vault://secret/other#/user")
    groups = by_fetch_key([a, b, c])
    assert list(groups.values()) == [[a, b], [c]]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _failing_for(seconds: float):
    """An attempt that fails with a Transient reason until `seconds` have passed, then answers."""
    import time
    end = time.monotonic() + seconds

    def attempt():
        if time.monotonic() < end:
            raise Transient("connection refused")
        return "answered"
    return attempt


def test_the_waiting_notice_rewrites_one_terminal_line_and_erases_it_at_the_end():
    terminal = _Terminal()
    log = Log("text", None, stream=terminal)              # the default level: warnings
    deadline = Deadline(20)
    reads = [lambda: retry(_failing_for(3.5), deadline, log, provider="example", title="Example",
                           operation="the read", hint="try later") for _ in range(8)]
    assert run_concurrently(reads, deadline, title="Example") == ["answered"] * 8
    text = terminal.getvalue()
    shown = re.findall(r"\r\x1b\[Kshim: waiting for Example \(the read\): connection refused; "
                       r"attempt \d+, retrying for \d+s more \(--deadline\)", text)
    assert 1 <= len(shown) <= 3, text                     # after the grace, once a second at most
    assert "\n" not in text and text.endswith("\r\x1b[K")  # one line, erased when answered


def test_the_waiting_notice_is_silent_for_a_short_wait_with_q_and_in_json():
    for log in (Log("text", None, stream=_Terminal()), Log("text", "error", stream=_Terminal()),
                Log("json", None, stream=io.StringIO())):
        seconds = 0.5 if log.threshold == 30 and log.format == "text" else 2.5
        retry(_failing_for(seconds), Deadline(20), log, provider="example", title="Example",
              operation="the read", hint="try later")
        assert "waiting for" not in log.stream.getvalue()
