"""Pure helpers of deploy/local/services (the script runs without the project installed)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

from tests.support.paths import REPO

SCRIPT = REPO / "deploy" / "local" / "services"


def _load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("profilestream_services_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    services = _load()
    # 0xfb... encodes to "-..." in URL-safe base64: kafka-storage would read it as an option.
    dashed = uuid.UUID(bytes=b"\xfb" + bytes(15))
    plain = uuid.UUID(bytes=b"\x01" + bytes(15))
    with mock.patch.object(services.uuid, "uuid4", side_effect=[dashed, plain]):
        cluster_id = services.kraft_cluster_id()
    assert cluster_id == "AQAAAAAAAAAAAAAAAAAAAA"
    ids = {services.kraft_cluster_id() for _ in range(2000)}
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_env_prints_export_lines_that_reach_child_processes(tmp_path: Path) -> None:
    # The documented `eval "$(deploy/local/services env)"`: a child must see the instance's ports.
    name = f"envtest-{uuid.uuid4().hex[:6]}"
    script = (
        f'eval "$({SCRIPT} env --name {name} --kafka-port 29992 --redis-port 29979)" && '
        f'{sys.executable} -c \'import os; print(os.environ["PROFILESTREAM_KAFKA_BOOTSTRAP_SERVERS"], '
        'os.environ["PROFILESTREAM_REDIS_URL"])\''
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127.0.0.1:29992", "redis://127.0.0.1:29979/0"]


def test_ports_inside_the_ephemeral_range_are_warned_about_with_the_reason() -> None:
    services = _load()
    warnings = services.ephemeral_port_warnings(
        {"kafka_port": 25092, "kafka_controller_port": 9093, "redis_port": 6379}, (24000, 26999)
    )
    assert len(warnings) == 1
    assert "25092" in warnings[0] and "24000-26999" in warnings[0]
    assert "connect to itself" in warnings[0] and "below 24000" in warnings[0]


def test_up_warns_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    services = _load()
    name = f"warn-{uuid.uuid4().hex[:6]}"
    with (
        mock.patch.object(services, "ephemeral_port_range", return_value=(24000, 26999)),
        mock.patch.object(services, "redis_up") as redis_up,
        mock.patch.object(services, "kafka_up") as kafka_up,
    ):
        try:
            assert (
                services.main(["up", "--name", name, "--kafka-port", "21092", "--redis-port", "25379"]) == 0
            )
        finally:
            shutil.rmtree(REPO / "var" / "services" / name, ignore_errors=True)
    err = capsys.readouterr().err
    assert "redis port 25379 lies inside the kernel's ephemeral port range 24000-26999" in err
    assert "21092" not in err
    redis_up.assert_called_once()
    kafka_up.assert_called_once()


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    services = _load()
    proc_file = tmp_path / "ip_local_port_range"
    proc_file.write_text("10000\t20000\n")
    assert services.ephemeral_port_range(proc_file) == (10000, 20000)
    assert services.ephemeral_port_range(tmp_path / "absent") == (32768, 60999)


def test_apt_get_waits_for_the_dpkg_lock_with_a_bound(tmp_path: Path) -> None:
    services = _load()
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    absent = mock.MagicMock()
    absent.return_value.exists.return_value = False
    with (
        mock.patch.object(services.shutil, "which", return_value=None),
        mock.patch.object(services, "Path", absent),
        mock.patch.object(services.os, "geteuid", return_value=0),
        mock.patch.object(services.subprocess, "run", side_effect=fake_run),
    ):
        services._redis_server()
    assert [c[:3] for c in calls] == [
        ["apt-get", "-o", f"DPkg::Lock::Timeout={services.APT_LOCK_TIMEOUT_S}"]
    ] * 2
    assert 0 < services.APT_LOCK_TIMEOUT_S <= 3600
    install = (REPO / "deploy" / "local" / "install").read_text()
    assert 'apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT_S"' in install


@pytest.mark.parametrize(
    ("present", "absent", "absent_name"), [("redis", "KAFKA", "Kafka"), ("kafka", "REDIS", "Redis")]
)
def test_env_of_an_instance_with_one_server_does_not_point_at_the_other_default(
    present: str, absent: str, absent_name: str
) -> None:
    # `up --only redis` then `env`: the default Kafka address would be someone else's broker.
    name = f"envonly-{uuid.uuid4().hex[:6]}"
    home = REPO / "var" / "services" / name
    home.mkdir(parents=True)
    try:
        (home / f"{present}.log").write_text("")
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "env", "--name", name],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        shutil.rmtree(home)
    assert result.returncode == 0, result.stderr
    assert f"PROFILESTREAM_{present.upper()}" in result.stdout
    assert not any(line.startswith(f"export PROFILESTREAM_{absent}") for line in result.stdout.splitlines())
    assert f"runs no {absent_name}" in result.stdout
