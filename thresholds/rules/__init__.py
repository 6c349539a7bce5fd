"""Business rules beside the models (issue 11 §2): block and allow lists, and rules over
the transaction and its features, loaded from a checked file and compiled once."""

from fraudstream.thresholds.rules.engine import (
    ACTIONS,
    DECISION_OF_ACTION,
    NO_RULES,
    NO_VERDICT,
    Action,
    Rule,
    RuleSet,
    RuleVerdict,
)
from fraudstream.thresholds.rules.fileformat import (
    DEFAULT_RULES_FILE,
    RulesError,
    load_rules,
    parse_rules,
)

__all__ = [
    "ACTIONS",
    "DECISION_OF_ACTION",
    "DEFAULT_RULES_FILE",
    "NO_RULES",
    "NO_VERDICT",
    "Action",
    "Rule",
    "RuleSet",
    "RuleVerdict",
    "RulesError",
    "load_rules",
    "parse_rules",
]
