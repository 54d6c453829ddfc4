"""Imports every table module so SQLModel.metadata (and Alembic) sees the whole schema.

Add a module here when it defines tables.
"""

import integrations.stripe.meters  # noqa: F401
import integrations.stripe.models  # noqa: F401
import metrics.ledger  # noqa: F401
import metrics.runs  # noqa: F401
import worker.alert_state  # noqa: F401
import worker.backtest_store  # noqa: F401
import worker.derived_store  # noqa: F401
import worker.models  # noqa: F401
import worker.risk_store  # noqa: F401
import worker.runlog  # noqa: F401
import worker.watch_state  # noqa: F401
