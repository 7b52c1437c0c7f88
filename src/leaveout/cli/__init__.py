"""Command line: ``leaveout scores``, ``leaveout effect``, ``leaveout reproduce`` and
``leaveout datasets``.

The CLI only parses arguments (:mod:`.parser`), loads data, calls the library and writes the
answer (:mod:`.commands`); a user error ends in one line on stderr and a non-zero exit
status, never a traceback.
"""

from __future__ import annotations

import sys
import warnings

from .parser import UserError, build_parser, parse_index_list

__all__ = ["main", "build_parser", "parse_index_list", "UserError"]


def main(argv=None) -> int:
    from ..exceptions import ConvergenceError, ConvergenceWarning
    from .commands import COMMANDS
    parser = build_parser()
    args = parser.parse_args(argv)

    def one_line_warning(message, category, *rest, **kw):
        print(f"leaveout: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    warnings.simplefilter("always", ConvergenceWarning)
    try:
        COMMANDS[args.command](args)
    except BrokenPipeError:                 # the reader (e.g. `| head`) stopped reading: no message
        import io
        import os
        try:                                # keep the interpreter's final flush from failing too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        return 1
    except (UserError, ValueError, ConvergenceError, OSError, MemoryError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"leaveout: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("leaveout: interrupted; finished work is saved (rerun the same command to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
