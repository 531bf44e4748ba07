"""``mcptb-relay``: parse settings, set up logging, run the server on the chosen backend.
``mcptb-relay usage`` reads the usage ledger instead."""

from __future__ import annotations

import sys

import anyio

from ._config import parse_args
from ._fd_budget import BudgetError
from ._log_setup import setup as setup_logging
from ._server import print_banner, serve
from ._socket import SocketSetupError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["usage"]:
        from ._usage_report import main as usage

        return usage(args[1:])
    config = parse_args(argv)
    setup_logging(config.log_level)
    try:
        anyio.run(serve, config, print_banner, backend=config.backend)
    except KeyboardInterrupt:
        pass
    except (SocketSetupError, BudgetError, OSError) as exc:
        print(f"mcptb-relay: {exc}", file=sys.stderr)
        return 1
    return 0
