"""Which store an artifact URI names: the proxy's destination, a local folder, or no store at all."""

from __future__ import annotations

import pytest

from gateway.artifacts import LocalArtifactStore
from gateway.artifacts.locations import open_location
from gateway.errors import GatewayError


async def _chunks(data: bytes):
    yield data


@pytest.mark.parametrize(
    "uri, root",
    [
        ("mlflow-artifacts:/3/abc/artifacts", "3/abc/artifacts"),
        ("mlflow-artifacts://gateway.example:5000/3/abc/artifacts", "3/abc/artifacts"),
        ("http://gateway.example/api/2.0/mlflow-artifacts/artifacts/3/abc/artifacts", "3/abc/artifacts"),
    ],
)
async def test_proxied_uris_name_the_destination(tmp_path, uri, root):
    destination = LocalArtifactStore(tmp_path / "destination")
    async with open_location(uri, destination) as location:
        assert (location.store, location.root) == (destination, root)


async def test_local_paths_and_file_uris_read_their_folder_without_creating_it(tmp_path):
    destination = LocalArtifactStore(tmp_path / "destination")
    folder = tmp_path / "own store" / "run" / "artifacts"
    for uri in (str(folder), folder.as_uri()):
        async with open_location(uri, destination) as location:
            assert location.store is not destination and location.root == ""
            assert await location.store.list("") == []
    assert not folder.exists()
    await LocalArtifactStore(folder).put("plots/a.png", _chunks(b"png"))
    async with open_location(folder.as_uri(), destination) as location:
        listed = await location.store.list("plots")
    assert [(e.name, e.is_dir, e.size) for e in listed] == [("a.png", False, 3)]


@pytest.mark.parametrize("uri", ["gs://bucket/x", "hdfs://namenode/x", "wasbs://c@a.blob.core.windows.net/x"])
async def test_other_schemes_are_not_implemented(tmp_path, uri):
    with pytest.raises(GatewayError) as error:
        async with open_location(uri, LocalArtifactStore(tmp_path)):
            pass
    assert error.value.error_code == "NOT_IMPLEMENTED" and error.value.status == 501
    assert error.value.message.startswith(f"Could not find a registered artifact repository for: {uri}. ")
