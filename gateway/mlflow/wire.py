"""MLflow's REST API as it travels: the path prefixes, the enums by number and by name,
and the tag keys MLflow reserves for itself."""

from __future__ import annotations

# ---- path prefixes ----
TRACKING_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
UI_PREFIX = "/ajax-api/2.0/mlflow"  # the web UI's own paths live only here
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
SERVER_INFO_PATHS = ("/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info")
# Where the artifact proxy's files are, in an http(s) artifact URI that points at a tracking server.
PROXIED_ARTIFACTS_ROUTE = "/api/2.0/mlflow-artifacts/artifacts/"

# ---- enums: protobuf numbers -> names ----
RUN_STATUSES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
VIEW_TYPES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}

# LoggedModelStatus: as stored (and numbered) -> as the wire shows it.
LOGGED_MODEL_STATUS_BY_NUMBER = {0: "UNSPECIFIED", 1: "PENDING", 2: "READY", 3: "FAILED"}
LOGGED_MODEL_WIRE_STATUS = {
    "UNSPECIFIED": "LOGGED_MODEL_STATUS_UNSPECIFIED",
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}
LOGGED_MODEL_STATUS_BY_WIRE = {wire: name for name, wire in LOGGED_MODEL_WIRE_STATUS.items()}

# Model version stages, in MLflow's spelling.
MODEL_STAGES = ("None", "Staging", "Production", "Archived")
ACTIVE_STAGES = ("Staging", "Production")

# ---- reserved tag keys ----
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
LOGGED_MODELS_TAG = "mlflow.log-model.history"
DATASET_CONTEXT_TAG = "mlflow.data.context"
CUSTOM_VIEW_TAG_PREFIX = "mlflow.customView.view"
TRACE_ARCHIVAL_RETENTION_TAG = "mlflow.trace.archivalRetention"
TRACE_ARCHIVE_NOW_TAG = "mlflow.trace.archiveNow"
PROMPT_TAG = "mlflow.prompt.is_prompt"
PROMPT_TEXT_TAG = "mlflow.prompt.text"
# The logged model's tag listing the versions registered from it.
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
