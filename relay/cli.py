"""``mcptb-relay``: parse settings, set up logging, run the server on the chosen backend."""

from __future__ import annotations

import logging
import sys

import anyio

from ._config import parse_args
from ._fd_budget import BudgetError
from ._server import print_banner, serve
from ._socket import SocketSetupError


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        anyio.run(serve, config, print_banner, backend=config.backend)
    except KeyboardInterrupt:
        pass
    except (SocketSetupError, BudgetError, OSError) as exc:
        print(f"mcptb-relay: {exc}", file=sys.stderr)
        sys.exit(1)
