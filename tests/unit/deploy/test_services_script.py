"""Pure helpers of deploy/local/services (the script runs without the project installed)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import uuid
from types import ModuleType
from unittest import mock

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
