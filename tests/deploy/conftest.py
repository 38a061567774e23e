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


@pytest.fixture(scope="session")
def services_image(gateway_image) -> str:
    """PostgreSQL and Prometheus from Debian's packages (services.Containerfile), once per session."""
    from tests.deploy.podman import podman

    local_base = "localhost/gateway-base:bookworm-python3"
    base = local_base if podman("image", "exists", local_base, check=False).returncode == 0 else (
        "docker.io/library/debian:bookworm-slim"
    )
    image = "localhost/gateway-test-services:bookworm"
    here = DEPLOY.parent / "tests" / "deploy"
    # apt-get reaches Debian's mirror through the host's network.
    podman("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-f",
           str(here / "services.Containerfile"), "-t", image, str(here), timeout=900)
    return image
