"""Pure logic shared by the Lambda handlers and the ``mdlc`` command line.

Nothing in this package calls AWS at import time or owns a client: handlers
pass clients in. It is bundled at the root of every function's code asset
and installed as the top-level package ``mdlc_core`` for the command line.
"""
