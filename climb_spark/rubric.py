"""CLIMB's four quality criteria and their additive 0-5 rubric: one definition for the teachers
that score documents, the fastText students that learn from them and the tables that hold them."""
from __future__ import annotations

CRITERIA = ("quality", "advertisement", "informational_value", "educational_value")
MIN_SCORE, MAX_SCORE = 0, 5

# A document starts at 0 and gains one point per condition it meets (five per criterion).
CONDITIONS = {
    "quality": ("correct spelling and grammar", "coherent sentences", "natural, non-repetitive language",
                "polished", "professional-level writing"),
    "advertisement": ("minimal promotional elements", "promotion is subtle", "mostly neutral",
                      "at most one mild reference", "no promotional content at all"),
    "informational_value": ("at least one accurate fact", "several useful facts", "explains",
                            "substantial and well structured", "exceptional depth and authority"),
    "educational_value": ("basic educational relevance", "addresses education loosely",
                          "suitable for educational use", "highly relevant for structured learning",
                          "outstanding, clear educational value"),
}
# Said beside the name where the scale's direction is not the name's.
DIRECTION = {"advertisement": "higher means fewer ads"}


def describe(criterion: str) -> str:
    """`name (direction): condition; condition; ...` as the teacher's prompt states it."""
    label = f"{criterion} ({DIRECTION[criterion]})" if criterion in DIRECTION else criterion
    return f"{label}: {'; '.join(CONDITIONS[criterion])}."
