"""The registry searches' parser and compiler: MLflow's grammar and messages, values only as parameters."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidParameter
from gateway.mlflow.page_tokens import offset_token, start_offset
from gateway.mlflow.wire import PROMPT_TAG
from gateway.search.ast import Comparison, Entity
from gateway.search.registry import (
    RegistryOrder,
    compile_model_version_search,
    compile_registered_model_search,
    parse_model_version_filter,
    parse_model_version_order_by,
    parse_registered_model_filter,
    parse_registered_model_order_by,
)


def message_of(call, *args) -> str:
    with pytest.raises(InvalidParameter) as caught:
        call(*args)
    return caught.value.message


def test_registered_model_filter_clauses():
    clauses = parse_registered_model_filter("name LIKE 'a%' AND tags.`my tag` = \"x\" and name IN ('b', 'c')")
    assert clauses == (
        Comparison(Entity.ATTRIBUTE, "name", "LIKE", "a%", None, 0),
        Comparison(Entity.TAG, "my tag", "=", "x", None, 19),
        Comparison(Entity.ATTRIBUTE, "name", "IN", ("b", "c"), None, 43),
    )
    assert parse_registered_model_filter("") == ()
    assert parse_registered_model_filter(None) == ()


@pytest.mark.parametrize(
    ("filter_string", "message"),
    [
        ("name < 'a'", "Invalid comparator for attribute: <"),
        ("tags.t > 'a'", "Invalid comparator for tag: >"),
        ("tags.t IN ('a')", "Expected a quoted string value for tag (e.g. 'my-value'). Got value ('a')"),
        ("foo = 'a'", "Invalid attribute key 'foo' specified. Valid keys are '{'name'}'"),
        ("`name` = 'a'", "Invalid attribute key '`name`' specified. Valid keys are '{'name'}'"),
        ("name = 1", "Expected a quoted string value or a list of quoted string values for attributes. Got value 1"),
        ("tags.t = 1", "Expected a quoted string value for tag (e.g. 'my-value'). Got value 1"),
        ("tags.t = abc", "Parameter value is either not quoted or unidentified quote types used for string value "
                         "abc. Use either single or double quotes."),
        ("name = 'a' OR name = 'b'", "Invalid clause(s) in filter string: OR"),
        ("params.a = 'b'", "Invalid entity type 'params'. Valid entity types are ('attribute', 'tag', 'tags')"),
        ("name IN ()", "While parsing a list in the query, expected a non-empty list of string values, but got "
                       "empty list"),
        ("   ", "Invalid filter '   '. Could not be parsed."),
    ],
)
def test_registered_model_filter_errors(filter_string, message):
    assert message_of(parse_registered_model_filter, filter_string) == message


@pytest.mark.parametrize(
    ("filter_string", "message"),
    [
        ("version_number > 1.5", "Invalid value for numeric attribute 'version_number': 1.5"),
        ("version_number = 'abc'", "Invalid value for numeric attribute 'version_number': 'abc'"),
        ("version_number LIKE '1'", "Invalid comparator for attribute version_number: LIKE"),
        ("source_path IN ('a')", "Only ['name', 'run_id'] attributes support comparison with a list of quoted "
                                 "string values."),
        ("name = 5", "Only the '{'version_number', 'creation_timestamp', 'last_updated_timestamp'}' attributes "
                     "support comparison with numeric values."),
        ("run_id < 'a'", "Invalid comparator for attribute: <"),
        ("source_path NOT IN ('a')", "Only ['name', 'run_id'] attributes support comparison with a list of quoted "
                                     "string values."),
        ("current_stage = 'x'", "Invalid attribute key 'current_stage' specified. Valid keys are "
                                "'{'name', 'run_id', 'source_path', 'version_number'}'"),
    ],
)
def test_model_version_filter_errors(filter_string, message):
    assert message_of(parse_model_version_filter, filter_string) == message


def test_model_version_numbers_may_be_quoted():
    assert parse_model_version_filter("version_number = '2' AND run_id IN ('r1')") == (
        Comparison(Entity.ATTRIBUTE, "version_number", "=", 2, None, 0),
        Comparison(Entity.ATTRIBUTE, "run_id", "IN", ("r1",), None, 25),
    )


def test_order_by():
    assert parse_registered_model_order_by(None) == (RegistryOrder("name", True),)
    assert parse_registered_model_order_by(["timestamp DESC"]) == (
        RegistryOrder("last_updated_timestamp", False),
        RegistryOrder("name", True),
    )
    assert parse_model_version_order_by([]) == (
        RegistryOrder("last_updated_timestamp", False),
        RegistryOrder("name", True),
        RegistryOrder("version_number", False),
    )
    assert parse_model_version_order_by(["creation_timestamp"]) == (
        RegistryOrder("creation_timestamp", True),
        RegistryOrder("name", True),
        RegistryOrder("version_number", False),
    )
    assert message_of(parse_registered_model_order_by, ["creation_timestamp"]) == (
        "Invalid order by key 'creation_timestamp' specified. Valid keys are '{'name', 'timestamp'}'"
    )
    assert message_of(parse_registered_model_order_by, ["timestamp", "last_updated_timestamp DESC"]) == (
        "`order_by` contains duplicate fields: ['timestamp', 'last_updated_timestamp DESC']"
    )
    assert message_of(parse_model_version_order_by, ["tags.x"]) == (
        "Invalid order by key 'x' specified. Valid keys are "
        "{'creation_timestamp', 'last_updated_timestamp', 'name', 'version_number'}"
    )
    assert message_of(parse_model_version_order_by, ["name sideways"]) == (
        "Invalid ordering key in order_by clause 'name sideways'."
    )


def test_page_tokens_are_mlflows():
    token = offset_token(100)
    assert json.loads(base64.b64decode(token)) == {"offset": 100}
    assert token == base64.b64encode(b'{"offset": 100}').decode()
    assert start_offset(token) == 100
    assert start_offset(None) == 0
    assert message_of(start_offset, "abc") == "Invalid page token, could not base64-decode"
    zero = base64.b64encode(b'{"offset": 0}').decode()
    assert message_of(start_offset, zero) == "Invalid page token, parsed value={'offset': 0}"
    garbage = base64.b64encode(b"not json").decode()
    assert message_of(start_offset, garbage) == "Invalid page token, decoded value=b'not json'"


def test_compiled_model_search_leaves_prompts_out_unless_asked():
    query = compile_registered_model_search(
        filter_string="name = 'm' AND tags.team = 'vision'", order_by=["name DESC"], max_results=10, page_token=None
    )
    assert query.sql == (
        "SELECT rm.model_key FROM registered_models rm WHERE NOT EXISTS (SELECT 1 FROM registered_model_tags t "
        "WHERE t.model_key = rm.model_key AND t.key = $1::text AND t.value = $2::text) AND rm.name = $3::text "
        "AND EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.model_key = rm.model_key AND t.key = $4::text "
        "AND t.value = $5::text) ORDER BY rm.name DESC OFFSET $6::bigint LIMIT $7::bigint"
    )
    assert query.args == [PROMPT_TAG, "true", "m", "team", "vision", 0, 11]
    prompts = compile_registered_model_search(
        filter_string=f"tags.`{PROMPT_TAG}` = 'true'", order_by=None, max_results=5, page_token=offset_token(5)
    )
    assert "NOT EXISTS" not in prompts.sql
    assert prompts.args == [PROMPT_TAG, "true", 5, 6]
    # A clause saying "not a prompt" only restates the default.
    models = compile_registered_model_search(
        filter_string=f"tags.`{PROMPT_TAG}` = 'false'", order_by=None, max_results=5, page_token=None
    )
    assert models.args == [PROMPT_TAG, "true", 0, 6]


def test_compiled_version_search_and_next_token():
    query = compile_model_version_search(
        filter_string="name = 'm' AND version_number > 1 AND run_id NOT IN ('a', 'b')",
        order_by=None,
        max_results=2,
        page_token=None,
    )
    assert query.sql.endswith(
        "AND rm.name = $3::text AND mv.version > $4::bigint AND NOT (mv.source_run_id = ANY($5::text[])) "
        "ORDER BY mv.last_updated_time DESC, rm.name ASC, mv.version DESC OFFSET $6::bigint LIMIT $7::bigint"
    )
    assert query.args == [PROMPT_TAG, "true", "m", 1, ["a", "b"], 0, 3]
    assert query.next_token(3) == offset_token(2)
    assert query.next_token(2) is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\\"), min_size=1,
               max_size=20))
def test_values_never_reach_the_sql_text(value):
    """The statement depends only on the search's shape; the values travel as parameters."""
    quoted = value.replace("'", "''")
    for compile_search in (compile_registered_model_search, compile_model_version_search):
        shape = "name = '{v}' AND tags.`k` LIKE '{v}'"
        query = compile_search(filter_string=shape.format(v=quoted), order_by=None, max_results=10, page_token=None)
        reference = compile_search(filter_string=shape.format(v="x"), order_by=None, max_results=10, page_token=None)
        assert query.sql == reference.sql
        assert query.args[2:5] == [quoted, "k", quoted]
