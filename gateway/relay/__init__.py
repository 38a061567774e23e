"""`gateway relay`: a sidecar that takes a training job's write flood and feeds any MLflow server.

Writes are validated with MLflow's rules, acknowledged once durable in a local
SQLite spool, and forwarded upstream as few, full log-batch calls at a bounded
pace; every other call passes through to the upstream unchanged.

    spool.py      the durable queue (SQLite in WAL mode, one thread, group commit)
    batching.py   spooled entities to log-batch bodies within MLflow's limits (pure)
    upstream.py   the HTTP client of the upstream: credentials, pacing, calls
    knowledge.py  what the relay knows of runs (state, logged params) to answer at once
    forwarder.py  per-run queues, delivery, retries, splitting and dead letters
    app.py        the aiohttp application: write handlers, pass-through, /metrics
"""
