"""The pure rules on model version sources (the parts of MLflow's server checks that need no lookups)."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidParameter
from gateway.mlflow.registry import (
    ModelsUri,
    canonical_stage,
    check_no_relative_parts,
    check_source_scheme,
    host_addressed_scheme,
    is_proxied_artifact,
    parse_models_uri,
    within,
)


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("models:/m-0123", ModelsUri(model_id="m-0123")),
        ("models:/name/3", ModelsUri(name="name", version="3")),
        ("models:/name/latest", ModelsUri(name="name")),
        ("models:/name/Production", ModelsUri(name="name", stage="Production")),
        ("models:/name@champion", ModelsUri(name="name", alias="champion")),
        ("models:/", None),
        ("models:/a/b/c", None),
        ("models:/name/ ", None),
        ("models:/name@", None),
        ("runs:/abc/model", None),
    ],
)
def test_models_uris_read_as_mlflow_reads_them(uri, parsed):
    assert parse_models_uri(uri) == parsed


@pytest.mark.parametrize(
    "source",
    ["s3://bucket", "s3://bucket/", "s3://b/a/../c", "s3://b/a/%2E%2E/c", "s3://b/a/./c", "gs://b/x%00y"],
)
def test_sources_that_climb_out_of_themselves_are_refused(source):
    with pytest.raises(InvalidParameter) as caught:
        check_no_relative_parts(source)
    assert caught.value.message.startswith(f"Invalid model version source: '{source}'. If supplying a source")


@pytest.mark.parametrize("source", ["s3://bucket/models/a", "runs:/0123/model", "models:/m-1", "mlflow-artifacts:/1/x"])
def test_plain_sources_pass(source):
    check_no_relative_parts(source)


def test_host_addressed_schemes():
    assert host_addressed_scheme("https://elsewhere.example/m") == "https"
    assert host_addressed_scheme("mlflow-artifacts://other:5000/1/m") == "mlflow-artifacts"
    assert host_addressed_scheme("mlflow-artifacts:/1/m") is None
    assert host_addressed_scheme("s3://bucket/m") is None
    with pytest.raises(InvalidParameter) as caught:
        check_source_scheme("ftp://files.example/m")
    assert caught.value.message.startswith("'source' cannot use the 'ftp' scheme: the 'ftp' scheme addresses a host")


def test_within_an_artifact_root():
    root = "mlflow-artifacts:/1/0123/artifacts"
    assert within("mlflow-artifacts:/1/0123/artifacts/model", root)
    assert within("mlflow-artifacts:/1/0123/artifacts", root)
    assert not within("mlflow-artifacts:/1/0124/artifacts/model", root)
    assert not within("mlflow-artifacts:/1/0123/artifactsX/model", root)
    assert not within("s3://1/0123/artifacts/model", root)
    assert is_proxied_artifact("mlflow-artifacts:/1/x")
    assert is_proxied_artifact("https://host/api/2.0/mlflow-artifacts/artifacts/1/x")
    assert not is_proxied_artifact("https://host/other/1/x")


def test_stages_are_canonical():
    assert [canonical_stage(s) for s in ("none", "STAGING", "Production", "archived")] == [
        "None", "Staging", "Production", "Archived"
    ]
    with pytest.raises(InvalidParameter) as caught:
        canonical_stage("Deleted_Internal")
    assert caught.value.message == (
        "Invalid Model Version stage: Deleted_Internal. Value must be one of None, Staging, Production, Archived."
    )
