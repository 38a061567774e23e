"""MLflow's artifact path rule and the mapping of mlflow-artifacts: URIs to store paths."""

from __future__ import annotations

import pytest

from gateway.artifacts import safe_path, store_path_of_uri
from gateway.errors import InvalidParameter


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1/abc/artifacts/model/MLmodel", "1/abc/artifacts/model/MLmodel"),
        ("a//b/./c/", "a/b/c"),
        ("", ""),
        ("dots..in..name.txt", "dots..in..name.txt"),
        ("space%20name.txt", "space name.txt"),
        ("...", "..."),
    ],
)
def test_safe_paths_are_kept(raw, expected):
    assert safe_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "a/../../b",
        "%2e%2e/x",
        "%252e%252e/x",
        "a\\..\\b",
        "a%5Cb",
        "/etc/passwd",
        "%2Fetc",
        "C:\\x",
        "C:x",
        "file:///etc/passwd",
        "a#b",
        "a\x00b",
    ],
)
def test_escaping_paths_are_invalid(raw):
    with pytest.raises(InvalidParameter) as error:
        safe_path(raw)
    assert (error.value.error_code, error.value.message) == ("INVALID_PARAMETER_VALUE", "Invalid path")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mlflow-artifacts:/3/abc/artifacts", "3/abc/artifacts"),
        ("mlflow-artifacts://host:5000/3/abc/artifacts", "3/abc/artifacts"),
        ("mlflow-artifacts:/3/models/m-1/artifacts/", "3/models/m-1/artifacts"),
        ("mlflow-artifacts:/../../etc", "etc"),
        ("mlflow-artifacts:/", ""),
        ("s3://bucket/3/abc/artifacts", None),
        ("/local/path", None),
    ],
)
def test_store_path_of_uri(uri, expected):
    assert store_path_of_uri(uri) == expected
