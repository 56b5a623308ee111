"""docker-compose.yml: the services the deployment needs, each with a healthcheck, started in order; and
``docker compose config`` accepts the file (skipped where the compose plugin is absent)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def compose_command() -> list[str] | None:
    """``docker compose`` (the v2 plugin) or a standalone v2 ``docker-compose``; ``None`` when neither works."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cmd in candidates:
        try:
            out = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and "v2." in out.stdout:
            return cmd
    return None


def test_services_and_healthchecks(compose):
    services = compose["services"]
    assert {"postgres", "prefect-server", "prefect-worker", "vllm"} <= set(services)
    for name, svc in services.items():
        check = svc.get("healthcheck", {})
        assert check.get("test"), f"service {name} has no healthcheck"
    deps = {name: svc.get("depends_on", {}) for name, svc in services.items()}
    assert deps["prefect-server"]["postgres"]["condition"] == "service_healthy"
    assert deps["prefect-worker"]["prefect-server"]["condition"] == "service_healthy"
    assert deps["prefect-worker"]["vllm"]["condition"] == "service_healthy"


def test_prefect_server_uses_postgres(compose):
    env = compose["services"]["prefect-server"]["environment"]
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    assert "@postgres:5432/prefect" in env["PREFECT_API_DATABASE_CONNECTION_URL"]


def test_vllm_serves_the_mounted_folder(compose):
    vllm = compose["services"]["vllm"]
    mount = next(v for v in vllm["volumes"] if v.endswith(":/models/policy:ro"))
    assert mount.startswith("${POLICY_MODEL_DIR")
    assert vllm["command"][0] == "/models/policy" and vllm["entrypoint"] == ["vllm", "serve"]
    for flag in ("--served-model-name", "--tensor-parallel-size", "--data-parallel-size", "--limit-mm-per-prompt"):
        assert flag in vllm["command"]
    assert "localhost:8000/health" in " ".join(vllm["healthcheck"]["test"])


def test_worker_runs_the_flows_against_the_vllm_service(compose):
    worker = compose["services"]["prefect-worker"]
    assert worker["command"][:3] == ["python", "-m", "flows.serve"]
    assert (ROOT / worker["build"]["dockerfile"]).is_file()
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    config_path = worker["command"][worker["command"].index("--config") + 1]
    shipped = ROOT / "docker" / "pipeline.yaml"
    assert config_path.endswith("/app/docker/pipeline.yaml}") and shipped.is_file()
    from pipeline.config import load_config

    cfg = load_config(shipped)  # the worker's config is valid and points at the vllm service
    assert cfg.sampler.name == "vllm-server" and cfg.sampler.server_url == "http://vllm:8000/v1"
    served = compose["services"]["vllm"]["command"]
    assert cfg.sampler.model in served[served.index("--served-model-name") + 1]


def test_docker_compose_config_accepts_the_file(tmp_path):
    cmd = compose_command()
    if cmd is None:
        pytest.skip("the docker compose v2 plugin is not installed (`docker compose version` fails)")
    out = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    resolved = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "--format", "json"], capture_output=True,
                              text=True, timeout=60, cwd=ROOT, env={**os.environ, "POLICY_MODEL_DIR": str(tmp_path)})
    assert resolved.returncode == 0, resolved.stderr
    assert f"{tmp_path}" in resolved.stdout  # the mounted folder comes from POLICY_MODEL_DIR
