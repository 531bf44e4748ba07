"""The open-file budget: every HTTP connection and every worker connection holds one descriptor.

At start the relay raises its soft ``RLIMIT_NOFILE`` as far as its limits need (never past the hard
limit, nor past what the kernel allows one process: ``setrlimit`` refuses more, e.g. above
``kern.maxfilesperproc`` on macOS), so ``--max-connections`` + ``--max-workers`` + :data:`RESERVE`
descriptors fit. Where they cannot, ``--max-connections`` is lowered to fit and the relay says so at
start: connections beyond it get the usual 503 instead of an EMFILE. (``_accept`` still survives an
EMFILE caused by anything else.) :func:`plan` decides; :func:`apply` carries it out.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

RESERVE = 64
"""Descriptors kept for the listeners, stdio and logs, the event loop, a connection being refused
(it is accepted to be answered 503) and a helper thread's files."""


class BudgetError(Exception):
    pass


@dataclass(frozen=True)
class Budget:
    soft: int
    """The soft limit to set."""
    max_connections: int
    warning: str | None = None


def plan(soft: int, hard: int, max_connections: int, max_workers: int) -> Budget:
    needed = max_connections + max_workers + RESERVE
    if soft >= needed:
        return Budget(soft, max_connections)
    ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if ceiling >= needed:
        return Budget(ceiling, max_connections)
    fit = ceiling - max_workers - RESERVE
    if fit < 1:
        raise BudgetError(
            f"the open-file limit ({ceiling}, ulimit -n) leaves no room for HTTP connections next to "
            f"--max-workers {max_workers} and {RESERVE} descriptors the relay keeps: raise it (ulimit -n {needed}) "
            "or lower --max-workers"
        )
    return Budget(
        ceiling,
        fit,
        f"--max-connections lowered from {max_connections} to {fit} to stay within the open-file limit "
        f"{ceiling} (ulimit -n; {max_workers} go to workers, {RESERVE} are kept); raise it to {needed} for "
        f"{max_connections} connections",
    )


def apply(max_connections: int, max_workers: int) -> Budget:
    """Raise the soft limit as planned (or as far as the kernel lets us) and return the budget."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = plan(soft, hard, max_connections, max_workers)
    if budget.soft > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (budget.soft, hard))
        except (ValueError, OSError):  # above the per-process maximum: plan within what we have
            budget = plan(soft, soft, max_connections, max_workers)
    return budget
