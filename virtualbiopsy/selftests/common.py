"""What every module's self-test checks share: a small seeded study and the bad-input check."""

from __future__ import annotations

from functools import lru_cache

from virtualbiopsy.phantom import generate_study


@lru_cache(maxsize=2)
def small_study(seed: int = 7):
    """A coarse, quick study (about a second) for self-tests."""
    return generate_study(seed, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0))


def expect_error(context, error_type, action, *words: str) -> str:
    """Run ``action``; it must raise ``error_type`` mentioning ``words`` and add no node."""
    before = context.node_ids()
    try:
        action()
    except error_type as error:
        message = str(error)
        missing = [w for w in words if w.lower() not in message.lower()]
        assert not missing, f"error message {message!r} does not mention {missing}"
        assert context.node_ids() == before, "a failed step left new nodes in the scene"
        return message
    raise AssertionError(f"{error_type.__name__} was not raised")
