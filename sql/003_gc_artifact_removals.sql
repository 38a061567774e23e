-- Artifact locations whose runs or logged models `gateway gc` has removed from the
-- database but whose files it has not yet removed. A row is written in the same
-- transaction that removes the run or model and deleted once its files are gone,
-- so files left behind by an interrupted gc, or by storage that refused, are
-- found and removed by the next gc. Keyed by the owner's id, not by run_id: these
-- rows outlive the run on purpose.
CREATE TABLE gc_artifact_removals (
    owner_id     text PRIMARY KEY,  -- a run id (32 hex) or a logged model id ("m-...")
    owner_kind   text NOT NULL,     -- 'run' or 'logged_model'
    artifact_uri text NOT NULL,
    removed_time bigint NOT NULL    -- when the rows were removed (ms since the epoch)
);
