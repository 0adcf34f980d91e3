"""The `vteller` command as a user runs it."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.request

import pytest

from tests.serve_process import start_serve

SUBCOMMANDS = [[], ["serve"], ["users"], ["users", "add"], ["users", "list"],
               ["users", "disable"], ["users", "enable"], ["users", "profile"], ["sim"], ["keys"], ["keys", "rotate"], ["keys", "show"], ["keys", "public"], ["audit"],
               ["audit", "verify"], ["token"], ["token", "issue"],
               ["protocol"], ["protocol", "export"], ["db"], ["db", "migrate"],
               ["db", "status"], ["audit", "verify-access"]]


def run(*args: str, tmp=None, stdin: str | None = None, env=None) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    if tmp is not None:
        e.update(VTELLER_DATA_DIR=str(tmp / "var"), VTELLER_CERTS_DIR=str(tmp / "certs"))
    return subprocess.run([sys.executable, "-m", "vteller", *args], capture_output=True,
                          text=True, input=stdin, env=e, timeout=60)


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=[" ".join(c) or "top" for c in SUBCOMMANDS])
def test_help_on_every_subcommand(cmd):
    out = run(*cmd, "--help")
    assert out.returncode == 0 and "usage: vteller" in out.stdout


def test_users_add_list_disable(tmp_path):
    out = run("users", "add", "dora", "--role", "teller", "--password-stdin", tmp=tmp_path,
              stdin="a long enough password\n", )
    assert out.returncode == 0, out.stderr
    out = run("users", "profile", "dora", "--skills", "card_issuance:0.9,general:0.4",
              "--languages", "en,zh", "--certifications", "elderly_care", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    assert run("users", "profile", "dora", "--skills", "x:7", tmp=tmp_path).returncode == 2
    assert "card_issuance:0.9" in run("users", "list", tmp=tmp_path).stdout
    assert run("users", "add", "dora", "--role", "teller", "--password-stdin", tmp=tmp_path,
               stdin="a long enough password\n").returncode == 1
    assert "at least" in run("users", "add", "eve", "--role", "teller", "--password-stdin",
                             tmp=tmp_path, stdin="short\n").stderr
    assert run("users", "add", "Bad Name", "--role", "teller", "--password-stdin",
               tmp=tmp_path, stdin="a long enough password\n").returncode == 2
    listing = run("users", "list", tmp=tmp_path).stdout
    assert "dora" in listing and "active" in listing and "argon2" not in listing
    assert run("users", "disable", "dora", tmp=tmp_path).returncode == 0
    assert "disabled" in run("users", "list", tmp=tmp_path).stdout
    assert run("users", "disable", "nobody", tmp=tmp_path).returncode == 1


def test_bad_setting_stops_startup_naming_it(tmp_path):
    out = run("serve", tmp=tmp_path, env={"VTELLER_PORT": "not-a-port"})
    assert out.returncode == 2 and "VTELLER_PORT" in out.stderr
    out = run("serve", tmp=tmp_path)  # not dev mode, no bank key configured
    assert out.returncode == 2 and "VTELLER_CUSTOMER_TOKEN_KEY_FILE" in out.stderr


def test_serve_dev_first_run(tmp_path):
    server = start_serve(tmp_path, "--dev")
    try:
        text = "".join(server.stdout)
        assert "/customer" in text and "/teller" in text and "teller1" in server.passwords
        print(f"\nvteller serve -> ready: {server.ready_s:.2f} s (process start to URLs printed)")
        ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "dev-ca.pem"))
        with urllib.request.urlopen(f"{server.url}/readyz", context=ctx) as r:  # dev CA verifies
            assert r.status == 200
        for secret in (tmp_path / "certs" / "server.key", tmp_path / "certs" / "dev-ca.key",
                       tmp_path / "var" / "keys" / "dev-customer-token.key",
                       tmp_path / "var" / "dev-credentials.txt",
                       tmp_path / "var" / "vteller.sqlite3"):
            assert oct(secret.stat().st_mode & 0o777) == "0o600", secret
    finally:
        server.stop()
    # second run: same accounts, passwords not printed again
    again = start_serve(tmp_path, "--dev")
    try:
        assert not again.passwords and "dev-credentials.txt" in "".join(again.stdout)
    finally:
        again.stop()


def test_token_issue_is_verifiable(tmp_path):
    out = run("token", "issue", "--customer-id", "c-9", "--name", "Zed", "--birth-year", "1940",
              "--segments", "military", tmp=tmp_path)
    assert out.returncode == 0 and out.stdout.count(".") == 2


def test_keys_rotate_and_show(tmp_path):
    env = {"VTELLER_KEK_DIR": str(tmp_path / "secrets")}
    first = run("keys", "show", tmp=tmp_path, env=env).stdout
    rotated = run("keys", "rotate", tmp=tmp_path, env=env).stdout
    new_id = rotated.split()[3].rstrip(":")
    shown = run("keys", "show", tmp=tmp_path, env=env).stdout
    assert f"current {new_id}" in shown and first.split("current ")[1].split(";")[0] in shown


def test_db_status_and_migrate(tmp_path):
    fresh = run("db", "status", tmp=tmp_path)
    assert fresh.returncode == 1 and "schema version 0, this vteller 6" in fresh.stdout
    assert "pending 1: baseline" in fresh.stdout
    migrated = run("db", "migrate", tmp=tmp_path)
    assert migrated.returncode == 0 and "applied 3:" in migrated.stdout, migrated.stderr
    assert run("db", "status", tmp=tmp_path).returncode == 0
    assert "up to date" in run("db", "migrate", tmp=tmp_path).stdout
    bad = run("db", "status", tmp=tmp_path, env={"VTELLER_DATABASE_URL": "mysql://x/y"})
    assert bad.returncode == 2 and "VTELLER_DATABASE_URL" in bad.stderr


def test_the_start_up_heap_is_frozen_out_of_full_collections():
    import gc

    from vteller.cli import freeze_startup_heap

    keep = [[i] for i in range(1000)]  # alive "after start-up"
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() and frozen > 1000
        assert not any(o is keep for o in gc.get_objects())  # a full collection skips it
        later = [object(), []]
        assert any(o is later[1] for o in gc.get_objects())  # what comes later is seen
    finally:
        gc.unfreeze()
