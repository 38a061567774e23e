-- Metric points in chunks. A series is a run's points of one key with one
-- logged model and dataset; it is stored as chunks, each holding many points as
-- three arrays (steps, timestamps, values) in (step, timestamp, value) order,
-- with the chunk's step and timestamp ranges, min and max value (NaN left out)
-- and point count beside them, so a reader can skip or count a chunk without
-- opening it. A flush lands each series it carries as a new small chunk; the
-- compactor merges a series' small chunks into sealed ones of a few thousand
-- points (gateway/store/compactor.py). An exact duplicate point is stored once:
-- writers decide it under the lock of the key's metric_summaries row, which the
-- compactor takes too.
CREATE SEQUENCE metric_chunk_id_seq;

CREATE TABLE metric_chunks (
    run_id          uuid NOT NULL,
    key             text NOT NULL,
    chunk_id        bigint NOT NULL DEFAULT nextval('metric_chunk_id_seq'),
    model_id        text,
    dataset_name    text,
    dataset_digest  text,
    first_step      bigint NOT NULL,
    last_step       bigint NOT NULL,
    first_timestamp bigint NOT NULL,  -- the least timestamp, wherever it is in the chunk
    last_timestamp  bigint NOT NULL,  -- the greatest
    min_value       double precision,
    max_value       double precision,
    point_count     integer NOT NULL,
    sealed          boolean NOT NULL DEFAULT false,
    steps           bigint[] NOT NULL,
    timestamps      bigint[] NOT NULL,
    metric_values   double precision[] NOT NULL,
    PRIMARY KEY (run_id, key, chunk_id)
);
-- The compactor's work list.
CREATE INDEX metric_chunks_unsealed ON metric_chunks (run_id, key) WHERE NOT sealed;
-- A logged model's metrics.
CREATE INDEX metric_chunks_by_model ON metric_chunks (model_id) WHERE model_id IS NOT NULL;

-- The arrays are read whole or by subscript; lz4 decompresses several times faster
-- than pglz, where the server is built with it.
DO $$
BEGIN
    ALTER TABLE metric_chunks ALTER COLUMN steps SET COMPRESSION lz4,
                              ALTER COLUMN timestamps SET COMPRESSION lz4,
                              ALTER COLUMN metric_values SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;

-- The row-per-point table of earlier releases stays readable until the compactor
-- has moved its rows into chunks, a (run, key) at a time.
ALTER TABLE metrics RENAME TO metric_rows;
ALTER INDEX metrics_point RENAME TO metric_rows_point;

-- Every series as chunks: the stored chunks, and the rows not yet converted, a chunk
-- per series (chunk_id NULL).
CREATE VIEW metric_series AS
SELECT run_id, key, chunk_id, model_id, dataset_name, dataset_digest, first_step, last_step,
       first_timestamp, last_timestamp, point_count, steps, timestamps, metric_values
FROM metric_chunks
UNION ALL
SELECT run_id, key, NULL, model_id, dataset_name, dataset_digest, min(step), max(step),
       min(timestamp), max(timestamp), count(*)::integer,
       array_agg(step ORDER BY step, timestamp, value),
       array_agg(timestamp ORDER BY step, timestamp, value),
       array_agg(value ORDER BY step, timestamp, value)
FROM metric_rows
GROUP BY run_id, key, model_id, dataset_name, dataset_digest;

-- Every point, a row each, as the table of earlier releases showed them.
CREATE VIEW metric_points AS
SELECT c.run_id, c.key, p.step, p.timestamp, p.value, c.model_id, c.dataset_name, c.dataset_digest
FROM metric_chunks c CROSS JOIN LATERAL unnest(c.steps, c.timestamps, c.metric_values) AS p(step, timestamp, value)
UNION ALL
SELECT run_id, key, step, timestamp, value, model_id, dataset_name, dataset_digest FROM metric_rows;
