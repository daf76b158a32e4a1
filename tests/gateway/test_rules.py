"""Prompt rules: whole words or phrases, case-insensitive; `re:` for regular expressions."""

from __future__ import annotations

import pytest

from qwen_widgets.gateway.rules import PromptRules, compile_rule


@pytest.mark.parametrize("rule, prompt, matches", [
    ("blood", "A BLOOD red sky", True),
    ("blood", "bloodhound in a field", False),  # a word, not a fragment
    ("real person", "a real   person smiling", True),
    ("real person", "a realistic person", False),
    ("18+", "poster, 18+ only", True),
    ("18+", "model x18+ poster", False),  # a word boundary needs space here
    ("re:gor(e|y)", "a gory scene", True),
    ("re:^draw", "please draw a dog", False),
    ("re:^draw", "Draw a dog", True),
])
def test_rule_matching(rule, prompt, matches):
    assert (PromptRules([rule]).first_match(prompt) == rule) is matches


def test_the_first_matching_rule_is_named():
    rules = PromptRules(["weapon", "re:b.ood", "blood"])
    assert rules.first_match("blood and a weapon") == "weapon"
    assert rules.first_match("blood") == "re:b.ood"
    assert rules.first_match("a kite") is None


@pytest.mark.parametrize("rule, words", [("re:(", "not a valid regular expression"), ("   ", "cannot be empty"),
                                         ("x" * 201, "at most 200")])
def test_bad_rules_say_what_is_wrong(rule, words):
    with pytest.raises(ValueError, match=words):
        compile_rule(rule)
