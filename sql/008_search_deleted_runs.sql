-- runs/search may read a run from the row of the param or tag its filter asks
-- for by equality (see the search compiler): that row carries the run's id,
-- experiment and start time, but not whether the run is deleted. Deleted runs
-- are few, so an index of those alone tells it for each candidate without
-- reading runs; active runs, written and updated all day, are not in it.
CREATE INDEX runs_not_active ON runs (run_id) WHERE lifecycle_stage <> 'active';
