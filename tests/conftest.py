from __future__ import annotations

import logging

# Crash tests log tracebacks on purpose; keep the output readable.
logging.getLogger("engine").setLevel(logging.CRITICAL)
