"""The local artifact store on a temporary directory: atomic puts, listing, deleting a run's files."""

from __future__ import annotations

import pytest

from gateway.artifacts import LocalArtifactStore
from gateway.errors import InvalidParameter, NotFound


async def _chunks(*parts: bytes, fail_after: int | None = None):
    for index, part in enumerate(parts):
        if fail_after is not None and index == fail_after:
            raise ConnectionResetError("client went away")
        yield part


async def test_put_get_list_and_delete_run_artifacts(tmp_path):
    store = LocalArtifactStore(tmp_path / "root")
    assert await store.put("1/run-a/artifacts/model/MLmodel", _chunks(b"flavors:", b" {}")) == 11
    await store.put("1/run-a/artifacts/plot.png", _chunks(b"\x89PNG"))
    await store.put("1/run-b/artifacts/keep.txt", _chunks(b"keep"))
    download = await store.get("1/run-a/artifacts/model/MLmodel")
    assert (download.name, download.size, download.local_file.read_bytes()) == ("MLmodel", 11, b"flavors: {}")
    listed = await store.list("1/run-a/artifacts")
    assert [(e.name, e.is_dir, e.size) for e in listed] == [("model", True, None), ("plot.png", False, 4)]

    assert await store.delete_run_artifacts("mlflow-artifacts:/1/run-a/artifacts") is True
    assert not (tmp_path / "root" / "1" / "run-a" / "artifacts").exists()
    assert (tmp_path / "root" / "1" / "run-b" / "artifacts" / "keep.txt").read_bytes() == b"keep"
    assert await store.delete_run_artifacts("s3://elsewhere/1/run-b/artifacts") is False
    assert await store.delete_run_artifacts("mlflow-artifacts:/") is False
    assert (tmp_path / "root" / "1" / "run-b" / "artifacts" / "keep.txt").exists()


async def test_failed_stream_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    store = LocalArtifactStore(tmp_path)
    await store.put("a/file.bin", _chunks(b"old"))
    with pytest.raises(ConnectionResetError):
        await store.put("a/file.bin", _chunks(b"x" * (2 * 1024 * 1024), b"y", fail_after=1))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["file.bin"]
    assert (tmp_path / "a" / "file.bin").read_bytes() == b"old"


async def test_conflicting_paths(tmp_path):
    store = LocalArtifactStore(tmp_path)
    await store.put("a/file.bin", _chunks(b"x"))
    with pytest.raises(InvalidParameter, match="a parent of it is a file"):
        await store.put("a/file.bin/inner", _chunks(b"x"))
    with pytest.raises(InvalidParameter, match="Artifact path refers to a directory, not a file: 'a'"):
        await store.put("a", _chunks(b"x"))
    with pytest.raises(NotFound, match="No such artifact: 'a/missing'"):
        await store.get("a/missing")
    assert await store.list("a/file.bin") == []
    assert await store.list("nowhere") == []


async def test_symlink_out_of_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    store = LocalArtifactStore(root)
    with pytest.raises(InvalidParameter, match="Invalid path"):
        await store.put("link/escaped.txt", _chunks(b"x"))
    assert list(outside.iterdir()) == []
