"""Helpers the tests share: stand-in worlds, stored rows, a local Slack webhook and Stripe's example objects.

They live apart from the test modules so that a test imports them by one stable path, and apart from the
production packages so that nothing shipped depends on them.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def stripe_fixtures() -> Path:
    """Stripe's example of every API object, kept beside the tests so they run from any checkout."""
    return FIXTURES / "stripe" / "fixtures3.json"
