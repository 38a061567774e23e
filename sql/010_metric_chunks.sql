-- Metric points in chunks. A series is a run's points of one key with one
-- logged model and dataset; it is stored as chunks, each holding many points as
-- three arrays in (step, timestamp, value) order: steps and timestamps as offsets
-- from the chunk's first step and timestamp (int4: 4 bytes a point each), values,
-- with the chunk's step and timestamp ranges, min and max value (NaN left out)
-- and point count beside them, so a reader can skip or count a chunk without
-- opening it. A flush lands each series it carries as a new small chunk; the
-- compactor merges a series' small chunks into sealed ones of a few thousand
-- points (gateway/store/compactor.py). An exact duplicate point is stored once:
-- writers decide it under the lock of the key's metric_summaries row, which the
-- compactor takes too.
CREATE SEQUENCE metric_chunk_id_seq;

CREATE TABLE metric_chunks (
    run_id            uuid NOT NULL,
    key               text NOT NULL,
    chunk_id          bigint NOT NULL DEFAULT nextval('metric_chunk_id_seq'),
    model_id          text,
    dataset_name      text,
    dataset_digest    text,
    first_step        bigint NOT NULL,
    last_step         bigint NOT NULL,
    first_timestamp   bigint NOT NULL,  -- the least timestamp, wherever it is in the chunk
    last_timestamp    bigint NOT NULL,  -- the greatest
    min_value         double precision,
    max_value         double precision,
    point_count       integer NOT NULL,
    sealed            boolean NOT NULL DEFAULT false,
    step_offsets      integer[] NOT NULL,  -- step - first_step
    timestamp_offsets integer[] NOT NULL,  -- timestamp - first_timestamp
    metric_values     double precision[] NOT NULL,
    PRIMARY KEY (run_id, key, chunk_id)
);
-- The chunks a flush's new points may meet: those ending at or after their first step.
CREATE INDEX metric_chunks_by_last_step ON metric_chunks (run_id, key, last_step);
-- The compactor's work list.
CREATE INDEX metric_chunks_unsealed ON metric_chunks (run_id, key) WHERE NOT sealed;
-- A logged model's metrics.
CREATE INDEX metric_chunks_by_model ON metric_chunks (model_id) WHERE model_id IS NOT NULL;

-- A point costs 16 bytes in the arrays, and PostgreSQL's compression (pglz) would
-- cost more CPU than a flush: the arrays are stored as they are, inline up to the
-- row size below (a flush's chunk) and out of line past it (a sealed chunk).
ALTER TABLE metric_chunks ALTER COLUMN step_offsets SET STORAGE EXTERNAL,
                          ALTER COLUMN timestamp_offsets SET STORAGE EXTERNAL,
                          ALTER COLUMN metric_values SET STORAGE EXTERNAL;
ALTER TABLE metric_chunks SET (toast_tuple_target = 8160);

-- The row-per-point table of earlier releases stays readable until the compactor
-- has moved its rows into chunks, a (run, key) at a time.
ALTER TABLE metrics RENAME TO metric_rows;
ALTER INDEX metrics_point RENAME TO metric_rows_point;

-- Every series as chunks: the stored chunks (arrays left out: read them from
-- metric_chunks), and the rows not yet converted, a chunk per series (chunk_id NULL)
-- with its steps, timestamps and values.
CREATE VIEW metric_series AS
SELECT run_id, key, chunk_id, model_id, dataset_name, dataset_digest, first_step, last_step,
       first_timestamp, last_timestamp, point_count,
       NULL::bigint[] AS steps, NULL::bigint[] AS timestamps, NULL::double precision[] AS metric_values
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
SELECT c.run_id, c.key, c.first_step + p.step_offset AS step, c.first_timestamp + p.timestamp_offset AS timestamp,
       p.value, c.model_id, c.dataset_name, c.dataset_digest
FROM metric_chunks c
CROSS JOIN LATERAL unnest(c.step_offsets, c.timestamp_offsets, c.metric_values) AS p(step_offset, timestamp_offset, value)
UNION ALL
SELECT run_id, key, step, timestamp, value, model_id, dataset_name, dataset_digest FROM metric_rows;
