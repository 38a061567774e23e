-- MLflow's model registry: registered models, their versions, tags and aliases.
-- A registered model is keyed by a surrogate model_key so that renaming it is
-- one row's update; its versions, tags and aliases refer to it by that key.
-- None of these tables refers to the run tables (a version's run is plain text
-- in source_run_id), so the run tables stay free to be distributed by run id.

CREATE TABLE registered_models (
    model_key         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text COLLATE "C" NOT NULL UNIQUE,
    creation_time     bigint NOT NULL,
    last_updated_time bigint NOT NULL,
    description       text NOT NULL DEFAULT '',
    -- the highest version number ever given: versions are not reused after a delete
    last_version      integer NOT NULL DEFAULT 0
);

CREATE TABLE model_versions (
    model_key         bigint NOT NULL,
    version           integer NOT NULL,
    creation_time     bigint NOT NULL,
    last_updated_time bigint NOT NULL,
    -- NULL once an update left it out, as MLflow clears it then
    description       text,
    -- None, Staging, Production or Archived
    current_stage     text NOT NULL DEFAULT 'None',
    source            text NOT NULL,
    -- where the files are read from: the logged model's location for a models:/<id> source
    storage_location  text NOT NULL,
    -- MLflow's run_id of the version: the run its files came from, as the request gave it ('' when
    -- it gave none; NULL when taken from a logged model without a run). Not named run_id: that
    -- name marks the run-scoped tables, which this one is not.
    source_run_id     text,
    run_link          text NOT NULL DEFAULT '',
    PRIMARY KEY (model_key, version)
);
CREATE INDEX model_versions_by_run ON model_versions (source_run_id);
CREATE INDEX model_versions_by_update ON model_versions (last_updated_time DESC);

CREATE TABLE registered_model_tags (
    model_key bigint NOT NULL,
    key       text NOT NULL,
    value     text NOT NULL,
    PRIMARY KEY (model_key, key)
);

CREATE TABLE model_version_tags (
    model_key bigint NOT NULL,
    version   integer NOT NULL,
    key       text NOT NULL,
    value     text NOT NULL,
    PRIMARY KEY (model_key, version, key)
);

CREATE TABLE registered_model_aliases (
    model_key bigint NOT NULL,
    alias     text COLLATE "C" NOT NULL,
    version   integer NOT NULL,
    PRIMARY KEY (model_key, alias)
);
