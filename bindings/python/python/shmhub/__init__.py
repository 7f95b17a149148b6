# The package re-exports the extension module, `shmhub.shmhub` (built from
# ../../src), and takes its docstring; the type stubs of both are
# __init__.pyi. `_aio` is the asyncio waiting of `recv_async`, which the
# extension imports at the first call.

from .shmhub import *  # noqa: F403
from .shmhub import __all__, __doc__  # noqa: F401
