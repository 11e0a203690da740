"""Deployment files, validated offline: docker-compose (+ the GPU override) and the Kubernetes manifests.

No cluster or Docker engine runs here. ``kubeconform``/``helm`` are not installable on these
machines, so the manifests get a structural check: every object is well formed, selectors match
their pods, probes hit ``/health`` on the declared port, and every ConfigMap, Secret and claim a pod
uses is defined (the Secret by its example). The pipeline file in the ConfigMap must load.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthstream.config import parse_pipeline_config
from synthstream.schemas.record import RecordSchema

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
ROLES = ("ingest", "trainer", "publisher")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = _docs(K8S / "kustomization.yaml")[0]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name in [*kustomization["resources"], "secret.example.yaml"]:
        for doc in _docs(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), (name, sorted(doc))
            assert doc["metadata"].get("name"), name
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_every_role_is_a_deployment_with_health_probes(objects):
    for role in ROLES:
        deployment = objects[("Deployment", f"synthstream-{role}")]
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), role
        (container,) = spec["template"]["spec"]["containers"]
        args = container["args"]
        assert args[:1] == ["run"] and args[args.index("--role") + 1] == role
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            http = container[probe]["httpGet"]
            assert http["path"] == "/health", (role, probe)
            assert http["port"] in ports or http["port"] in ports.values(), (role, probe)
        assert ports.get("metrics") == 9464
        assert container["envFrom"] == [{"secretRef": {"name": "synthstream-keys"}}]
        assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert objects[("Deployment", "synthstream-ingest")]["spec"]["replicas"] >= 2  # scaled out


def test_references_resolve_and_the_pipeline_file_loads(objects, monkeypatch):
    for (kind, _), doc in objects.items():
        if kind != "Deployment":
            continue
        for volume in doc["spec"]["template"]["spec"]["volumes"]:
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in objects
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in objects
    secret = objects[("Secret", "synthstream-keys")]
    assert "SYNTHSTREAM_PSEUDONYM_KEY" in secret["stringData"]
    data = objects[("ConfigMap", "synthstream-pipeline")]["data"]
    monkeypatch.delenv("SYNTHSTREAM_SCHEMA_REGISTRY_URL", raising=False)
    config = parse_pipeline_config(yaml.safe_load(data["pipeline.yaml"]), source="configmap")
    assert config.schema_registry.url == "http://schema-registry:8081"
    assert config.metrics.enabled and config.metrics.port == 9464
    schema = RecordSchema.from_avro(yaml.safe_load(data["payments.avsc"]))
    config.check_schema(schema)


def test_the_gpu_overlay_only_adds_a_gpu_to_the_trainer():
    kustomization = _docs(K8S / "gpu" / "kustomization.yaml")[0]
    assert kustomization["resources"] == [".."]
    (patch,) = kustomization["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "synthstream-trainer"}
    body = _docs(K8S / "gpu" / patch["path"])[0]
    (container,) = body["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "trainer"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    base_trainer = _docs(K8S / "trainer.yaml")[0]
    assert "nvidia.com/gpu" not in str(base_trainer)  # CPU by default


def test_compose_requires_the_key_checks_health_and_runs_a_schema_registry():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    registry = services["schema-registry"]
    assert str(registry["image"]).startswith("confluentinc/cp-schema-registry:")
    assert registry["environment"]["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == "PLAINTEXT://kafka:9092"
    for role in ROLES:
        service = services[role]
        env = service["environment"]
        assert env["SYNTHSTREAM_PSEUDONYM_KEY"].startswith("${SYNTHSTREAM_PSEUDONYM_KEY:?"), role
        assert env["SYNTHSTREAM_SCHEMA_REGISTRY_URL"] == "http://schema-registry:8081"
        assert "/health" in " ".join(service["healthcheck"]["test"]), role
        assert service["depends_on"]["schema-registry"]["condition"] == "service_healthy"
        assert "deploy" not in service, f"{role} must not reserve a GPU in the base file"


def _compose(*files: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail("docker-compose not found: install Debian's docker-compose (make system-deps)")
    args = [executable]
    for f in files:
        args += ["-f", str(ROOT / f)]
    return subprocess.run(
        [*args, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def test_docker_compose_validates_with_the_gpu_override_and_refuses_a_missing_key():
    import os

    base_env = {k: v for k, v in os.environ.items() if k != "SYNTHSTREAM_PSEUDONYM_KEY"}
    with_key = {**base_env, "SYNTHSTREAM_PSEUDONYM_KEY": "0123456789abcdef0123"}
    ok = _compose("docker-compose.yml", "docker-compose.gpu.yml", env=with_key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = _compose("docker-compose.yml", env=base_env)
    assert missing.returncode != 0
    assert "SYNTHSTREAM_PSEUDONYM_KEY" in missing.stdout + missing.stderr
