"""Prefect flows and tasks that wire the stages into rounds and campaigns.

The only package that imports Prefect. Without ``PREFECT_API_URL`` Prefect starts its
ephemeral API in-process; on a loaded laptop that start can take longer than Prefect's
default wait, so gnomon allows it more time unless the user chose a value. Prefect's usage
analytics are off, server and client, unless the user turned them on: gnomon sends nothing
anywhere at run time.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# nor does its client: no usage data sent, and no first-run notice about it on the terminal
os.environ.setdefault("DO_NOT_TRACK", "1")
