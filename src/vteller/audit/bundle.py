"""Evidence bundles: one session, self-contained, verifiable offline with no access to
the server or its keys.

A zip with:
  manifest.json     format, session, file digests, the signing key's fingerprint
  manifest.sig      Ed25519 signature of manifest.json by the checkpoint/log key
  public_key.pem    the checkpoint/log signing key (pin it: `--public-key`)
  records.json      the session's event records and signed checkpoints, as stored
  log.json          its global-log entry, inclusion proof and the signed tree head
  tracks/NAME       recordings and evidence snapshots, still encrypted
  key.json          the session data key: in clear (no recipient), or wrapped to the
                    recipient's X25519 public key (ephemeral ECDH + HKDF + AES-GCM)
  plain/            (no recipient only) decrypted events.json and media, for reading

`verify_bundle` checks the manifest signature and digests, chain, checkpoint
signatures, log inclusion and track digests without any key; with the data key (clear or via the recipient's
private key) it also decrypts every event and track and compares the plain copies.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vteller.audit import merkle, records
from vteller.audit.keys import KekProvider, unwrap_session_key
from vteller.audit.stream import StreamError, decrypt
from vteller.audit.trail import AuditTrail, _sha256_file, manifest_message
from vteller.audit.verify import (
    Report,
    check_chain,
    check_checkpoints,
    check_log_entry,
    check_outcome,
)
from vteller.store import BlobStore, Store

FORMAT = "vteller-evidence-bundle/2"
Progress = Callable[[int, int], None]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _wrap_for(recipient: X25519PublicKey, data_key: bytes, session_id: str) -> dict[str, str]:
    eph = X25519PrivateKey.generate()
    kek = HKDF(hashes.SHA256(), 32, None, b"vteller bundle v1|" + session_id.encode()).derive(
        eph.exchange(recipient))
    nonce = os.urandom(12)
    return {"ephemeral_public": _b64(eph.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)), "nonce": _b64(nonce),
        "wrapped_key": _b64(AESGCM(kek).encrypt(nonce, data_key, session_id.encode()))}


def _unwrap_with(private: X25519PrivateKey, wrapped: dict[str, str], session_id: str) -> bytes:
    eph = X25519PublicKey.from_public_bytes(_unb64(wrapped["ephemeral_public"]))
    kek = HKDF(hashes.SHA256(), 32, None, b"vteller bundle v1|" + session_id.encode()).derive(
        private.exchange(eph))
    return AESGCM(kek).decrypt(_unb64(wrapped["nonce"]), _unb64(wrapped["wrapped_key"]),
                               session_id.encode())


def export_bundle(store: Store, session_id: str, trail: AuditTrail,
                  kek: KekProvider, blobs: BlobStore, out: BinaryIO,
                  recipient: X25519PublicKey | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Write the bundle zip to `out`; returns the manifest. Blocking."""
    public_key = trail.public_key
    data_key = unwrap_session_key(store, kek, session_id)
    if data_key is None:
        raise LookupError("no such session, or it was purged")
    with store.snapshot():
        events = store.events(session_id)
        cps = store.checkpoints(session_id)
        entries = store.log_entries()
        head = store.latest_head()
    mine = [i for i, (_idx, sid, e) in enumerate(entries)
            if sid == session_id and not records.is_tombstone(bytes(e))]
    if not mine or head is None:
        raise LookupError("session is not closed into the global log yet")
    size, root, head_at, head_sig = head
    leaves = [merkle.leaf_hash(bytes(e)) for _, _, e in entries[:size]]
    index = mine[-1]
    files: dict[str, str] = {}
    tracks = [k for k in blobs.list(session_id)]
    total = len(tracks) * 2 + 4
    done = 0

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        def put(name: str, data: bytes) -> None:
            nonlocal done
            z.writestr(name, data)
            files[name] = hashlib.sha256(data).hexdigest()
            done += 1
            if progress:
                progress(done, total)

        put("public_key.pem", public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        put("records.json", json.dumps({
            "events": [{"seq": s, "at": at, "actor": a, "kind": k, "nonce": _b64(bytes(n)),
                        "payload": _b64(bytes(p)), "prev_hash": bytes(ph).hex(),
                        "hash": bytes(h).hex()} for s, at, a, k, n, p, ph, h in events],
            "checkpoints": [{"seq": s, "head": bytes(hd).hex(), "at": at, "final": bool(f),
                             "signature": _b64(bytes(sig))} for s, hd, at, f, sig in cps],
        }, indent=1).encode())
        put("log.json", json.dumps({
            "index": index, "size": size, "entry": _b64(bytes(entries[index][2])),
            "proof": [p.hex() for p in merkle.inclusion_proof(index, leaves)],
            "root": bytes(root).hex(), "at": head_at, "signature": _b64(bytes(head_sig)),
        }, indent=1).encode())
        put("key.json", json.dumps(
            {"wrapped_for_recipient": _wrap_for(recipient, data_key, session_id)}
            if recipient is not None else {"data_key": _b64(data_key)}).encode())
        for key in tracks:
            name = key.split("/", 1)[1]
            with blobs.open_read(key) as fh:
                put(f"tracks/{name}", fh.read())
            if recipient is None:
                with blobs.open_read(key) as fh:
                    plain = b"".join(decrypt(fh, lambda _kid: data_key))
                put(f"plain/{name.removesuffix('.vtenc')}", plain)
            else:
                done += 1
        if recipient is None:
            rows = [(seq, at, a, k, bytes(n), bytes(p), bytes(ph), bytes(h))
                    for seq, at, a, k, n, p, ph, h in events]
            parsed = records.events(Report(session_id), [
                dict(zip(records.EVENT_COLUMNS, row, strict=True)) for row in rows],
                records.DB_EVENT)
            plain_events = check_chain(Report(session_id), session_id, parsed, data_key).events
            put("plain/events.json", json.dumps(plain_events, indent=1).encode())
        manifest = {"format": FORMAT, "session": session_id, "created_at": time.time(),
                    "public_key_sha256": fingerprint(public_key),
                    "encrypted_to_recipient": recipient is not None, "files": files}
        signed = json.dumps(manifest, indent=1).encode()
        z.writestr("manifest.json", signed)
        z.writestr("manifest.sig", trail.sign_manifest(signed))
    return manifest


MANIFEST = {"format": records.text, "session": records.text,
            "created_at": lambda v: v if type(v) in (int, float) else _bad("not a number"),
            "public_key_sha256": records.text, "encrypted_to_recipient": records.json_flag,
            "files": lambda v: v if isinstance(v, dict) and all(
                type(k) is str and type(d) is str for k, d in v.items())
            else _bad("not a map of names to digests")}
LOG = {"index": records.integer, "size": records.integer, "entry": records.b64_bytes(),
       "proof": lambda v: [records.hex_bytes(records.HASH_BYTES)(p) for p in v]
       if isinstance(v, list) else _bad("not a list"),
       "root": records.hex_bytes(records.HASH_BYTES), "at": records.text,
       "signature": records.b64_bytes(records.SIGNATURE_BYTES)}


def _bad(what: str) -> Any:
    raise records.Malformed(what)


def _json(r: Report, z: zipfile.ZipFile, name: str) -> Any:
    try:
        return json.loads(z.read(name))
    except KeyError:
        r.fail(name, "missing")
    except (ValueError, UnicodeDecodeError):
        r.fail(name, "unreadable (not JSON)")
    return None


def verify_bundle(source: BinaryIO | str, pinned: Ed25519PublicKey | None = None,
                  recipient_private: X25519PrivateKey | None = None) -> Report:
    """Verify a bundle offline with the same checks as `verify.verify_session`.
    `pinned`: the signing key you trust (else the bundle's own key is used and its
    fingerprint reported for you to compare). Every malformed part or field is a
    FAILED line naming it."""
    r = Report("")
    try:
        z = zipfile.ZipFile(source)
        names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        r.fail("bundle", f"not a readable bundle ({type(exc).__name__})")
        return r
    try:
        return _verify_zip(r, z, names, pinned, recipient_private)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        r.fail("bundle", f"not a readable zip ({type(exc).__name__})")  # e.g. a bad CRC
        return r


def _verify_zip(r: Report, z: zipfile.ZipFile, names: set[str],
                pinned: Ed25519PublicKey | None,
                recipient_private: X25519PrivateKey | None) -> Report:
    # the signing key, then the signed manifest: everything else hangs off it
    try:
        bundled = serialization.load_pem_public_key(z.read("public_key.pem"))
    except (KeyError, ValueError, TypeError):
        r.fail("public_key.pem", "missing or unreadable")
        bundled = None
    if bundled is not None and not isinstance(bundled, Ed25519PublicKey):
        r.fail("public_key.pem", "not an Ed25519 key")
        bundled = None
    key = pinned or bundled
    if key is None:
        return r
    r.public_key_sha256 = fingerprint(key)
    if pinned is not None and bundled is not None and fingerprint(bundled) != fingerprint(pinned):
        r.fail("public key", "the bundle's key is not the pinned key")
    try:
        key.verify(z.read("manifest.sig"), manifest_message(z.read("manifest.json")))
    except KeyError:
        r.fail("manifest", "manifest.json or manifest.sig missing")
    except InvalidSignature:
        r.fail("manifest.sig", "signature invalid (manifest altered)")
    manifest = records.parse(r, "manifest.json", _json(r, z, "manifest.json") or {}, MANIFEST)
    if manifest is None:
        return r
    if manifest["format"] != FORMAT:
        r.fail("manifest.json", f"unknown format {manifest['format']!r}")
        return r
    sid = r.session_id = manifest["session"]
    listed = manifest["files"]
    for name in sorted((names - {"manifest.json", "manifest.sig"}) ^ set(listed)):
        r.fail(name, "file added to or removed from the bundle")
    for name, digest in listed.items():
        if name in names and hashlib.sha256(z.read(name)).hexdigest() != digest:
            r.fail(name, "differs from the manifest")
    r.checked.append(f"manifest: {len(listed)} files")

    data_key = _data_key(r, _json(r, z, "key.json"), sid, manifest["encrypted_to_recipient"],
                         recipient_private)

    stored = _json(r, z, "records.json")
    if not isinstance(stored, dict):
        stored = {}
        r.fail("records.json", "not a record")
    raw_events, raw_cps = stored.get("events"), stored.get("checkpoints")
    for part, value in (("events", raw_events), ("checkpoints", raw_cps)):
        if not isinstance(value, list):
            r.fail("records.json", f"field {part} missing or not a list")
    raw_events = raw_events if isinstance(raw_events, list) else []
    raw_cps = raw_cps if isinstance(raw_cps, list) else []
    events = records.events(r, raw_events, records.JSON_EVENT, "records.json event")
    chain = check_chain(r, sid, events, data_key, count=len(raw_events))
    cps = records.checkpoints(r, raw_cps, records.JSON_CHECKPOINT, "records.json checkpoint")
    final = check_checkpoints(r, sid, cps, chain, key)

    log = records.parse(r, "log.json", _json(r, z, "log.json") or {}, LOG)
    logged = None
    if log is not None:
        head = records.TreeHead(log["size"], log["root"], log["at"], log["signature"])
        logged = check_log_entry(r, sid, log["entry"], log["index"], log["proof"], head,
                                 final, key)
    tracks = check_outcome(r, chain, logged, data_key)

    for name, digest in sorted(tracks.items()):
        part = f"tracks/{name}"
        if part not in names:
            r.fail(part, "missing")
            continue
        blob = z.read(part)
        if _sha256_file(io.BytesIO(blob)) != digest:
            r.fail(part, "differs from the digest in the trail")
        if data_key is not None:
            try:
                plain = b"".join(decrypt(io.BytesIO(blob), lambda _kid: data_key))
            except StreamError as exc:
                if not (exc.kind == "truncated" and r.incomplete):
                    r.fail(part, str(exc))
                continue
            copy = f"plain/{name.removesuffix('.vtenc')}"
            if copy in names and z.read(copy) != plain:
                r.fail(copy, "differs from the decrypted track")
    for part in sorted(n for n in names if n.startswith("tracks/")):
        if part.removeprefix("tracks/") not in tracks:
            r.fail(part, "not recorded in the trail")
    r.checked.append(f"tracks: {len(tracks)}")
    if (data_key is not None and "plain/events.json" in names
            and _json(r, z, "plain/events.json") != chain.events):
        r.fail("plain/events.json", "differs from the decrypted records")
    r.checked.append("contents decrypted and compared" if data_key is not None else
                     "contents: not decrypted (encrypted to a recipient; give the private key)")
    return r


WRAPPED = {"ephemeral_public": records.b64_bytes(32), "nonce": records.b64_bytes(12),
           "wrapped_key": records.b64_bytes(48)}


def _data_key(r: Report, keyinfo: Any, session_id: str, to_recipient: bool,
              recipient_private: X25519PrivateKey | None) -> bytes | None:
    """key.json holds the data key in clear, or wrapped to the recipient, as the
    signed manifest says."""
    if not isinstance(keyinfo, dict):
        r.fail("key.json", "not a record")
        return None
    if not to_recipient:
        fields = records.parse(r, "key.json", keyinfo, {"data_key": records.b64_bytes(32)},
                               exact=True)
        return fields["data_key"] if fields else None
    outer = records.parse(r, "key.json", keyinfo, {"wrapped_for_recipient": lambda v: v},
                          exact=True)
    wrapped = outer and records.parse(r, "key.json wrapped_for_recipient",
                                      outer["wrapped_for_recipient"], WRAPPED, exact=True)
    if not wrapped or recipient_private is None:
        return None
    try:
        return _unwrap_with(recipient_private, keyinfo["wrapped_for_recipient"], session_id)
    except (InvalidTag, ValueError):
        r.fail("key", "cannot unwrap the data key with this private key")
        return None
