"""A rule-based stand-in for CLIMB's LLM teacher: the paper's 0-5 rubric from document signals.

Each criterion starts at 0 and gains a point per condition met, as the rubric does, with
conditions read off signals of the Gopher / C4 / FineWeb filters (character and stop-word
ratios, repetition, sentence structure, promotional vocabulary, URL density). It labels the
training data of the fastText students where no teacher endpoint exists; it is not a judge of
quality in its own right.
"""
from __future__ import annotations

import re
from collections import Counter

STOP_WORDS = frozenset(
    "the of and to a in is that it for as with was on be by this are or from at an which but not "
    "have has had they you he she we his her its their there were been can will would all one if "
    "so what when who more also than into only other some such these them then do does".split())
PROMO = frozenset(
    "buy sale sales discount discounts free offer offers click subscribe order shop shipping deal "
    "deals coupon coupons cheap price prices bargain limited exclusive bonus promo guarantee "
    "guaranteed winner win prize cash credit unsubscribe checkout cart bestseller".split())
EXPLAIN = frozenset(
    "because therefore thus hence which means meaning allows so since whereas although however "
    "consequently example instance defined definition called describes explains".split())
EDUCATION = frozenset(
    "learn learning study students student teach teaching lesson lessons example examples "
    "definition define explain explanation theory method methods function functions process "
    "chapter exercise history science concept concepts principle principles describe "
    "understand knowledge research analysis result results equation language grammar".split())
_WORD = re.compile(r"[A-Za-z']+")
_SENT = re.compile(r"[^.!?]+[.!?]")
_URL = re.compile(r"https?://|www\.")


def _signals(text: str) -> dict:
    words = [w.lower() for w in _WORD.findall(text)]
    n = len(words)
    chars = [c for c in text if not c.isspace()]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    trigrams = list(zip(words, words[1:], words[2:]))
    counts = Counter(words)
    sentences = [s for s in _SENT.findall(text) if len(s.split()) >= 3]
    return {
        "n": n,
        "alpha": sum(c.isalpha() for c in chars) / max(len(chars), 1),
        "upper": sum(c.isupper() for c in chars) / max(len(chars), 1),
        "stop": sum(counts[w] for w in STOP_WORDS) / max(n, 1),
        "mean_word": sum(map(len, words)) / max(n, 1),
        "dup_lines": 1 - len(set(lines)) / max(len(lines), 1),
        "dup_trigrams": 1 - len(set(trigrams)) / max(len(trigrams), 1),
        "terminated": sum(ln[-1] in ".!?:;\"')" for ln in lines) / max(len(lines), 1),
        "sentences": len(sentences),
        "facts": sum(1 for s in sentences if re.search(r"\b(is|are|was|were|has|have)\b", s) and len(s.split()) >= 8),
        "promo": (sum(counts[w] for w in PROMO) + text.count("!") / 2 + len(re.findall(r"[$€£]\s?\d", text)))
                 * 100 / max(n, 1),
        "urls": len(_URL.findall(text)) * 100 / max(n, 1),
        "explain": sum(counts[w] for w in EXPLAIN),
        "edu": sum(counts[w] for w in EDUCATION),
    }


def rubric_scores(text: str) -> dict[str, int]:
    """The four criteria of CLIMB's rubric, 0-5 each, for one document."""
    s = _signals(text)
    n = s["n"]
    prose = n >= 20 and s["alpha"] > 0.75
    quality = sum([
        prose and s["stop"] > 0.15,                                   # spelling, grammar
        s["sentences"] >= 2 and s["terminated"] > 0.5,                # coherent sentences
        n >= 20 and s["dup_trigrams"] < 0.2 and s["dup_lines"] < 0.3,  # not repetitive
        prose and 0.25 <= s["stop"] <= 0.65 and s["upper"] < 0.15,    # polished
        n >= 80 and 3.8 <= s["mean_word"] <= 7 and s["dup_trigrams"] < 0.1,  # professional
    ])
    promo = s["promo"] + 3 * s["urls"]
    advertisement = sum([promo < 8, promo < 4, promo < 2, promo < 1, promo == 0 and n >= 10])
    informational = sum([
        s["facts"] >= 1,
        s["facts"] >= 3,
        s["explain"] >= 2,
        n >= 150 and s["sentences"] >= 5,
        n >= 300 and s["facts"] >= 8 and s["explain"] >= 4,
    ])
    # Promotional text has no educational value whatever its vocabulary.
    educational = 0 if promo >= 4 else sum([
        prose and s["sentences"] >= 1,
        s["edu"] >= 1,
        s["edu"] >= 3 and s["explain"] >= 1,
        s["edu"] >= 5 and n >= 100,
        s["edu"] >= 8 and quality >= 4,
    ])
    return {"quality": int(quality), "advertisement": int(advertisement),
            "informational_value": int(informational), "educational_value": int(educational)}
