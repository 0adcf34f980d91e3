"""Settings sources and validation; dev TLS material."""

from __future__ import annotations

import stat

import pytest
from cryptography import x509

from vteller.config import SettingsError, load_settings
from vteller.tls import ensure_dev_certificates


def test_defaults_are_embedded(monkeypatch):
    s = load_settings()
    assert s.port == 8443 and str(s.data_dir) == "var" and s.reconnect_grace_s == 30
    assert s.ice_servers == [] and not s.dev_mode


def test_env_beats_toml_beats_default(tmp_path, monkeypatch):
    cfg = tmp_path / "v.toml"
    cfg.write_text('port = 9001\nreconnect_grace_s = 12\npublic_names = ["teller.bank.example"]\n')
    s = load_settings(cfg)
    assert (s.port, s.reconnect_grace_s, s.public_names) == (9001, 12, ["teller.bank.example"])
    monkeypatch.setenv("VTELLER_PORT", "9002")
    monkeypatch.setenv("VTELLER_PUBLIC_NAMES", "a.example, b.example")
    s = load_settings(cfg)
    assert s.port == 9002 and s.public_names == ["a.example", "b.example"]
    assert "https://a.example:9002" in s.effective_origins()


@pytest.mark.parametrize("env,value,name", [
    ("VTELLER_PORT", "99999", "VTELLER_PORT"),
    ("VTELLER_RECONNECT_GRACE_S", "-1", "VTELLER_RECONNECT_GRACE_S"),
    ("VTELLER_CUSTOMER_TOKEN_ALGORITHM", "none", "VTELLER_CUSTOMER_TOKEN_ALGORITHM"),
    ("VTELLER_ICE_SERVERS", "[not json", "ice_servers"),
])
def test_bad_setting_is_named(monkeypatch, env, value, name):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name.lower() in str(info.value).lower()


def test_unknown_toml_key_and_missing_file(tmp_path):
    cfg = tmp_path / "v.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="PROT"):
        load_settings(cfg)
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_dev_certificates(tmp_path):
    cert_path, key_path, made = ensure_dev_certificates(tmp_path, ["localhost", "127.0.0.1",
                                                                    "teller.example"])
    assert made
    for f in (key_path, tmp_path / "dev-ca.key"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "teller.example" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # reused as is; re-issued (same CA) when the names change
    assert ensure_dev_certificates(tmp_path, ["localhost", "127.0.0.1", "teller.example"])[2] is False
    ca_before = (tmp_path / "dev-ca.pem").read_bytes()
    assert ensure_dev_certificates(tmp_path, ["localhost", "other.example"])[2] is True
    assert (tmp_path / "dev-ca.pem").read_bytes() == ca_before
