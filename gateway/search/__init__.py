"""Search: MLflow's filter and order_by grammar, parsed and compiled to parameterised SQL.

Pure: no I/O. The store runs the compiled statement and hands the rows back for
the next page token::

    query = compile_run_search(experiment_ids=[1], filter_string="metrics.loss < 0.5",
                               run_view_type="ACTIVE_ONLY", order_by=None,
                               max_results=100, page_token=None)
    rows = await connection.fetch(query.sql, *query.args)
    token = next_run_page_token(query, rows, 100)
    run_ids = [row["run_id"] for row in rows[:100]]
"""

from gateway.search.ast import Aggregate, Comparison, Entity, OrderKey
from gateway.search.experiments import compile_experiment_search, next_experiment_page_token
from gateway.search.runs import compile_run_filter, compile_run_search, next_run_page_token
from gateway.search.statements import CompiledQuery
from gateway.search.parser import (
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_run_filter,
    parse_run_order_by,
)

__all__ = [
    "Aggregate",
    "CompiledQuery",
    "Comparison",
    "Entity",
    "OrderKey",
    "compile_experiment_search",
    "compile_run_filter",
    "compile_run_search",
    "next_experiment_page_token",
    "next_run_page_token",
    "parse_experiment_filter",
    "parse_experiment_order_by",
    "parse_run_filter",
    "parse_run_order_by",
]
