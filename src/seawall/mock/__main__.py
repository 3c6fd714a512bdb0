"""``python -m seawall.mock [--port 0] [--error-rate 0.1] ...``: run the mock upstream standalone."""

from __future__ import annotations

import argparse

from seawall.mock.app import run_mock
from seawall.mock.args import add_mock_arguments, mock_config_from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seawall.mock", description=__doc__)
    add_mock_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = mock_config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    run_mock(config, args.host, args.port)


if __name__ == "__main__":
    main()
