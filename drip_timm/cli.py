"""What every command-line entry point shares: logging set-up, ``key=value`` flags and clear errors
instead of tracebacks."""
import ast
import logging
from typing import Any, Callable, Dict, List, Optional

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


def parse_kwargs(items: Optional[List[str]]) -> Dict[str, Any]:
    """``['compression=4', 'boundary_mode=uniform']`` -> ``{'compression': 4, 'boundary_mode': 'uniform'}``."""
    out = {}
    for item in items or []:
        if '=' not in item:
            raise ValueError(f'expected key=value, got {item!r}')
        key, value = item.split('=', 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out
