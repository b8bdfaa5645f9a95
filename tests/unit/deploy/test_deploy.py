"""The deployment files: Kubernetes manifests valid against the API schema and consistent with
the code (probe paths served, ports, settings the app accepts), systemd units that verify."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stream.core.settings import load_settings
from stream.ingest.collector import create_collector_app
from stream.serving.api import create_lookup_app
from stream.worker.app import create_app
from tests.support.paths import REPO
from tests.support.requirements import require_tool

K8S = REPO / "deploy" / "k8s"
SYSTEMD = REPO / "deploy" / "systemd"
KUBERNETES_VERSION = "1.37.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def resources() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, doc in documents() if doc["kind"] != "Kustomization"]


def containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(component, pod template metadata, container) for every workload."""
    found = []
    for _, doc in resources():
        template = doc.get("spec", {}).get("template")
        if template and doc["kind"] != "Job":
            component = template["metadata"]["labels"]["app.kubernetes.io/component"]
            found += [(component, template["metadata"], c) for c in template["spec"]["containers"]]
    return found


def environment() -> dict[str, str]:
    data: dict[str, str] = {}
    for _, doc in resources():
        if doc["kind"] in {"ConfigMap", "Secret"} and doc["metadata"]["name"] == "profilestream":
            data |= doc.get("data", {}) | doc.get("stringData", {})
    return data


@pytest.mark.parametrize(("name", "doc"), resources(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_each_manifest_is_valid_against_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = [doc for _, doc in documents() if doc["kind"] == "Kustomization"]
    expected = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == expected


def test_configmap_and_secret_are_settings_the_app_accepts() -> None:
    env = environment()
    settings = load_settings({k: v for k, v in env.items() if k.startswith("PROFILESTREAM_")})
    assert settings.worker_web_host == "0.0.0.0"
    assert settings.table_store == "rocksdb"


def served_paths() -> dict[str, set[str]]:
    settings = load_settings({})
    worker = create_app(settings)
    return {
        "worker": set(worker.web.views),
        "collector": {getattr(r, "path", "") for r in create_collector_app(settings).routes},
        "lookups": {getattr(r, "path", "") for r in create_lookup_app(settings).routes},
    }


def test_probes_and_scrape_paths_are_served_on_the_declared_ports() -> None:
    served = served_paths()
    assert {component for component, _, _ in containers()} == {"worker", "collector", "lookups"}
    for component, metadata, container in containers():
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in container:
                get = container[probe]["httpGet"]
                assert get["path"] in served[component], (component, probe, get["path"])
                assert get["port"] in ports
        annotations = metadata["annotations"]
        assert annotations["prometheus.io/path"] in served[component], component
        assert int(annotations["prometheus.io/port"]) in ports.values()
        # The process must listen where the container declares it does.
        args = " ".join(container["args"])
        listening = re.search(r"--port (\d+)", args)
        port = int(listening.group(1)) if listening else int(environment()["PROFILESTREAM_WORKER_WEB_PORT"])
        assert port in ports.values(), component


def test_worker_replicas_do_not_exceed_partitions() -> None:
    (worker,) = [
        d
        for _, d in resources()
        if d["metadata"]["name"] == "profilestream-worker" and "replicas" in d["spec"]
    ]
    assert worker["spec"]["replicas"] <= int(environment()["PROFILESTREAM_EVENTS_PARTITIONS"])


def test_systemd_units_verify(tmp_path: Path) -> None:
    systemd_analyze = require_tool("systemd-analyze", "systemd")
    venv_bin = Path(shutil.which("profilestream") or REPO / ".venv" / "bin" / "profilestream")
    assert venv_bin.exists(), "install the project first: deploy/local/install"
    units = []
    for unit in SYSTEMD.glob("*.service"):
        # The units name /opt/profilestream; verify them against this checkout instead.
        text = unit.read_text().replace("/opt/profilestream/.venv/bin/profilestream", str(venv_bin))
        text = text.replace("/opt/profilestream", str(REPO))
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    assert len(units) == 3
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *units],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    # Unknown keys are only warnings to systemd; here they are mistakes.
    assert result.returncode == 0 and "Unknown" not in output, output
