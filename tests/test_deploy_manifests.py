"""The deployment files agree with the services: Kubernetes, compose, Prometheus.

Pure: parses the files, needs no stack and no fixture. Neither a cluster
nor a Docker engine is available where this is developed, so this is what
checks them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUBERNETES = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"

SERVICES = ("ingest", "chainer", "enricher", "exporter", "alerter", "streamer")
#: Where each service serves /metrics, /healthz and /readyz.
PORTS = {
    "ingest": 8080,
    "chainer": 9101,
    "exporter": 9102,
    "enricher": 9103,
    "alerter": 9104,
    "streamer": 9105,
}

Doc = dict[str, Any]


def kubernetes_documents() -> list[Doc]:
    docs: list[Doc] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def of_kind(kind: str) -> list[Doc]:
    return [d for d in kubernetes_documents() if d.get("kind") == kind]


def deployments() -> dict[str, Doc]:
    """Deployments by their component label; a duplicate fails."""
    found: dict[str, Doc] = {}
    for d in of_kind("Deployment"):
        component = d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        assert component not in found, f"two Deployments for {component}"
        found[component] = d
    return found


def container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Doc = containers[0]
    return result


def port_number(c: Doc, port: int | str) -> int:
    """A probe's or a Service's port, resolving a named container port."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    assert len(numbers) == 1, f"no container port named {port}"
    return int(numbers[0])


def compose() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_one_deployment_per_service() -> None:
    assert sorted(deployments()) == sorted(SERVICES)


def test_each_deployment_selects_only_its_own_pods() -> None:
    for name, d in deployments().items():
        selector = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        assert selector["app.kubernetes.io/component"] == name
        assert selector["app.kubernetes.io/name"] == "chainlog"
        assert d["metadata"]["namespace"] == "chainlog"


def test_each_deployment_runs_chainlog_serve() -> None:
    for name, d in deployments().items():
        c = container(d)
        assert c["command"] == ["chainlog", "serve", name]
        assert c["image"] == "chainlog:latest"


def test_each_deployment_probes_healthz_and_readyz_on_its_port() -> None:
    for name, d in deployments().items():
        c = container(d)
        liveness, readiness = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
        assert liveness["path"] == "/healthz", name
        assert readiness["path"] == "/readyz", name
        assert port_number(c, liveness["port"]) == PORTS[name], name
        assert port_number(c, readiness["port"]) == PORTS[name], name
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(PORTS[name])


def test_consumers_are_told_their_metrics_port() -> None:
    for name, d in deployments().items():
        if name == "ingest":
            continue
        env = {e["name"]: e.get("value") for e in container(d).get("env", [])}
        assert env["CHAINLOG_METRICS_PORT"] == str(PORTS[name]), name


def test_each_pod_runs_as_non_root_without_capabilities() -> None:
    pods = [d["spec"]["template"]["spec"] for d in deployments().values()]
    pods += [j["spec"]["template"]["spec"] for j in of_kind("Job")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]


def test_each_deployment_has_requests_limits_and_a_grace_period() -> None:
    for name, d in deployments().items():
        resources = container(d)["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources[bound].keys(), (name, bound)
        assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
        assert d["spec"]["replicas"] >= 2, name


def test_the_ingest_service_reaches_the_gateway_pods() -> None:
    (service,) = of_kind("Service")
    gateway = deployments()["ingest"]
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert port_number(container(gateway), port["targetPort"]) == 8080


def test_setup_job_migrates_then_creates_topics() -> None:
    (job,) = of_kind("Job")
    assert job["metadata"]["name"] == "chainlog-setup"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"][-1] == "chainlog migrate && chainlog topics"


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = of_kind("Kustomization")
    manifests = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)


def test_secret_template_holds_placeholders_only() -> None:
    (secret,) = of_kind("Secret")
    assert secret["metadata"]["name"] == "chainlog-secrets"
    values = secret["stringData"]
    needed = {"CHAINLOG_SECRET_KEY", "CHAINLOG_OPERATOR_TOKEN", "CHAINLOG_DATABASE_URL"}
    assert needed <= values.keys()
    for key, value in values.items():
        assert value == "" or "REPLACE-ME" in value, key
    # Every secret a pod refers to exists in the template.
    for d in [*deployments().values(), *of_kind("Job")]:
        for c in d["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "chainlog-secrets"
                    assert ref["key"] in values, ref["key"]


def test_private_destinations_refused_in_kubernetes() -> None:
    (config,) = of_kind("ConfigMap")
    assert config["data"]["CHAINLOG_ALLOW_PRIVATE_DESTINATIONS"] == "false"
    assert config["data"]["CHAINLOG_API_HOST"] == "0.0.0.0"
    for d in deployments().values():
        names = {e["name"] for e in container(d).get("env", [])}
        assert "CHAINLOG_ALLOW_PRIVATE_DESTINATIONS" not in names
        refs = [s["configMapRef"]["name"] for s in container(d)["envFrom"]]
        assert refs == ["chainlog-config"]


def test_compose_runs_every_service_with_a_readiness_healthcheck() -> None:
    services = compose()["services"]
    assert {*SERVICES, "prometheus", "setup", "demo"} <= services.keys()
    for name in SERVICES:
        s = services[name]
        assert s["command"] == ["chainlog", "serve", name]
        assert f"http://127.0.0.1:{PORTS[name]}/readyz" in " ".join(s["healthcheck"]["test"])
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")


def test_private_destinations_refused_in_compose() -> None:
    for name, s in compose()["services"].items():
        if s.get("build") == ".":
            assert s["environment"]["CHAINLOG_ALLOW_PRIVATE_DESTINATIONS"] == "false", name


def test_compose_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    scraped = {
        job["job_name"]: sd["port"]
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        if sd["names"] == [job["job_name"]]
    }
    assert scraped == PORTS
    mounted = compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounted


def test_consumers_listen_beyond_loopback_in_containers() -> None:
    """Probes and Prometheus reach the metrics port from outside the pod."""
    (config,) = of_kind("ConfigMap")
    assert config["data"]["CHAINLOG_METRICS_HOST"] == "0.0.0.0"
    assert compose()["x-chainlog"]["environment"]["CHAINLOG_METRICS_HOST"] == "0.0.0.0"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose CLI here")
def test_compose_file_passes_docker_compose_config() -> None:
    """``docker-compose config`` validates and renders the file without an engine."""
    done = subprocess.run(
        ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
        env={**os.environ, "CHAINLOG_SECRET_KEY": "placeholder"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_image_installs_the_runtime_lock_only_with_the_same_pins() -> None:
    """The image carries no test tools, and what it installs is what CI tested."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements-runtime.lock" in dockerfile and " requirements.lock" not in dockerfile

    def pins(name: str) -> dict[str, str]:
        out = {}
        for line in (REPO / name).read_text().splitlines():
            if "==" in line and not line.startswith((" ", "#")):
                package, version = line.split("==", 1)
                out[package.lower()] = version.strip()
        return out

    runtime, full = pins("requirements-runtime.lock"), pins("requirements.lock")
    assert runtime and all(full.get(p) == v for p, v in runtime.items())
    assert "pytest" not in runtime and "moto" not in runtime
