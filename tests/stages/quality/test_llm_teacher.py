"""The LLM teacher client against a real local HTTP server speaking chat completions."""
import pytest

from climb_spark.stages.quality.llm_teacher import ChatTeacher, parse_scores
from tests.chat_server import ChatServer, DeadEndpoint


@pytest.fixture
def server():
    with ChatServer() as srv:
        yield srv


def teacher(server, **kw):
    opts = dict(timeout_s=0.5, max_retries=2, backoff_s=0.01)
    opts.update(kw)
    return ChatTeacher(server.base_url, "tiny-judge", server.api_key, **opts)


def test_parse_scores():
    good = parse_scores('Sure! {"quality": 3, "advertisement": 5, "informational_value": 2, "educational_value": 1.0}')
    assert good == {"quality": 3, "advertisement": 5, "informational_value": 2, "educational_value": 1}
    for bad, msg in [("no json here", "no JSON object"), ('{"quality": 1}', "no JSON object"),
                     ('{"quality": 6, "advertisement": 1, "informational_value": 1, "educational_value": 1}', "outside 0-5"),
                     ('{"quality": "3", "advertisement": 1, "informational_value": 1, "educational_value": 1}', "not an integer"),
                     ('{"quality": 2.5, "advertisement": 1, "informational_value": 1, "educational_value": 1}', "not an integer")]:
        with pytest.raises(ValueError, match=msg):
            parse_scores(bad)


def test_good_answer_and_fenced_json(server):
    ann = teacher(server).annotate("A plain document about rivers.")
    assert ann.error is None and ann.attempts == 1
    assert set(ann.scores) == {"quality", "advertisement", "informational_value", "educational_value"}


def test_429_and_timeout_are_retried(server):
    t = teacher(server)
    rate = t.annotate("RATELIMIT doc")
    assert rate.error is None and rate.attempts == 2 and server.count("RATELIMIT") == 2
    slow = t.annotate("SLOW doc")
    assert slow.error is None and slow.attempts == 2


def test_garbage_range_and_5xx_become_errors_not_exceptions(server):
    t = teacher(server)
    garbage = t.annotate("GARBAGE doc")
    assert garbage.scores is None and garbage.error.startswith("unparseable answer: no JSON object")
    assert garbage.raw_response == "I think this document is rather nice."
    rng = t.annotate("RANGE doc")
    assert rng.error == "unparseable answer: quality=7 is outside 0-5"
    broken = t.annotate("BROKEN doc")
    assert broken.error.startswith("gave up after 3 attempts: HTTP 500")
    assert server.count("BROKEN") == 3


def test_bad_key_is_not_retried_and_never_shown(server):
    t = ChatTeacher(server.base_url, "tiny-judge", "wrong-secret", max_retries=3, backoff_s=0.01)
    ann = t.annotate("doc")
    assert ann.error.startswith("HTTP 401") and ann.attempts == 1
    assert "wrong-secret" not in repr(t)


def test_cut_short_and_undecodable_answers_are_retried_not_raised(server):
    t = teacher(server)
    for marker in ("CUTSHORT", "BADGZIP"):
        ann = t.annotate(f"{marker} doc")
        assert ann.error is None and ann.attempts == 2 and server.count(marker) == 2, (marker, ann)
    # Failing every time, they end as an error row with the reason, never as an exception.
    always = teacher(server, max_retries=0)
    server.requests.clear()
    assert always.annotate("CUTSHORT again").error == "gave up after 1 attempts: transport error: ChunkedEncodingError"
    assert always.annotate("BADGZIP again").error == "gave up after 1 attempts: transport error: ContentDecodingError"


def test_a_dead_endpoint_opens_the_breaker_and_later_calls_return_at_once():
    import time

    with DeadEndpoint() as dead:
        t = ChatTeacher(dead.base_url, "m", None, timeout_s=0.2, max_retries=5, backoff_s=0.01,
                        breaker_after=3, breaker_s=0.3)
        started = time.monotonic()
        first = t.annotate("doc 1")
        assert first.error.startswith("gave up after") and "timeout after 0.2s" in first.error
        assert t.broken and "failed" in t.broken and "answered nothing" in t.broken
        later = t.annotate("doc 2")
        assert later.attempts == 0 and later.error.startswith("not sent: ")
        # Without the breaker the first document alone would take 6 x 0.2 s plus backoff.
        assert time.monotonic() - started < 1.2
