"""Which tables hold rows that belong to one run, one logged model or one experiment.

gc removes such rows with what they belong to (:mod:`gateway.store.gc`), and on Citus
the run-scoped tables are distributed by run id beside ``runs``
(:mod:`gateway.store.distribution`).
"""

# Every table whose rows belong to one run (keyed by run_id), removed with the run.
# A new run-scoped table must be added here; tests/e2e/test_gc.py fails until it is.
RUN_SCOPED_TABLES = (
    "metric_chunks",
    "metric_rows",
    "metric_summaries",
    "params",
    "run_tags",
    "run_dataset_inputs",
    "run_model_inputs",
    "run_model_outputs",
    "run_versions",
)
# Every table whose rows belong to one logged model (keyed by model_id), removed with it.
LOGGED_MODEL_SCOPED_TABLES = ("logged_model_params", "logged_model_tags")
# Every table whose rows belong to one experiment, removed with the experiment
# (after its runs and logged models, which name it too).
EXPERIMENT_SCOPED_TABLES = ("experiment_tags",)
