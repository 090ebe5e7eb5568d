"""Prefect flows: thin shells that call radnerf's stage functions as tasks.

Defaults for a fresh machine, set before Prefect is imported: no server
(Prefect starts a temporary local one for the run), analytics off. A team
sets ``PREFECT_API_URL`` to its server and nothing here changes. The
repository's ``prefect.toml`` turns analytics off for every ``prefect``
command run from the checkout (``prefect server start``, a worker); these
defaults cover ``radnerf demo`` run from any folder.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The temporary server migrates a fresh database on its first start, which
# takes longer than Prefect's 20 s default on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
