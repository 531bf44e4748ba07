"""Waiting in tests for something another task or process will do: one helper, no hand-written loops.

:func:`eventually` polls a condition until it holds and returns its value; when the time is up the
test fails naming what it waited for and the last value seen. Never use a bare sleep to let a race
go one way: wait for the state that shows it went that way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Call ``check`` (sync or async) until it returns a truthy value; return that value."""
    last: Any = None
    with anyio.move_on_after(timeout):
        while True:
            value = check()
            last = await value if inspect.isawaitable(value) else value
            if last:
                return last  # type: ignore[no-any-return]
            await anyio.sleep(interval)
    raise AssertionError(
        f"not within {timeout:g} s: {what or getattr(check, '__name__', 'condition')} (last: {last!r})"
    )
