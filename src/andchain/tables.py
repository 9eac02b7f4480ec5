"""Every table andchain declares, on one MetaData: what migrations are checked against."""

from andchain.api import auth as _api_auth  # noqa: F401 - registers its table
from andchain.api import idempotency as _api_idempotency  # noqa: F401 - registers its table
from andchain.chains import schema as _chains_schema  # noqa: F401 - registers its tables
from andchain.compliance import schema as _compliance_schema  # noqa: F401 - registers its tables
from andchain.connect import schema as _connect_schema  # noqa: F401 - registers its tables
from andchain.custody import schema as _custody_schema  # noqa: F401 - registers its tables
from andchain.custody.kept import schema as _custody_kept_schema  # noqa: F401 - registers its tables
from andchain.db import metadata
from andchain.events import schema as _events_schema  # noqa: F401 - registers its tables
from andchain.ledger import schema as _ledger_schema  # noqa: F401 - registers its tables
from andchain.ops import schema as _ops_schema  # noqa: F401 - registers its tables
from andchain.reconcile_store import runs as _reconcile_runs  # noqa: F401 - registers its table
from andchain.tokens import schema as _tokens_schema  # noqa: F401 - registers its tables
from andchain.trading import risk as _trading_risk  # noqa: F401 - registers its table
from andchain.trading import schema as _trading_schema  # noqa: F401 - registers its tables

__all__ = ["metadata"]
