"""What gc's artifact removal deletes, and the URIs it refuses to touch."""

from __future__ import annotations

import pytest

from gateway.artifacts import LocalArtifactStore
from gateway.artifacts.locations import UnsupportedScheme
from gateway.artifacts.removal import NotRemovable, is_permanent, remove_artifacts
from gateway.errors import GatewayError


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def make_files(folder, names: list[str]) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


async def test_a_proxied_run_folder_goes_and_its_neighbours_stay(tmp_path):
    destination = LocalArtifactStore(tmp_path / "destination")
    make_files(tmp_path / "destination", [
        "3/run-a/artifacts/plots/loss.png", "3/run-a/artifacts/model/MLmodel", "3/run-b/artifacts/notes.txt",
        "3/models/m-1/artifacts/MLmodel", "3/models/m-2/artifacts/MLmodel",
    ])
    await remove_artifacts("mlflow-artifacts:/3/run-a/artifacts", destination)
    await remove_artifacts("mlflow-artifacts://gateway.example:5000/3/models/m-1/artifacts", destination)
    assert files_under(tmp_path / "destination") == ["3/models/m-2/artifacts/MLmodel", "3/run-b/artifacts/notes.txt"]
    # The run's and model's own folders, left empty, go too.
    assert not (tmp_path / "destination" / "3" / "run-a").exists()
    assert not (tmp_path / "destination" / "3" / "models" / "m-1").exists()
    # Removing again (a retried gc) finds nothing and is not an error.
    await remove_artifacts("mlflow-artifacts:/3/run-a/artifacts", destination)


async def test_an_own_local_location_goes_by_path_or_file_uri(tmp_path):
    destination = LocalArtifactStore(tmp_path / "destination")
    own = tmp_path / "own store"
    make_files(own, ["run-a/artifacts/a.txt", "run-b/artifacts/b.txt", "run-b/other.txt", "run-c/artifacts/c.txt"])
    await remove_artifacts(str(own / "run-a" / "artifacts"), destination)
    await remove_artifacts((own / "run-b" / "artifacts").as_uri(), destination)
    # A folder holding something else besides the artifacts is kept.
    assert files_under(own) == ["run-b/other.txt", "run-c/artifacts/c.txt"]
    assert not (own / "run-a").exists()


@pytest.mark.parametrize(
    "uri, reason",
    [
        ("", "the URI is empty"),
        ("mlruns/3/run-a/artifacts", "a relative path"),
        ("mlflow-artifacts:/", "it names the whole artifacts destination"),
        ("s3://bucket", "it names a whole bucket"),
        ("s3://bucket/", "it names a whole bucket"),
        ("/", "it names the filesystem root"),
        ("file:///", "it names the filesystem root"),
    ],
)
async def test_uris_naming_no_single_folder_are_refused_for_good(tmp_path, uri, reason):
    make_files(tmp_path / "destination", ["3/run-a/artifacts/a.txt"])
    destination = LocalArtifactStore(tmp_path / "destination")
    with pytest.raises(NotRemovable) as error:
        await remove_artifacts(uri, destination)
    assert error.value.message == f"Not removing the artifacts at {uri!r}: {reason}."
    assert is_permanent(error.value)
    assert files_under(tmp_path / "destination") == ["3/run-a/artifacts/a.txt"]


async def test_an_unsupported_scheme_is_permanent_and_unreachable_storage_is_not(tmp_path):
    with pytest.raises(UnsupportedScheme) as error:
        await remove_artifacts("gs://bucket/3/run-a/artifacts", LocalArtifactStore(tmp_path))
    assert error.value.error_code == "NOT_IMPLEMENTED" and is_permanent(error.value)
    assert not is_permanent(GatewayError("S3 could not be reached", "TEMPORARILY_UNAVAILABLE"))
    assert not is_permanent(PermissionError("denied"))
