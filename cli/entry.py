"""The ``kerasrecon`` console script's first lines: signal handlers before anything slow is imported.

Importing NumPy, Keras and TensorFlow takes seconds; a SIGINT or SIGTERM in that time must still end
the process with one line and the conventional status (130, 143), never a traceback. This module
imports only the standard library, installs the handlers, then imports and runs the command line.
"""

from __future__ import annotations

import signal
import sys


class Interrupted(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so temporary files are removed on the way out."""


def on_sigterm(signum, frame):
    """SIGTERM handler: raise :class:`Interrupted` wherever the process is."""
    raise Interrupted()


def interrupted_exit(exc: BaseException):
    """One line on stderr and exit 130 (SIGINT) or 143 (SIGTERM)."""
    sigterm = isinstance(exc, Interrupted)
    sys.stderr.write(
        f"kerasrecon: error: {'terminated (SIGTERM)' if sigterm else 'interrupted (SIGINT)'}; "
        "nothing half-written was kept\n"
    )
    sys.exit(143 if sigterm else 130)


def main(argv=None):
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        from kerasrecon_cli.main import main as run

        run(argv)
    except (KeyboardInterrupt, Interrupted) as exc:  # during the imports (the commands handle their own)
        interrupted_exit(exc)


if __name__ == "__main__":
    main()
