"""deploy/ and the Dockerfile: every kustomization renders, its core objects validate offline
against the Kubernetes schemas, the PrometheusRule's groups pass promtool, the configs pass
`soak check`, and the security, probe, sharding and monitoring wiring holds in what renders.

Needs kubectl (Debian package `kubectl`), promtool (`prometheus`), amtool
(`prometheus-alertmanager`) and the pip package kubernetes-validate (the `test` extra).
The image itself is not built here (no container engine); its Dockerfile is checked as text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from soak.phases import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.32.0"
KUSTOMIZATIONS = (
    "deploy",
    "deploy/base",
    "deploy/generated",
    "deploy/monitoring",
    "deploy/overlays/litellm-example",
    "deploy/overlays/sidecar",
)
INSTALLS = ("deploy", "deploy/overlays/litellm-example", "deploy/overlays/sidecar")
"""The kustomizations a user applies whole (soak + mock + monitoring)."""
CONFIGS = {
    "deploy/base/config.yaml": "deploy",
    "deploy/overlays/litellm-example/config.yaml": "deploy/overlays/litellm-example",
    "deploy/overlays/sidecar/config.yaml": "deploy/overlays/sidecar",
}
"""Each soak config → the install whose ConfigMap carries it."""
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRET_ENV = {"LITELLM_MASTER_KEY": "sk-test-not-a-secret"}


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: install the Debian package {package}"
    return path


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)


@cache
def render(directory: str) -> tuple[dict[str, Any], ...]:
    out = run(tool("kubectl", "kubectl"), "kustomize", str(ROOT / directory))
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def objects(directory: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in render(directory) if d["kind"] == kind]


def one(directory: str, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in objects(directory, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{directory}: {kind}/{name} x{len(found)}"
    return found[0]


def pod_specs(directory: str) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for d in render(directory):
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            specs.append(
                (d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            )
    return specs


def soak_containers(directory: str, command: str) -> list[dict[str, Any]]:
    return [
        c
        for _, spec in pod_specs(directory)
        for c in spec["containers"]
        if c.get("args", [None])[0] == command
    ]


def test_kubectl_embeds_a_kustomize_that_reads_these_files():
    """`labels:` and components need kustomize v4+; Debian's kubernetes-client 1.20 has v2."""
    out = run(tool("kubectl", "kubectl"), "version", "--client")
    found = re.search(r"Kustomize Version: v(\d+)\.", out.stdout)
    assert found, out.stdout + out.stderr
    assert int(found[1]) >= 5, f"kubectl's kustomize is too old: {out.stdout}"


def test_every_kustomization_is_rendered_here():
    found = set()
    for path in DEPLOY.rglob("kustomization.yaml"):
        if yaml.safe_load(path.read_text()).get("kind") != "Component":
            found.add(str(path.parent.relative_to(ROOT)))
    assert found == set(KUSTOMIZATIONS)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_core_objects_validate_against_the_kubernetes_schemas(directory):
    docs = render(directory)
    assert docs
    custom = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(doc["kind"])
        except kubernetes_validate.ValidationError as err:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{directory}: {name}: {err.message} at {list(err.path)}")
    assert set(custom) <= CUSTOM_KINDS


