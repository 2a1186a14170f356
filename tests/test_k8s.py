"""deploy/k8s/: the manifests validate against the Kubernetes API's schemas (bundled with
kubernetes-validate: no cluster, no network) and fit together and with the application."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
# The oldest release still common in schools' and clouds' clusters, and the newest known.
VERSIONS = ["1.30.0", latest_version()]
APP_ROLES = {"markwise-web": "web", "markwise-worker": "worker", "markwise-migrate": "migrate"}


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def resources(kustomization) -> list[dict[str, Any]]:
    """Every object `kubectl apply -k deploy/k8s` creates."""
    return [doc for name in kustomization["resources"] for doc in _documents(K8S / name)]


@pytest.fixture(scope="module")
def secret() -> dict[str, Any]:
    (doc,) = _documents(K8S / "secret.example.yaml")
    return doc


def _find(resources, kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def _pod_templates(resources) -> dict[str, dict[str, Any]]:
    return {
        r["metadata"]["name"]: r["spec"]["template"]
        for r in resources
        if r["kind"] in ("Deployment", "Job")
    }


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(resources, secret, version):
    """Strict: a field the API does not know is an error, not silently dropped."""
    for resource in [*resources, secret]:
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_validation_is_real(resources):
    web = json.loads(json.dumps(_find(resources, "Deployment", "markwise-web")))
    web["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(web, VERSIONS[-1], strict=True)
    hpa = json.loads(json.dumps(_find(resources, "HorizontalPodAutoscaler", "markwise-web")))
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, VERSIONS[-1], strict=True)


def test_kustomization_applies_everything_but_the_secret(kustomization):
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.example.yaml"}
    assert kustomization["namespace"] == "markwise"
    assert [image["name"] for image in kustomization["images"]] == ["markwise"]


def test_everything_lives_in_the_namespace(resources, secret):
    for resource in [*resources, secret]:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "markwise", resource["metadata"]


def test_selectors_and_references_resolve(resources, secret):
    templates = _pod_templates(resources)
    labels = {name: t["metadata"]["labels"] for name, t in templates.items()}
    for resource in resources:
        kind, spec = resource["kind"], resource.get("spec", {})
        if kind == "Deployment":
            assert _matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        if kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
            selector = spec.get("selector", spec.get("podSelector"))
            selector = selector.get("matchLabels", selector)
            assert any(_matches(selector, pod) for pod in labels.values()), resource["metadata"]
        if kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            assert _find(resources, target["kind"], target["name"])
    ingress = _find(resources, "Ingress", "markwise")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = _find(resources, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    claims = {r["metadata"]["name"] for r in resources if r["kind"] == "PersistentVolumeClaim"}
    config_maps = {r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap"}
    for name, template in templates.items():
        for volume in template["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
            if "secret" in volume:
                assert volume["secret"]["secretName"] == secret["metadata"]["name"], name
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, name
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["port"] in ports, (name, probe)


def test_the_application_roles(resources):
    templates = _pod_templates(resources)
    for name, role in APP_ROLES.items():
        (container,) = templates[name]["spec"]["containers"]
        assert container["args"] == [role] and container["image"] == "markwise", name
    web = templates["markwise-web"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert _find(resources, "HorizontalPodAutoscaler", "markwise-web")["spec"]["minReplicas"] >= 2
    assert "replicas" not in _find(resources, "Deployment", "markwise-web")["spec"]  # the HPA's
    job = _find(resources, "Job", "markwise-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    for name in ("markwise-web", "markwise-worker", "vllm"):
        assert _find(resources, "PodDisruptionBudget", name)


def test_app_pods_are_locked_down(resources):
    for name in APP_ROLES:
        pod = _pod_templates(resources)[name]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", "/run/secrets/markwise", "/app/data/audit-checkpoints"} <= mounts


def test_secrets_come_from_the_secret_as_files(resources, secret):
    config = _find(resources, "ConfigMap", "markwise")["data"]
    keys = set(secret["stringData"])
    assert {"SECRET_KEY", "DATABASE_URL", "AUDIT_KEY", "READYZ_TOKEN"} <= keys
    for key in keys:
        assert key not in config, f"{key} is a secret, not configuration"
        assert config[f"{key}_FILE"] == f"/run/secrets/markwise/{key}"
    for name, template in _pod_templates(resources).items():
        for container in template["spec"]["containers"]:
            for variable in container.get("env", []):
                assert variable["name"] not in keys, (name, variable["name"])


def test_configuration_names_only_what_the_application_reads(resources):
    """A misspelt variable would be ignored silently: every ConfigMap key is a setting
    (config/settings.py, or its NAME_FILE form) or one that gunicorn reads."""
    source = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    gunicorn = {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}
    for key in _find(resources, "ConfigMap", "markwise")["data"]:
        assert key.removesuffix("_FILE") in read | gunicorn, key


def test_vllm_serves_like_compose_with_a_gpu(resources):
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]["vllm"]
    (container,) = _pod_templates(resources)["vllm"]["spec"]["containers"]
    assert container["image"] == compose["image"]
    flags = [a for a in compose["command"] if not re.search(r"\$\{", a)]
    assert set(flags) <= set(container["args"])
    assert "--enable-prompt-tokens-details" in container["args"]
    for section in ("requests", "limits"):
        assert container["resources"][section]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        >= 600
    )  # loading the weights, as compose's start_period
    strategy = _find(resources, "Deployment", "vllm")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxSurge"] == 0  # a surge pod would wait for a GPU that is not there
    config = _find(resources, "ConfigMap", "markwise")["data"]
    service = _find(resources, "Service", "vllm")
    assert config["LLM_BASE_URL"] == f"http://vllm:{service['spec']['ports'][0]['port']}/v1"
    # The budget for the one URL: every replica's sequences, no more (the GPU's limit).
    (seqs,) = [a.split("=")[1] for a in container["args"] if a.startswith("--max-num-seqs=")]
    replicas = _find(resources, "Deployment", "vllm")["spec"]["replicas"]
    assert config["LLM_MAX_NUM_SEQS"] == seqs
    assert int(config["LLM_MAX_CONCURRENCY"]) == replicas * int(seqs)
