"""Fixtures of the deployment tests: podman, and the gateway's image built once per session."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.deploy.podman import DEPLOY, podman_env, podman_unusable


@pytest.fixture(scope="session")
def podman_ready() -> None:
    """Skip (with the reason) only where podman truly cannot run containers."""
    reason = podman_unusable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def gateway_image(podman_ready) -> str:
    """The image deploy/build-image.sh builds (with the UI), once per session; its name."""
    started = time.monotonic()
    result = subprocess.run(
        [str(DEPLOY / "build-image.sh"), "localhost/mlflow-ingestion-gateway:test"],
        capture_output=True, text=True, timeout=1200, env=podman_env(),
    )
    assert result.returncode == 0, f"build-image.sh failed:\n{result.stderr[-6000:]}"
    image = result.stdout.strip().splitlines()[-1]
    print(f"built {image} in {time.monotonic() - started:.0f} s")
    return image
