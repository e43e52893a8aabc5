"""An LLM teacher behind any OpenAI-compatible chat-completions endpoint (vLLM, NIM, hosted APIs).

Plain Python: one document in, one `Annotation` out, never an exception. A 429, a 5xx, a timeout, a
dropped or cut-short connection or an undecodable body is retried with exponential backoff
(honouring Retry-After); an answer that is not the rubric's JSON, or is out of range, is an error
row that a later run retries. A circuit breaker shared by all threads gives up on an endpoint that
has failed `breaker_after` transport attempts in a row and answered nothing for `breaker_s`
seconds: later calls return at once, and `broken` says why.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

import requests

from climb_spark.rubric import CRITERIA, MAX_SCORE, MIN_SCORE, describe

PROMPT_VERSION = "climb-rubric-v1"

SYSTEM_PROMPT = (
    f"You rate pretraining documents. Score each criterion from {MIN_SCORE} to {MAX_SCORE} by starting at "
    f"{MIN_SCORE} and adding one point for each condition the document meets.\n"
    + "\n".join(describe(c) for c in CRITERIA)
    + "\nAnswer with JSON only: " + json.dumps({c: "int" for c in CRITERIA}).replace('"int"', "int"))

_JSON_OBJECT = re.compile(r"\{.*?\}", re.S)


@dataclass
class Annotation:
    scores: dict[str, int] | None
    raw_response: str | None
    error: str | None
    attempts: int


def parse_scores(content: str) -> dict[str, int]:
    """The rubric's JSON from a model's answer (a fenced block or prose around it is tolerated)."""
    for candidate in _JSON_OBJECT.findall(content or ""):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and all(c in value for c in CRITERIA):
            break
    else:
        raise ValueError("no JSON object with the four rubric keys in the answer")
    scores = {}
    for c in CRITERIA:
        v = value[c]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            raise ValueError(f"{c} is {v!r}, not an integer")
        if not MIN_SCORE <= v <= MAX_SCORE:
            raise ValueError(f"{c}={int(v)} is outside {MIN_SCORE}-{MAX_SCORE}")
        scores[c] = int(v)
    return scores


class ChatTeacher:
    """Thread-safe: one HTTP session per thread."""

    def __init__(self, base_url: str, model: str, api_key: str | None, *, timeout_s: float = 60.0,
                 max_retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 max_chars: int = 6000, temperature: float = 0.0, breaker_after: int = 8,
                 breaker_s: float = 120.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_chars, self.temperature = max_chars, temperature
        self._local = threading.local()
        self.breaker_after, self.breaker_s = breaker_after, breaker_s
        self._lock = threading.Lock()
        self._failures = 0
        self._last_answer = time.monotonic()
        self.broken: str | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"ChatTeacher(url={self.url!r}, model={self.model!r})"

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def annotate(self, text: str) -> Annotation:
        body = {
            "model": self.model,
            "temperature": self.temperature,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": "Document:\n" + text[: self.max_chars]}],
        }
        last_error, made = "no attempt made", 0
        for attempt in range(1, self.max_retries + 2):
            if self.broken:
                if not made:
                    return Annotation(None, None, f"not sent: {self.broken}", 0)
                last_error += " (the endpoint's circuit breaker is open)"
                break
            made = attempt
            try:
                resp = self._session().post(self.url, json=body, headers=self._headers, timeout=self.timeout_s)
                payload = resp.text
            except requests.Timeout:
                last_error = f"timeout after {self.timeout_s:g}s"
                retry_after = None
                self._transport_failed(last_error)
            except requests.RequestException as err:  # refused, reset, cut short, undecodable body
                last_error = f"transport error: {type(err).__name__}"
                retry_after = None
                self._transport_failed(last_error)
            else:
                self._answered()
                if resp.status_code == 200:
                    return self._parse(payload, attempt)
                last_error = f"HTTP {resp.status_code}: {payload[:200]}"
                if resp.status_code != 429 and resp.status_code < 500:
                    return Annotation(None, payload[:2000], last_error, attempt)
                retry_after = _retry_after(resp)
            if attempt <= self.max_retries and not self.broken:
                delay = retry_after if retry_after is not None else self.backoff_s * 2 ** (attempt - 1)
                time.sleep(min(delay, self.max_backoff_s))
        return Annotation(None, None, f"gave up after {made} attempts: {last_error}", made)

    def _answered(self) -> None:
        with self._lock:
            self._failures, self._last_answer = 0, time.monotonic()

    def _transport_failed(self, error: str) -> None:
        with self._lock:
            self._failures += 1
            silent = time.monotonic() - self._last_answer
            if self._failures >= self.breaker_after and silent >= self.breaker_s and not self.broken:
                self.broken = (f"{self.url} failed {self._failures} attempts in a row and answered nothing for "
                               f"{silent:.0f}s (last: {error})")

    def _parse(self, payload: str, attempt: int) -> Annotation:
        try:
            content = json.loads(payload)["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            return Annotation(None, payload[:2000], "response is not a chat completion", attempt)
        try:
            return Annotation(parse_scores(content), content, None, attempt)
        except ValueError as err:
            return Annotation(None, content[:2000], f"unparseable answer: {err}", attempt)


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None
