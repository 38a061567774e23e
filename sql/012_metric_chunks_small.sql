-- The compactor's work list while writes go on: the unsealed chunks small enough to be
-- worth merging (fewer than compactor.WORTH_MERGING_BELOW points). A flood of log-batch
-- calls writes none, so the compactor's rounds no longer read all its unsealed chunks.
CREATE INDEX metric_chunks_small ON metric_chunks (run_id, key) WHERE NOT sealed AND point_count < 100;
