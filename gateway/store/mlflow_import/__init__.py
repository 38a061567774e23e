"""`gateway import-mlflow`: copy an MLflow store (SQLite, PostgreSQL, MySQL or MariaDB) into the gateway's database.

Reads MLflow's own schema directly (no MLflow or SQLAlchemy needed) and keeps
every id, so run URLs, ``runs:/`` and ``models:/`` URIs and artifact locations
stay valid. See :func:`import_mlflow`.
"""

from gateway.store.mlflow_import.errors import ImportRefused
from gateway.store.mlflow_import.importer import ImportReport, MlflowImporter, import_mlflow
from gateway.store.mlflow_import.source import check_source, open_source

__all__ = ["ImportRefused", "ImportReport", "MlflowImporter", "check_source", "import_mlflow", "open_source"]
