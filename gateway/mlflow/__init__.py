"""MLflow's rules, written once: what a tracking server built to MLflow's REST API must accept,
refuse and say.

Every module here is pure: no I/O, no event loop, no aiohttp, no asyncpg. The HTTP layer
(:mod:`gateway.api`), the searches (:mod:`gateway.search`), the stores
(:mod:`gateway.store`) and the relay (:mod:`gateway.relay`) all import their limits,
messages and checks from here, so that a rule changes in one place.

- :mod:`~gateway.mlflow.limits`: sizes, counts and page limits, and the int64 range.
- :mod:`~gateway.mlflow.wire`: the REST prefixes, the enums as they travel, reserved tag keys.
- :mod:`~gateway.mlflow.messages`: the error messages shared by several checks.
- :mod:`~gateway.mlflow.numbers`: protobuf's JSON numbers (metric values, int64 fields, ids).
- :mod:`~gateway.mlflow.runs`: metric, param and tag keys and values, run ids, log-batch.
- :mod:`~gateway.mlflow.experiments`: experiment names, tags and custom views.
- :mod:`~gateway.mlflow.inputs`: datasets and their tags (log-inputs).
- :mod:`~gateway.mlflow.searches`: page sizes and the other request checks of searches.
- :mod:`~gateway.mlflow.page_tokens`: MLflow's offset page tokens.
- :mod:`~gateway.mlflow.registry`: registered models, versions, aliases, stages and sources.
"""
