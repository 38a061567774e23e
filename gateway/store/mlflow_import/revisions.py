"""The alembic revisions of MLflow's schema the importer reads.

MLflow stamps its database with the alembic revision of its schema
(``alembic_version``). Accepted: the head of MLflow 2.22 (the last 2.x
release), every revision MLflow 3 added up to 3.17.2's head, and so the head of
every release in between. The tables the importer reads (experiments, runs,
metrics, params, tags, datasets and inputs, logged models, the registry) take
the same shape across them, but for columns it looks for by name (``inputs.step``
since 3.0, ``workspace`` in later 3.x releases).
"""

from __future__ import annotations

LAST_2X_HEAD = "0584bdc529eb"  # MLflow 2.22
HEAD = "dc11669786a5"  # MLflow 3.17.2

# In the order MLflow applies them.
KNOWN_REVISIONS = (
    "0584bdc529eb",  # add_cascading_deletion_to_datasets_from_experiments (2.22)
    "400f98739977",  # add_logged_model_tables (3.0)
    "6953534de441",  # add_step_to_inputs_table
    "bda7b8c39065",  # increase_model_version_tag_value_limit
    "cbc13b556ace",  # add_v3_trace_schema_columns
    "770bee3ae1dd",  # add_assessments_table
    "a1b2c3d4e5f6",  # add_spans_table
    "de4033877273",  # create_entity_associations
    "1a0cddfcaa16",  # add_webhooks_and_webhook_events_tables
    "534353b11cbc",  # add_scorer_table
    "71994744cf8e",  # add_evaluation_datasets
    "3da73c924c2f",  # add_outputs_to_dataset_record
    "bf29a5ff90ea",  # add_jobs_table
    "1bd49d398cd23",  # add_secrets_tables
    "b7c8d9e0f1a2",  # add_trace_metrics_table
    "5d2d30f0abce",  # update_job_table
    "c9d4e5f6a7b8",  # add_routing_strategy_to_endpoints
    "2c33131f4dae",  # add_online_scoring_configs_table
    "d3e4f5a6b7c8",  # add_display_name_to_endpoint_bindings
    "d0e1f2a3b4c5",  # add_experiment_id_to_endpoints
    "c8d9e0f1a2b3",  # add_span_metrics_and_dimension_attributes
    "1b5f0d9ad7c1",  # add_workspace_columns_and_catalog
    "e1f2a3b4c5d6",  # add_budget_policies_table
    "76601a5f987d",  # add_issues_table
    "c3d6457b6d8a",  # add_status_details_column_to_jobs_table
    "a5b4c3d2e1f0",  # add_metrics_run_key_step_index
    "ae8bbe7743c9",  # add_guardrails_tables
    "7d34483879f0",  # add_model_version_tags_workspace_index
    "da6fb0208061",  # add_workspaces_trace_archival_location
    "89d3d66ed43f",  # add_label_schemas_table
    "b7e4c1a90f23",  # add_review_queue_tables
    "a8b9c0d1e2f3",  # add_mcp_server_registry_tables
    "c1d2e3f4a5b6",  # add_span_experiment_start_time_index
    "c3d9e7f1a2b4",  # add_target_value_to_budget_policies
    "6f8d9c3b2a1e",  # add_experiment_fk_cascades
    "1971f2d9a75b",  # add_trace_archival_candidate_index
    "17e22815139b",  # increase_experiment_tag_value_limit
    "b7e2c1a4d9f3",  # add_jobs_creator
    "75868b020152",  # add_sql_trace_analytics_schema
    "dc11669786a5",  # add_job_executor_persistence_model (3.17.2)
)
