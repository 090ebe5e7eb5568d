"""Prefect flows: thin shells that call radnerf's stage functions as tasks.

Defaults for a fresh machine, set before Prefect is imported: no server
(Prefect starts a temporary local one for the run), analytics off. A team
sets ``PREFECT_API_URL`` to its server and nothing here changes.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
