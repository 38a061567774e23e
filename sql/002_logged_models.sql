-- MLflow 3 logged models: a model created by log_model (or create_external_model),
-- its params and tags, and the run outputs that point at it. A logged model is
-- keyed by its own id ("m-<32 hex>"), not by a run, so these tables are not
-- run-scoped; run_model_outputs leads with run_id like every run-scoped table.

CREATE TABLE logged_models (
    model_id                  text PRIMARY KEY,
    experiment_id             bigint NOT NULL,
    name                      text NOT NULL,
    artifact_location         text NOT NULL,
    creation_timestamp_ms     bigint NOT NULL,
    last_updated_timestamp_ms bigint NOT NULL,
    -- PENDING, READY, FAILED or UNSPECIFIED (MLflow's LoggedModelStatus names)
    status                    text NOT NULL DEFAULT 'PENDING',
    status_message            text,
    lifecycle_stage           text NOT NULL DEFAULT 'active',
    model_type                text,
    source_run_id             text
);
CREATE INDEX logged_models_by_experiment
    ON logged_models (experiment_id, creation_timestamp_ms DESC, model_id);

CREATE TABLE logged_model_params (
    model_id text NOT NULL,
    key      text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE logged_model_tags (
    model_id text NOT NULL,
    key      text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (model_id, key)
);

-- runs/outputs: the models a run produced, at a step.
CREATE TABLE run_model_outputs (
    run_id   uuid NOT NULL,
    model_id text NOT NULL,
    step     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, model_id, step)
);

-- A logged model's metrics are the points logged with its model_id; only those
-- rows enter this index, so plain metric floods do not pay for it.
CREATE INDEX metrics_by_model ON metrics (model_id, key, step, timestamp) WHERE model_id IS NOT NULL;
