import sys

from .cli import main

try:
    sys.exit(main())
except (ValueError, OSError, FloatingPointError) as err:  # the message says what to do; no stack trace
    sys.exit(f"error: {err}")
