-- runs/search ordered by end_time, status or the run name, read in order from
-- an index like the default order (sql/004), so the first page stops at the
-- page size instead of sorting every run of the experiment. Ties fall back to
-- the default order (start_time DESC with missing times last, then run_id),
-- which each index holds after the key (but the name's, below); with that tie
-- order fixed, ASC and DESC need an index each. The expressions are the ones
-- the search compiler emits. (start_time ASC reads sql/004's index backwards:
-- runs that share a start time are few, and PostgreSQL sorts only those.)
CREATE INDEX runs_by_experiment_end_time
    ON runs (experiment_id, (CASE WHEN end_time IS NULL THEN 1 ELSE 0 END), end_time,
             (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END), start_time DESC, run_id);
CREATE INDEX runs_by_experiment_end_time_desc
    ON runs (experiment_id, (CASE WHEN end_time IS NULL THEN 1 ELSE 0 END), end_time DESC,
             (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END), start_time DESC, run_id);

CREATE INDEX runs_by_experiment_status
    ON runs (experiment_id, (status COLLATE "C"),
             (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END), start_time DESC, run_id);
CREATE INDEX runs_by_experiment_status_desc
    ON runs (experiment_id, (status COLLATE "C") DESC,
             (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END), start_time DESC, run_id);

-- Run names have no length limit, and a btree entry holds at most 2704 bytes,
-- so the index holds the first 200 characters of each name. The compiler
-- orders by that prefix first and by the whole name after it, which is the
-- same order (collated "C", a prefix sorts like its value up to ties) and lets
-- PostgreSQL read the prefix's order from the index, sorting only among names
-- that share one. One index serves both directions (read backwards for DESC).
CREATE INDEX runs_by_experiment_name_prefix
    ON runs (experiment_id, (left(name, 200) COLLATE "C"));
