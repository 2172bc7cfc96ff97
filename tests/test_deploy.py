"""deploy/: the Dockerfile, the Kubernetes manifests and the KServe example agree with each
other and with the server (ports, probe paths on real public routes, drain timeout below the
grace period). No Docker daemon or cluster here: this checks the files, not a running image."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit.cli import parse_serve
from servekit.server import App
from servekit.server.loader import load_target

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(kind: str) -> dict[str, Any]:
    found = [
        doc for path in sorted(DEPLOY.rglob("*.yaml")) for doc in _docs(path) if doc["kind"] == kind
    ]
    assert len(found) == 1, f"expected one {kind} in deploy/, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def app() -> App:
    return App(load_target(f"{DEPLOY / 'model.py'}:Echo"))


def _public_get(app: App, path: str) -> None:
    """``path`` is a GET route of the real server, answered without the token (probes)."""
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode()}
    route, _ = app.http.router.resolve(scope)
    assert route.public, f"{path} needs the token: a probe would get 401"


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _dockerfile() -> dict[str, list[str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return instructions


def _env_pairs(lines: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for line in lines for pair in shlex.split(line))


def test_dockerfile_is_multi_stage_non_root_and_probes_the_ready_route(app: App) -> None:
    docker = _dockerfile()
    assert len(docker["FROM"]) >= 2
    (user,) = docker["USER"]
    assert user not in ("root", "0")
    assert docker["ENTRYPOINT"] == ['["servekit", "serve"]']
    env = _env_pairs(docker["ENV"])
    (exposed,) = docker["EXPOSE"]
    assert exposed == env["SERVEKIT_PORT"] == "8080"
    (check,) = docker["HEALTHCHECK"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", check)
    assert url, check
    assert url.group(1) == exposed
    assert url.group(2) == "/v2/health/ready"
    _public_get(app, url.group(2))
    assert env["SERVEKIT_HOST"] == "0.0.0.0"


def test_deployment_probes_ports_and_grace_period(app: App) -> None:
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    targets, settings = parse_serve(container["args"])
    assert targets == ["model:Echo"]
    port = int(env["SERVEKIT_PORT"])
    assert port == 8080 and env["SERVEKIT_HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert ports.get(get["port"], get["port"]) == port
        _public_get(app, get["path"])
    drain = float(settings.get("drain_timeout", env["SERVEKIT_DRAIN_TIMEOUT"]))
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    assert pod["securityContext"]["runAsNonRoot"] is True
    docker_env = _env_pairs(_dockerfile()["ENV"])
    assert float(docker_env["SERVEKIT_DRAIN_TIMEOUT"]) < pod["terminationGracePeriodSeconds"]


def test_service_and_autoscaler_point_at_the_deployment() -> None:
    deployment, service, hpa = _one("Deployment"), _one("Service"), _one("HorizontalPodAutoscaler")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in named or port["targetPort"] in named.values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_kserve_example_speaks_v2_on_port_8080(app: App) -> None:
    service, runtime = _one("InferenceService"), _one("ServingRuntime")
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
    assert "v2" in runtime["spec"]["protocolVersions"]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    _, settings = parse_serve(container["args"])
    assert settings["port"] == 8080 == container["ports"][0]["containerPort"]
    assert settings["host"] == "0.0.0.0"
    _public_get(app, container["readinessProbe"]["httpGet"]["path"])
    # what KServe's v2 data plane calls exists on the server
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/echo/ready"):
        _public_get(app, path)
    scope = {"type": "http", "method": "POST", "path": "/v2/models/echo/infer"}
    route, params = app.http.router.resolve(scope)
    assert params == {"name": "echo"} and route.template.endswith("/infer")
