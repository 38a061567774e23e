-- The tracking schema. Every run-scoped table leads with run_id and has no
-- foreign key to another run-scoped table, so a deployment can distribute them
-- all by run_id (Citus) and keep every constraint.

CREATE SEQUENCE experiment_id_seq START WITH 1;

CREATE TABLE experiments (
    experiment_id     bigint PRIMARY KEY,
    name              text NOT NULL,
    artifact_location text NOT NULL,
    lifecycle_stage   text NOT NULL DEFAULT 'active',
    creation_time     bigint NOT NULL,
    last_update_time  bigint NOT NULL,
    CONSTRAINT experiments_name_unique UNIQUE (name)
);

CREATE TABLE experiment_tags (
    experiment_id bigint NOT NULL,
    key           text NOT NULL,
    value         text NOT NULL,
    PRIMARY KEY (experiment_id, key)
);

CREATE TABLE runs (
    run_id          uuid PRIMARY KEY,
    experiment_id   bigint NOT NULL,
    name            text NOT NULL DEFAULT '',
    user_id         text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'RUNNING',
    start_time      bigint,
    end_time        bigint,
    artifact_uri    text NOT NULL DEFAULT '',
    lifecycle_stage text NOT NULL DEFAULT 'active',
    -- when the run was deleted (ms since epoch); restore-runs selects by it
    deleted_time    bigint
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, start_time DESC, run_id);

-- Metric points: append-only, written by COPY. The unique index both serves
-- history reads by (run, key, step) and stores an exact duplicate point once.
-- NaN is stored as PostgreSQL's NaN (equal to itself in an index).
CREATE TABLE metrics (
    run_id         uuid NOT NULL,
    key            text NOT NULL,
    step           bigint NOT NULL,
    timestamp      bigint NOT NULL,
    value          double precision NOT NULL,
    model_id       text,
    dataset_name   text,
    dataset_digest text
);
CREATE UNIQUE INDEX metrics_point ON metrics (run_id, key, step, timestamp, value);

-- One row per (run, key): the latest point (greatest step, then timestamp, then
-- value), min and max over the non-NaN values (NULL while there is none), and
-- how many distinct points the key has. Search reads only these rows.
CREATE TABLE metric_summaries (
    run_id      uuid NOT NULL,
    key         text NOT NULL,
    step        bigint NOT NULL,
    timestamp   bigint NOT NULL,
    value       double precision NOT NULL,
    min_value   double precision,
    max_value   double precision,
    point_count bigint NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX metric_summaries_by_key ON metric_summaries (key, value);

CREATE TABLE params (
    run_id uuid NOT NULL,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX params_by_key ON params (key, value);

CREATE TABLE run_tags (
    run_id uuid NOT NULL,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_tags_by_key ON run_tags (key, value);

-- Dataset inputs logged to a run (runs/log-inputs), with their input tags.
CREATE TABLE run_dataset_inputs (
    run_id      uuid NOT NULL,
    name        text NOT NULL,
    digest      text NOT NULL,
    source_type text NOT NULL,
    source      text NOT NULL,
    schema      text,
    profile     text,
    tags        jsonb NOT NULL DEFAULT '[]',
    position    bigint NOT NULL,
    PRIMARY KEY (run_id, name, digest)
);

-- Model inputs of a run (MLflow 3: runs/log-inputs with models).
CREATE TABLE run_model_inputs (
    run_id   uuid NOT NULL,
    model_id text NOT NULL,
    PRIMARY KEY (run_id, model_id)
);

-- A new database has MLflow's "Default" experiment, with id 0.
INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, last_update_time)
VALUES (0, 'Default', 'mlflow-artifacts:/0',
        (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
        (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