def test_the_validator_rejects_what_it_should():
    """Strict validation catches a misspelt field, so the test above can fail."""
    bad = json.loads(json.dumps(one("deploy/base", "StatefulSet", "llm-soak")))
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.parametrize("directory", INSTALLS)
def test_prometheus_rule_groups_pass_promtool(directory, tmp_path):
    rule = one(directory, "PrometheusRule", "llm-soak")
    plain = yaml.safe_load((DEPLOY / "generated" / "soak.rules.yml").read_text())
    assert rule["spec"]["groups"] == plain["groups"]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = run(tool("promtool", "prometheus"), "check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.parametrize("config", CONFIGS)
def test_deploy_configs_pass_soak_check(config):
    out = run(
        sys.executable,
        "-m",
        "soak",
        "check",
        str(ROOT / config),
        env={"PATH": "/usr/bin:/bin", **SECRET_ENV},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{ROOT / config}: ok")


@pytest.mark.parametrize(("config", "directory"), CONFIGS.items())
def test_configmap_carries_the_checked_config(config, directory):
    maps = [
        m
        for m in objects(directory, "ConfigMap")
        if m["metadata"]["name"].startswith("llm-soak-config-")
    ]
    assert len(maps) == 1
    assert maps[0]["data"]["config.yaml"] == (ROOT / config).read_text()


@pytest.mark.parametrize("directory", INSTALLS)
def test_pods_are_non_root_and_locked_down(directory):
    specs = pod_specs(directory)
    assert len(specs) >= 2
    for name, spec in specs:
        pod = spec.get("securityContext", {})
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod.get("runAsUser", 0)) > 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities") == {"drop": ["ALL"]}, where
            if c["name"] in ("soak", "mock"):
                assert sc.get("readOnlyRootFilesystem") is True, where
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, where


@pytest.mark.parametrize("directory", INSTALLS)
def test_every_image_is_pinned(directory):
    for name, spec in pod_specs(directory):
        for c in spec["containers"]:
            image = c["image"]
            repo, _, tag = image.rpartition(":")
            assert repo and "/" not in tag, f"{name}: {image} has no tag"
            assert "latest" not in tag, f"{name}: {image}"
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not a version tag"


@pytest.mark.parametrize("directory", INSTALLS)
def test_daemon_probes_port_and_grace_match_its_config(directory):
    config = load_config(
        DEPLOY.parent / next(c for c, d in CONFIGS.items() if d == directory), env=SECRET_ENV
    )
    port = int(config.daemon.server.listen.rsplit(":", 1)[1])
    sts = one(directory, "StatefulSet", "llm-soak")
    spec = sts["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > config.daemon.server.grace
    [soak] = [c for c in spec["containers"] if c["name"] == "soak"]
    assert soak["args"][0] == "run"
    assert {p["name"]: p["containerPort"] for p in soak["ports"]} == {"metrics": port}
    assert soak["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert soak["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    mounts = {m["mountPath"] for m in soak["volumeMounts"]}
    assert {"/etc/soak", "/tmp", str(config.daemon.server.data_dir)} <= mounts
    claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    assert claims == ["data"]


@pytest.mark.parametrize("directory", INSTALLS)
def test_shard_count_equals_replicas(directory):
    sts = one(directory, "StatefulSet", "llm-soak")
    [soak] = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "soak"]
    env = {e["name"]: e.get("value") for e in soak["env"]}
    assert int(env["SOAK_SHARD_COUNT"]) == sts["spec"]["replicas"]
    assert "SOAK_SHARD_INDEX" not in env  # the index is the pod ordinal (HOSTNAME)


@pytest.mark.parametrize("directory", INSTALLS)
def test_every_referenced_configmap_and_secret_exists(directory):
    have = {(d["kind"], d["metadata"]["name"]) for d in render(directory)}
    for name, spec in pod_specs(directory):
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in have, name
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in have, f"{name}: {ref}"


@pytest.mark.parametrize("directory", INSTALLS)
def test_service_monitor_scrapes_job_soak_and_carries_the_release_label(directory):
    release = "monitoring" if directory.endswith("litellm-example") else "kube-prometheus-stack"
    monitor = one(directory, "ServiceMonitor", "llm-soak")
    assert monitor["metadata"]["labels"]["release"] == release
    assert one(directory, "PrometheusRule", "llm-soak")["metadata"]["labels"]["release"] == release
    selected = [
        s
        for s in objects(directory, "Service")
        if all(
            s["metadata"]["labels"].get(k) == v
            for k, v in monitor["spec"]["selector"]["matchLabels"].items()
        )
    ]
    assert [s["metadata"]["name"] for s in selected] == ["llm-soak"]  # not the headless one too
    job = selected[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert job == "soak"
    assert 'up{job="soak"}' in (DEPLOY / "generated" / "soak.rules.yml").read_text()
    ports = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


@pytest.mark.parametrize("directory", INSTALLS)
def test_grafana_dashboard_configmap_for_the_sidecar(directory):
    cm = one(directory, "ConfigMap", "llm-soak-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    generated = (DEPLOY / "generated" / "soak-overview.json").read_text()
    assert cm["data"] == {"soak-overview.json": generated}
    assert json.loads(cm["data"]["soak-overview.json"])["panels"]


def test_cronjob_runs_soak_once_without_overlap_or_retry():
    cron = one("deploy", "CronJob", "llm-soak-once")
    job = cron["spec"]["jobTemplate"]["spec"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["backoffLimit"] == 0
    assert 0 < job["activeDeadlineSeconds"] <= 3600
    [c] = job["template"]["spec"]["containers"]
    assert c["args"][0] == "once"
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert not objects("deploy/overlays/sidecar", "CronJob")  # no gateway next to its pod


def test_network_policies_limit_soak_to_gateway_mock_and_dns():
    soak = one("deploy", "NetworkPolicy", "llm-soak")
    assert soak["spec"]["policyTypes"] == ["Ingress", "Egress"]
    peers = [p for rule in soak["spec"]["egress"] for p in rule["to"]]
    roles = {p["podSelector"]["matchLabels"].get("llm-soak.io/role") for p in peers}
    assert roles == {"gateway", "mock", None}
    dns = [p for p in peers if "namespaceSelector" in p]
    assert dns[0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    [ingress] = soak["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus"
    }
    mock = one("deploy", "NetworkPolicy", "llm-soak-mock")
    assert mock["spec"]["egress"] == []
    # The policies select the pods they mean to.
    sts = one("deploy", "StatefulSet", "llm-soak")["spec"]["template"]["metadata"]["labels"]
    assert sts["llm-soak.io/role"] == "soak"
    gw = one("deploy/overlays/litellm-example", "Deployment", "litellm")
    assert gw["spec"]["template"]["metadata"]["labels"]["llm-soak.io/role"] == "gateway"


def test_sidecar_shares_the_process_namespace_with_the_gateway():
    spec = one("deploy/overlays/sidecar", "StatefulSet", "llm-soak")["spec"]["template"]["spec"]
    assert spec["shareProcessNamespace"] is True
    users = {
        c["name"]: c.get("securityContext", {}).get(
            "runAsUser", spec["securityContext"]["runAsUser"]
        )
        for c in spec["containers"]
    }
    assert set(users) == {"soak", "litellm"}
    assert users["soak"] == users["litellm"]  # psutil reads /proc/<pid>/fd of the same user only
    config = load_config(DEPLOY / "overlays/sidecar/config.yaml", env=SECRET_ENV)
    assert config.gateway.url == "http://127.0.0.1:4000"


def test_litellm_example_routes_to_the_mock():
    deployment = one("deploy/overlays/litellm-example", "Deployment", "litellm")
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    mock = load_config(DEPLOY / "overlays/litellm-example/config.yaml", env=SECRET_ENV).mock
    assert env["MOCK_PRIMARY_URL"] == f"{mock.url}/p/{mock.primary}/v1"
    assert env["MOCK_FALLBACK_URL"] == f"{mock.url}/p/{mock.fallback}/v1"
    cm = [
        m
        for m in objects("deploy/overlays/litellm-example", "ConfigMap")
        if m["metadata"]["name"].startswith("litellm-config-")
    ]
    routes = yaml.safe_load(cm[0]["data"]["config.yaml"])
    assert [m["model_name"] for m in routes["model_list"]] == ["soak-primary", "soak-fallback"]
    assert routes["router_settings"]["allowed_fails"] != 3  # LiteLLM reads 3 as "unset"


def test_dockerfile_is_multi_stage_pinned_and_non_root():
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[1]), "pin the base image"
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2 and all("${PYTHON_IMAGE}" in f for f in froms)
    assert "latest" not in text
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric non-root USER"
    entry = [ln for ln in lines if ln.upper().startswith("ENTRYPOINT")]
    assert entry == ['ENTRYPOINT ["soak"]']
    assert not any(ln.upper().startswith("HEALTHCHECK") for ln in lines)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :][:4] == [
        "!pyproject.toml",
        "!README.md",
        "!soak/",
        "!mock/",
    ]


def test_image_tag_in_deploy_matches_the_package_version():
    from soak import __version__

    for _, spec in pod_specs("deploy"):
        for c in spec["containers"]:
            if c["image"].startswith("ghcr.io/llm-soak/llm-soak:"):
                assert c["image"].endswith(f":{__version__}")


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ("alertname=SoakLatencyHigh severity=critical target=gw phase=overhead", "soak-page"),
        ("alertname=SoakLatencyHigh severity=warning target=gw phase=overhead", "soak-ticket"),
        ("alertname=SoakDaemonDown severity=warning", "soak-ticket"),
    ],
)
def test_alertmanager_example_routes_by_severity(labels, receiver):
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    amtool = tool("amtool", "prometheus-alertmanager")
    check = run(amtool, "check-config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    out = run(amtool, "config", "routes", "test", f"--config.file={config}", *labels.split())
    assert out.stdout.strip() == receiver, out.stdout + out.stderr


def test_every_generated_alert_has_a_routed_severity():
    rules = yaml.safe_load((DEPLOY / "generated" / "soak.rules.yml").read_text())
    severities = {
        r["labels"]["severity"] for g in rules["groups"] for r in g["rules"] if "alert" in r
    }
    assert severities == {"warning", "critical"}
