-- runs/search ordered by a param, a tag or a metric's MIN/MAX, read in order
-- from an index so the first page stops after max_results matches instead of
-- sorting every candidate run.
--
-- A param or tag order ties often (a handful of distinct values), and ties
-- fall back to the default order (start_time DESC with missing times last,
-- then run_id), which lives on runs. Each params and run_tags row therefore
-- carries its run's experiment_id and start_time, both fixed when the run is
-- created, so one index holds the whole order within an experiment. Every
-- write joins runs for them.
ALTER TABLE params ADD COLUMN experiment_id bigint, ADD COLUMN start_time bigint;
ALTER TABLE run_tags ADD COLUMN experiment_id bigint, ADD COLUMN start_time bigint;

UPDATE params p SET experiment_id = r.experiment_id, start_time = r.start_time
FROM runs r WHERE p.run_id = r.run_id;
UPDATE run_tags t SET experiment_id = r.experiment_id, start_time = r.start_time
FROM runs r WHERE t.run_id = r.run_id;

-- A btree entry holds at most 2704 bytes, and values may be 6000 (params) or
-- 8000 (tags) characters, so the indexes hold the first 400 characters (at
-- most 1600 bytes, beside a key of at most 250 characters). That prefix sorts
-- like the whole value unless a longer value exists; the compiler checks that
-- with the small *_long_values indexes and sorts the slow way when one does.
-- One index per direction: ASC and DESC share the tie order, so a backward
-- scan of one cannot serve the other.
CREATE INDEX params_search_order ON params
    (experiment_id, key, left(value, 400) COLLATE "C", (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END),
     start_time DESC, run_id);
CREATE INDEX params_search_order_desc ON params
    (experiment_id, key, left(value, 400) COLLATE "C" DESC, (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END),
     start_time DESC, run_id);
CREATE INDEX params_long_values ON params (experiment_id, key) WHERE length(value) > 400;
CREATE INDEX run_tags_search_order ON run_tags
    (experiment_id, key, left(value, 400) COLLATE "C", (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END),
     start_time DESC, run_id);
CREATE INDEX run_tags_search_order_desc ON run_tags
    (experiment_id, key, left(value, 400) COLLATE "C" DESC, (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END),
     start_time DESC, run_id);
CREATE INDEX run_tags_long_values ON run_tags (experiment_id, key) WHERE length(value) > 400;

-- Without statistics on the length, PostgreSQL guesses a third of the rows are
-- long and answers "is any value long?" by a scan of the table.
CREATE STATISTICS params_value_length ON (length(value)) FROM params;
CREATE STATISTICS run_tags_value_length ON (length(value)) FROM run_tags;

-- The indexes above serve filters on a param or tag too (equality through the
-- prefix). The old (key, value) ones refused values too long for an entry.
DROP INDEX params_by_key;
DROP INDEX run_tags_by_key;

-- Metric values rarely tie; (key, value) already serves the latest value.
CREATE INDEX metric_summaries_by_min ON metric_summaries (key, min_value);
CREATE INDEX metric_summaries_by_max ON metric_summaries (key, max_value);

ANALYZE params, run_tags, metric_summaries;
