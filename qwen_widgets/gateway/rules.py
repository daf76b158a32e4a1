"""A class's prompt rules: words or regular expressions that stop a request before it is sent.

A teacher writes a rule as a word or phrase (`blood`, `real person`), matched whole-word and
case-insensitively, or as `re:` followed by a regular expression (`re:\\bgore\\w*`), matched
case-insensitively anywhere in the prompt. Only the prompt is checked: a negative prompt names
what the student does not want. The student reads one neutral sentence; the teacher's log
records which rule matched, so a false positive can be found and the rule fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["PromptRules", "compile_rule", "REFUSAL_MESSAGE"]

REFUSAL_MESSAGE = "this prompt is not allowed in this class; change it, or ask your teacher"
REGEX_PREFIX = "re:"
MAX_RULE_CHARS = 200


def compile_rule(rule: str) -> re.Pattern[str]:
    """The pattern of one rule; ValueError names what is wrong with it."""
    text = rule.strip()
    if not text:
        raise ValueError("a rule cannot be empty")
    if len(text) > MAX_RULE_CHARS:
        raise ValueError(f"a rule has at most {MAX_RULE_CHARS} characters (got {len(text)})")
    if text.startswith(REGEX_PREFIX):
        try:
            return re.compile(text[len(REGEX_PREFIX):], re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {text!r} ({exc})") from None
    # \b only works next to word characters: a rule like '18+' is bounded by whitespace instead
    left = r"\b" if re.match(r"\w", text[0]) else r"(?<!\S)"
    right = r"\b" if re.match(r"\w", text[-1]) else r"(?!\S)"
    words = r"\s+".join(re.escape(word) for word in text.split())
    return re.compile(f"{left}{words}{right}", re.IGNORECASE)


class PromptRules:
    """A class's rules, compiled once per check."""

    def __init__(self, rules: Iterable[str]):
        self._rules = [(rule, compile_rule(rule)) for rule in rules]

    def first_match(self, prompt: str) -> str | None:
        """The first rule (as the teacher wrote it) that `prompt` matches, or None."""
        for rule, pattern in self._rules:
            if pattern.search(prompt):
                return rule
        return None
