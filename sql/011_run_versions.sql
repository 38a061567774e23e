-- A count of the committed changes to what runs/search shows of a run: its info,
-- latest metrics, params, tags, inputs and outputs. Every write to those bumps it in
-- its own transaction (a run without a row is at version 0), so a gateway may keep a
-- run's answer and give it again while the run's version is unchanged. A row of its
-- own, not a column of runs: flushes hold runs rows FOR SHARE, and two flushes of one
-- run would each wait for the other's share to update it.
CREATE TABLE run_versions (
    run_id  uuid PRIMARY KEY,
    version bigint NOT NULL
);
