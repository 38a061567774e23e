-- runs/search's default order (start_time DESC with missing times last, then
-- run_id) as an index, so the first page of an experiment is read in order
-- and the scan stops at the page size instead of sorting every run. The rank
-- expression is the one the search compiler emits.
CREATE INDEX runs_by_experiment_search_order
    ON runs (experiment_id, (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END), start_time DESC, run_id);
