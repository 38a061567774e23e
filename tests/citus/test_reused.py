"""Tests of the suite run again, unchanged, on Citus (tests/citus/conftest.py): the stock client's
training loop and write rules, run and experiment lifecycle with bulk delete and restore, gc,
artifacts and logged models, the registry, the writer, and the search grammar against its
evaluator (fewer examples than on PostgreSQL)."""

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.e2e.test_artifacts import (  # noqa: F401
    artifact_gateway,
    artifact_root,
    client_uri,
    test_logged_models_search_by_dataset,
    test_run_artifacts_round_trip,
)
from tests.e2e.test_client_training_loop import (  # noqa: F401
    test_batch_param_conflict_lists_every_key_and_stores_nothing_of_the_batch,
    test_param_overwrite_is_refused_with_mlflow_error,
    test_training_loop_round_trip,
    test_writes_to_a_deleted_run_are_refused,
)
from tests.e2e.test_gc import own_gateway, test_gc_removes_what_was_deleted_before_the_cutoff_from_every_table  # noqa: F401
from tests.e2e.test_http_api import http, test_bulk_delete_and_restore_runs, test_metric_history_pages  # noqa: F401
from tests.e2e.test_model_registry import test_log_model_registers_and_loads_by_version_and_alias  # noqa: F401
from tests.e2e.test_run_lifecycle import (  # noqa: F401
    test_deleting_an_experiment_deletes_its_runs_and_restoring_brings_them_back,
)
from tests.integration import test_search_property
from tests.integration.conftest import pool  # noqa: F401
from tests.integration.test_search_property import database  # noqa: F401
from tests.integration.test_writer import (  # noqa: F401
    test_a_bad_write_fails_alone_and_its_neighbours_commit,
    test_interleaved_appends_and_retries_keep_every_point_once,
)

test_compiled_search_agrees_with_the_evaluator = settings(
    max_examples=8, deadline=None, phases=[Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture]
)(given(data=st.data())(test_search_property.test_compiled_search_agrees_with_the_evaluator.hypothesis.inner_test))
