"""The shared fixtures are a plugin module (tests/support/plugin.py); helpers are in tests/support/.

Gateways the suite starts run without ingest worker processes unless a test asks for them
(``ingest_workers=N``, or ``gateway run`` through tests/integration/test_cli_gateway_run.py's
``start``, which clears the variable): each worker is a fresh interpreter, about a second of
CPU to start, and most tests are about what the node decides, the same either way. The
workers' own suite is tests/unit/gateway/test_workers.py.
"""

import os

os.environ.setdefault("VITALCHAIN_GATEWAY_INGEST_WORKERS", "0")

pytest_plugins = ["tests.support.plugin"]
