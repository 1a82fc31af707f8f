"""orpo-dist: ORPO fine-tuning from one command, at every scale."""

import logging

__version__ = "0.1.0"

# bitsandbytes tries to fetch an optional CPU kernel from the hub at import and warns on every
# start when it can't (offline, or the `kernels` package absent); its built-in CPU path works.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
