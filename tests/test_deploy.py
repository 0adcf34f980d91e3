"""The container sketch in deploy/ keeps to the topology the tests run for real: its
HAProxy file is the tested template filled in, and HAProxy accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.haproxy import CONFIG, haproxy_binary

DEPLOY = Path(__file__).parent.parent / "deploy"


def _directives(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def test_compose_haproxy_is_the_tested_template_filled_in() -> None:
    filled = CONFIG.format(bind=":443", servers="    server active 127.0.0.1:8444\n"
                           "    server standby 127.0.0.1:8445 backup")
    assert _directives((DEPLOY / "haproxy-compose.cfg").read_text()) == _directives(filled)


def test_compose_haproxy_config_is_valid() -> None:
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy is not installed (.ci/run installs it)")
    done = subprocess.run([binary, "-c", "-f", str(DEPLOY / "haproxy-compose.cfg")],
                          check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_an_active_and_a_standby_node_on_shared_stores() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    active, standby = services["vteller-active"], services["vteller-standby"]
    assert active["environment"]["VTELLER_PORT"] == "8444"
    assert standby["environment"]["VTELLER_PORT"] == "8445"
    assert standby["environment"]["VTELLER_STANDBY"] == "true"
    assert "VTELLER_STANDBY" not in active["environment"]
    for node in (active, standby):
        env = node["environment"]
        assert env["VTELLER_DATABASE_URL"].startswith("postgresql://")
        assert env["VTELLER_REDIS_URL"].startswith("redis://")
        assert env["VTELLER_S3__BUCKET"] == "vteller"
        assert env["VTELLER_KEK_PROVIDER"] == "env"  # one key for both nodes
    assert {"postgres", "redis", "minio", "haproxy", "migrate"} <= set(services)


def test_compose_active_override_runs_two_active_nodes_on_one_queue() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    override = yaml.safe_load((DEPLOY / "compose.active.yaml").read_text())["services"]
    assert set(override) <= set(services)
    urls = set()
    for name in ("vteller-active", "vteller-standby"):
        env = {**services[name]["environment"], **override[name]["environment"]}
        assert env["VTELLER_SHARE_QUEUE"] == "true"
        assert env.get("VTELLER_STANDBY", "false") == "false"
        assert env["VTELLER_NODE_URL"].endswith(f":{env['VTELLER_PORT']}/ws")
        urls.add(env["VTELLER_NODE_URL"])
    assert len(urls) == 2
    filled = CONFIG.format(bind=":443", servers="    server node1 127.0.0.1:8444\n"
                           "    server node2 127.0.0.1:8445")
    cfg = (DEPLOY / "haproxy-compose-active.cfg").read_text()
    assert _directives(cfg) == _directives(filled)
    binary = haproxy_binary()
    if binary is not None:
        done = subprocess.run([binary, "-c", "-f", str(DEPLOY / "haproxy-compose-active.cfg")],
                              check=False, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
