"""What every command-line entry point shares: logging set-up and clear errors instead of tracebacks."""
import logging
from typing import Any, Callable

USER_ERRORS = (FileNotFoundError, ValueError, RuntimeError, KeyError)


def run_cli(fn: Callable[[], Any], name: str) -> int:
    """Run ``fn``; a bad input (missing file, unknown model, ...) logs one ``error:`` line and gives exit code 2."""
    try:
        fn()
    except USER_ERRORS as e:
        logging.getLogger(name).error(f'error: {e}')
        return 2
    return 0


def setup_logging():
    logging.basicConfig(level=logging.INFO, format='%(message)s')
