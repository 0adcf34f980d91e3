"""`vteller` command line: serve, users, token, keys, audit, identity, backend, sim,
protocol."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import re
import signal
import sys
import time
from pathlib import Path

from vteller.config import Settings, SettingsError, load_settings
from vteller.media import native

ROLES = ("teller", "supervisor", "auditor")


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    return load_settings(getattr(args, "config", None), **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers is not None:
        from vteller.workers import serve_workers

        return serve_workers(args, _settings(args, host=args.host, port=args.port,
                                             dev_mode=True if args.dev else None))
    from vteller.app import DEV_CREDENTIALS, build, create_app, seed_dev_users
    from vteller.gateway.site import GuardedSite, runner_for
    from vteller.observability import configure_logging
    from vteller.routing.redis_store import RedisRouter
    from vteller.tls import ensure_dev_certificates, server_ssl_context

    started = time.monotonic()
    settings = _settings(args, host=args.host, port=args.port,
                         dev_mode=True if args.dev else None)
    configure_logging(settings.log_level)
    if settings.tls_cert_file and settings.tls_key_file:
        cert, key = settings.tls_cert_file, settings.tls_key_file
    else:
        cert, key, made = ensure_dev_certificates(
            settings.certs_dir, ["localhost", "127.0.0.1", "::1", *settings.public_names])
        if made:
            print(f"made dev TLS certificates in {settings.certs_dir}/ "
                  f"(trust {settings.certs_dir}/dev-ca.pem to avoid browser warnings)")
    components = build(settings)
    created = seed_dev_users(settings, components.store) if settings.dev_mode else []
    app = create_app(settings, components)
    host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host
    base = f"https://{host}:{settings.port}"

    def announce() -> None:
        print(f"vteller ready in {time.monotonic() - started:.2f} s", flush=True)
        print(f"  customer page:  {base}/customer")
        print(f"  teller console: {base}/teller")
        print(f"  supervisor:     {base}/supervisor")
        if settings.media_forwarding == "encoded":
            print(f"  packet forwarding: {native.describe()}")
        if settings.dev_mode:
            print("  dev mode: the customer page gets a demo token; staff accounts and the"
                  " bank-backend key (reference photos: see README):")
            for username, role, password in created:
                what = "key" if role == "backend" else "password"
                print(f"    {username} ({role}) {what}: {password}")
            if not created:
                print(f"    see {settings.data_dir / DEV_CREDENTIALS} (0600)")
        else:
            print("  staff log in with accounts made by `vteller users add`")
        print("  health: /healthz  readiness: /readyz  metrics: /metrics  (Ctrl-C stops)")
        sys.stdout.flush()

    async def run() -> None:
        loop_ = asyncio.get_running_loop()
        runner = runner_for(app, settings.keepalive_timeout_s)
        await runner.setup()
        tls = server_ssl_context(cert, key)
        for port, reuse in ((settings.port, settings.reuse_port), (settings.node_port, False)):
            if port is not None:  # the shared port, and this node's own (workers)
                await GuardedSite(runner, settings.host, port, ssl_context=tls,
                                  header_timeout_s=settings.header_timeout_s,
                                  tls_handshake_timeout_s=settings.tls_handshake_timeout_s,
                                  reuse_port=reuse).start()
        announce()
        # start the face-analysis workers now, not during the first identity check
        warm = loop_.run_in_executor(None, components.identity.analyzer.warm_up)
        warming_since = time.monotonic()

        def warmed(done: asyncio.Future[bool]) -> None:
            if not done.cancelled():
                ok = done.exception() is None and done.result()
                print(f"vteller analysis workers {'ready' if ok else 'failed to start'} "
                      f"({time.monotonic() - warming_since:.1f} s)", flush=True)
            freeze_startup_heap()

        warm.add_done_callback(warmed)
        stop = asyncio.Event()
        now = asyncio.Event()
        loop = asyncio.get_running_loop()

        def signalled() -> None:
            (now if stop.is_set() else stop).set()  # a second signal: stop at once

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signalled)
        if isinstance(components.router, RedisRouter):  # another node took our queue: drain
            components.router.on_lost = lambda: loop.call_soon_threadsafe(stop.set)
        await stop.wait()
        warm.cancel()
        if components.manager is not None and settings.drain_s > 0:
            print(f"vteller draining: no new calls; calls in progress may finish (at most "
                  f"{settings.drain_s:.0f} s; a second signal stops now)", flush=True)
            drain = asyncio.ensure_future(components.manager.drain(settings.drain_s))
            await asyncio.wait([drain, asyncio.ensure_future(now.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
        print("vteller stopping: ending calls", flush=True)
        await runner.cleanup()
        components.store.close()

    if settings.event_loop == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())
    return 0


def freeze_startup_heap() -> int:
    """Move every object alive after start-up (modules, models, the app) out of the
    collector's reach (``gc.freeze``). With a dozen recorded calls a full collection
    walked about 180,000 objects, 120,000 of them from start-up, and held the GIL for
    up to 100-200 ms. Returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from vteller.app import open_database, prepare_data

    settings = _settings(args)
    prepare_data(settings)
    return open_database(settings)


def _database(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(settings, the raw database) for the schema commands; None when unreachable."""
    from vteller.app import prepare_data
    from vteller.store import db

    settings = _settings(args)
    prepare_data(settings)
    try:
        return settings, db.connect(settings.database_url, settings.database_path)
    except db.StoreError as exc:
        print(f"VTELLER_DATABASE_URL: {exc}", file=sys.stderr)
        return settings, None


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from vteller.store import schema

    _, database = _database(args)
    if database is None:
        return 2
    try:
        before = schema.current_version(database)
        applied = schema.migrate(database)
    except schema.SchemaMismatch as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        database.close()
    for m in applied:
        print(f"applied {m.version}: {m.name}")
    print(f"schema version {before} -> {schema.LATEST}" if applied else
          f"schema version {schema.LATEST}: up to date")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from vteller.store import schema

    settings, database = _database(args)
    if database is None:
        return 2
    try:
        current = schema.current_version(database)
    finally:
        database.close()
    engine = "PostgreSQL" if settings.database_url else f"SQLite {settings.database_path}"
    print(f"{engine}: schema version {current}, this vteller {schema.LATEST}")
    for m in schema.MIGRATIONS:
        print(f"  {'applied' if m.version <= current else 'pending'} {m.version}: {m.name}")
    return 0 if current == schema.LATEST else 1


def cmd_users_add(args: argparse.Namespace) -> int:
    from vteller.auth import StaffAuth
    from vteller.auth.staff import USERNAME_PATTERN

    if not re.match(USERNAME_PATTERN, args.username):
        print("error: username must be 2-64 of a-z 0-9 _ . -", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("error: passwords differ", file=sys.stderr)
            return 2
    try:
        hashed = StaffAuth.hash_password(password)
        profile = (_profile(args) if args.role == "teller" else
                   _auditor_profile(args) if args.role == "auditor" else None)
        _store(args).add_user(args.username, args.display_name or args.username, args.role, hashed,
                              profile)
    except (ValueError, KeyError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"added {args.role} {args.username}")
    return 0


def _profile(args: argparse.Namespace) -> dict[str, object]:
    """A teller's routing profile from --skills a:0.8,b:0.5 --languages --certifications."""
    from vteller.routing import TellerProfile

    skills = {}
    for item in (args.skills or "general:0.5").split(","):
        name, _, level = item.partition(":")
        value = float(level or 0.5)
        if not name or not 0 < value <= 1:
            raise ValueError(f"bad skill {item!r}: use NAME:PROFICIENCY with 0 < proficiency <= 1")
        skills[name.strip()] = value
    if not 0 <= args.capability <= 1:
        raise ValueError("capability must be between 0 and 1")
    return TellerProfile(
        skills=skills,
        languages=frozenset((args.languages or "en").split(",")),
        certifications=frozenset(c for c in (args.certifications or "").split(",") if c),
        capability=args.capability).to_dict()


def _auditor_profile(args: argparse.Namespace) -> dict[str, object]:
    """An auditor's permissions: `review_access` lets them read the access log."""
    permissions = [p for p in (args.permissions or "").split(",") if p]
    if set(permissions) - {"review_access"}:
        raise ValueError("the only auditor permission is review_access")
    return {"permissions": permissions}


def cmd_users_profile(args: argparse.Namespace) -> int:
    try:
        profile = _profile(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not _store(args).set_profile(args.username, profile):
        print(f"error: no user {args.username!r}", file=sys.stderr)
        return 1
    print(f"{args.username}: {profile} (applies at the teller's next login)")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    for u in _store(args).list_users():
        skills = ",".join(f"{k}:{v:g}" for k, v in (u.profile.get("skills") or {}).items())
        print(f"{u.username:24} {u.role:11} {'disabled' if u.disabled else 'active':9} "
              f"{u.display_name:20} {skills}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    enable = args.users_cmd == "enable"
    if not _store(args).set_disabled(args.username, not enable):
        print(f"error: no user {args.username!r}", file=sys.stderr)
        return 1
    print(f"{'enabled' if enable else 'disabled'} {args.username}"
          + ("" if enable else " (their sessions are ended)"))
    return 0


def cmd_token_issue(args: argparse.Namespace) -> int:
    from vteller.app import prepare_data
    from vteller.auth import DevTokenIssuer

    settings = _settings(args)
    prepare_data(settings)
    issuer = DevTokenIssuer.load_or_create(settings.keys_dir, settings.customer_token_issuer,
                                           settings.customer_token_audience)
    segments = tuple(s for s in (args.segments or "").split(",") if s)
    print(issuer.issue(args.customer_id, args.name, args.birth_year, segments, args.ref_photo,
                       ttl_s=args.ttl))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from vteller.routing.report import run

    run(tellers=args.tellers, hours=args.hours, policy=_settings(args).routing)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from vteller.audit import LocalKeyring

    settings = _settings(args)
    if settings.kek_provider != "local":
        print("error: keys are managed by the configured provider, not here", file=sys.stderr)
        return 2
    ring = LocalKeyring(settings.kek_dir)
    if args.keys_cmd == "rotate":
        print(f"new key-encryption key {ring.rotate()}: used for new sessions; "
              "older sessions stay readable")
    else:
        ids = sorted(p.stem[4:] for p in settings.kek_dir.glob("kek-*.key"))
        print(f"key ring {settings.kek_dir}: current {ring.current_id}; all: {', '.join(ids)}")
    return 0


def cmd_keys_public(args: argparse.Namespace) -> int:
    from vteller.audit.trail import load_or_create_signing_key, public_pem

    print(public_pem(load_or_create_signing_key(_settings(args).kek_dir).public_key()), end="")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from vteller.app import kek_provider
    from vteller.audit.trail import load_or_create_signing_key
    from vteller.audit.verify import verify_session

    settings = _settings(args)
    store = _store(args)
    if args.public_key:
        public = serialization.load_pem_public_key(Path(args.public_key).read_bytes())
    else:
        public = load_or_create_signing_key(settings.kek_dir).public_key()
    kek = None if args.no_keys else kek_provider(settings)

    def progress(stage: str, done: int, total: int) -> None:
        print(f"  {stage}: {done}/{total}", file=sys.stderr, flush=True)

    from vteller.app import open_blobs

    report = verify_session(store, args.session, public, kek,  # type: ignore[arg-type]
                            open_blobs(settings), progress)
    for line in report.checked:
        print(f"checked {line}")
    if report.incomplete:
        print("note: session sealed as incomplete after a server crash")
    for problem in report.problems:
        print(f"FAILED {problem}")
    print(f"session {args.session}: {'VERIFIED' if report.ok else 'NOT VERIFIED'}")
    return 0 if report.ok else 1


def cmd_identity_eval(args: argparse.Namespace) -> int:
    import json

    from vteller.identity.evaluate import evaluate, render

    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    report = evaluate(folder, policy=_settings(args).identity, clip_frames=args.clip_frames)
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))
    return 0 if report.samples else 1


def cmd_identity_enroll(args: argparse.Namespace) -> int:
    from vteller.app import build

    async def run() -> dict[str, object]:
        components = build(_settings(args), serving=False)
        try:
            return await components.identity.enroll(args.customer_id,
                                                    Path(args.photo).read_bytes(), "cli")
        finally:
            components.identity.close()

    from vteller.identity import EnrollmentError

    try:
        result = asyncio.run(run())
    except EnrollmentError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot read {args.photo}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"reference for {args.customer_id} {'replaced' if result['replaced'] else 'enrolled'}"
          f" (face {result['face_px']} px; audit session {result['audit_session']})")
    return 0


def cmd_backend(args: argparse.Namespace) -> int:
    from vteller.auth import ServiceAuth

    store = _store(args)
    if args.backend_cmd == "add":
        try:
            key = ServiceAuth(store).create(args.name)
        except (ValueError, KeyError) as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 1
        print(f"backend credential {args.name} (shown once; send as 'Authorization: Bearer'):")
        print(key)
    elif args.backend_cmd == "revoke":
        if not store.revoke_service_credential(args.name):
            print(f"error: no credential {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.name}")
    else:
        for name, created, disabled in store.list_service_credentials():
            print(f"{name}\t{time.strftime('%Y-%m-%d', time.gmtime(created))}"
                  f"\t{'revoked' if disabled else 'active'}")
    return 0


def _audit_parts(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from vteller.app import build

    components = build(_settings(args), serving=False)
    components.identity.close()
    return components


def _cli_user() -> str:
    return "cli:" + getpass.getuser()


def cmd_audit_export(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from vteller.audit.bundle import export_bundle

    c = _audit_parts(args)
    recipient = (serialization.load_pem_public_key(Path(args.recipient).read_bytes())
                 if args.recipient else None)
    out = Path(args.out or f"vteller-{args.session}.zip")
    c.access.record(_cli_user(), "export", args.session, args.reason,
                    encrypted_to_recipient=recipient is not None)

    def progress(done: int, total: int) -> None:
        print(f"\r  exporting {done}/{total} parts", end="", file=sys.stderr, flush=True)

    try:
        with out.open("wb") as fh:
            manifest = export_bundle(c.store, args.session, c.trail, c.kek, c.blobs,
                                     fh, recipient, progress)  # type: ignore[arg-type]
    except LookupError as exc:
        out.unlink(missing_ok=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\nwrote {out} ({len(manifest['files'])} files; signing key sha256 "
          f"{manifest['public_key_sha256'][:16]}...)")
    return 0


def cmd_audit_verify_access(args: argparse.Namespace) -> int:
    from vteller.audit.access import verify
    from vteller.audit.trail import load_or_create_signing_key

    public = load_or_create_signing_key(_settings(args).kek_dir).public_key()
    report = verify(_store(args), public)
    for problem in report.problems:
        print(f"FAILED {problem}")
    print(f"access log: {report.entries} entries, "
          f"{'VERIFIED' if report.ok else 'NOT VERIFIED'}")
    return 0 if report.ok else 1


def cmd_audit_verify_bundle(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from vteller.audit.bundle import verify_bundle

    pinned = (serialization.load_pem_public_key(Path(args.public_key).read_bytes())
              if args.public_key else None)
    private = (serialization.load_pem_private_key(Path(args.private_key).read_bytes(), None)
               if args.private_key else None)
    report = verify_bundle(args.bundle, pinned, private)  # type: ignore[arg-type]
    for line in report.checked:
        print(f"checked {line}")
    for problem in report.problems:
        print(f"FAILED {problem}")
    print(f"signing key sha256: {report.public_key_sha256}"
          + ("" if pinned else " (not pinned: compare it with the bank's published key)"))
    print(f"bundle {args.bundle}: {'VERIFIED' if report.ok else 'NOT VERIFIED'}")
    return 0 if report.ok else 1


def cmd_audit_purge(args: argparse.Namespace) -> int:
    from vteller.audit.retention import purge

    c = _audit_parts(args)
    done = purge(c.store, c.trail, c.blobs, c.settings.retention, dry_run=args.dry_run)
    for item in done:
        if not args.dry_run:
            c.access.record(_cli_user(), "purge", item.session_id, "retention expired")
        print(f"{'would purge' if args.dry_run else 'purged'} {item.session_id} "
              f"({item.business_type}, ended {time.strftime('%Y-%m-%d', time.gmtime(item.ended_at))})")
    print(f"{len(done)} session(s) {'due' if args.dry_run else 'purged'}")
    return 0


def cmd_audit_hold(args: argparse.Namespace) -> int:
    c = _audit_parts(args)
    c.access.record(_cli_user(), "hold.clear" if args.clear else "hold.set", args.session,
                    args.reason)
    c.store.set_legal_hold(args.session, not args.clear, _cli_user(), args.reason)
    print(f"legal hold {'cleared' if args.clear else 'set'} on {args.session}")
    return 0


def cmd_audit_recipient_key(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from vteller.tls import write_private

    key = X25519PrivateKey.generate()
    write_private(Path(args.out), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    Path(args.out + ".pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    print(f"private key {args.out} (0600), public key {args.out}.pub")
    return 0


def cmd_protocol_export(args: argparse.Namespace) -> int:
    from vteller.protocol.schema import export

    for path in export(Path(args.out)):
        print(path)
    return 0


def _profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skills", help="teller skills NAME:PROFICIENCY,... (default general:0.5)")
    p.add_argument("--languages", help="comma list (default en)")
    p.add_argument("--certifications", help="comma list, e.g. elderly_care")
    p.add_argument("--capability", type=float, default=0.5, help="0..1 (default 0.5)")
    p.add_argument("--permissions", help="auditors: review_access (read the access log)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vteller", description="Remote-banking video teller server")
    p.add_argument("--config", type=Path, help="TOML settings file (env VTELLER_* wins)")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the HTTPS signaling and media server")
    s.add_argument("--host", help="bind address (VTELLER_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (VTELLER_PORT, default 8443)")
    s.add_argument("--dev", action="store_true",
                   help="dev mode: demo customer tokens and demo staff accounts")
    s.add_argument("--workers", type=int, nargs="?", const=0, metavar="N",
                   help="run N node processes sharing the port and one queue (without N: "
                   "one per core); needs VTELLER_REDIS_URL and VTELLER_DATABASE_URL")
    s.set_defaults(func=cmd_serve)

    u = sub.add_parser("users", help="manage staff accounts").add_subparsers(
        dest="users_cmd", required=True)
    a = u.add_parser("add", help="add a staff account (password prompted, argon2id)")
    a.add_argument("username")
    a.add_argument("--role", choices=ROLES, required=True)
    a.add_argument("--display-name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _profile_options(a)
    a.set_defaults(func=cmd_users_add)
    pf = u.add_parser("profile", help="set a teller's skills, languages, certifications")
    pf.add_argument("username")
    _profile_options(pf)
    pf.set_defaults(func=cmd_users_profile)
    u.add_parser("list", help="list staff accounts").set_defaults(func=cmd_users_list)
    for name, text in (("disable", "disable an account and end its sessions"),
                       ("enable", "re-enable an account")):
        d = u.add_parser(name, help=text)
        d.add_argument("username")
        d.set_defaults(func=cmd_users_disable)

    t = sub.add_parser("token", help="customer tokens (dev stand-in for the bank backend)")
    ts = t.add_subparsers(dest="token_cmd", required=True)
    i = ts.add_parser("issue", help="sign a customer token with the local dev key")
    i.add_argument("--customer-id", required=True)
    i.add_argument("--name", required=True)
    i.add_argument("--birth-year", type=int, required=True)
    i.add_argument("--segments", help="comma-separated segment flags, e.g. military,vip")
    i.add_argument("--ref-photo", help="reference-photo id")
    i.add_argument("--ttl", type=int, default=600, help="lifetime in seconds (default 600)")
    i.set_defaults(func=cmd_token_issue)

    k = sub.add_parser("keys", help="key-encryption keys for recordings").add_subparsers(
        dest="keys_cmd", required=True)
    k.add_parser("rotate", help="new KEK for new sessions (old ones stay readable)"
                 ).set_defaults(func=cmd_keys)
    k.add_parser("show", help="current KEK id and the key ring").set_defaults(func=cmd_keys)
    k.add_parser("public", help="print the checkpoint-signing public key (PEM)"
                 ).set_defaults(func=cmd_keys_public)

    dbp = sub.add_parser("db", help="the database schema").add_subparsers(
        dest="db_cmd", required=True)
    dbp.add_parser("migrate", help="apply pending schema migrations").set_defaults(
        func=cmd_db_migrate)
    dbp.add_parser("status", help="schema version: applied and pending migrations"
                   ).set_defaults(func=cmd_db_status)

    au = sub.add_parser("audit", help="session audit trails").add_subparsers(
        dest="audit_cmd", required=True)
    v = au.add_parser("verify", help="verify a session: chain, signatures, global log, tracks")
    v.add_argument("session")
    v.add_argument("--public-key", help="PEM public key to verify with (default: this server's)")
    v.add_argument("--no-keys", action="store_true",
                   help="without the key-encryption key: skip payload and track decryption")
    v.set_defaults(func=cmd_audit_verify)
    ex = au.add_parser("export", help="write a self-contained evidence bundle (zip)")
    ex.add_argument("session")
    ex.add_argument("--out", help="bundle file (default vteller-SESSION.zip)")
    ex.add_argument("--recipient", help="X25519 public key PEM: media and events only for them")
    ex.add_argument("--reason", required=True, help="why (recorded in the access log)")
    ex.set_defaults(func=cmd_audit_export)
    vb = au.add_parser("verify-bundle", help="verify a bundle offline (no server, no keys)")
    vb.add_argument("bundle")
    vb.add_argument("--public-key", help="the signing key you trust (PEM); else the bundle's")
    vb.add_argument("--private-key", help="recipient X25519 private key PEM, to decrypt")
    vb.set_defaults(func=cmd_audit_verify_bundle)
    va = au.add_parser("verify-access", help="verify the whole access log chain")
    va.set_defaults(func=cmd_audit_verify_access)
    pu = au.add_parser("purge", help="crypto-shred sessions past retention (not on hold)")
    pu.add_argument("--dry-run", action="store_true", help="list what would be purged")
    pu.set_defaults(func=cmd_audit_purge)
    ho = au.add_parser("hold", help="set or clear a legal hold (blocks purge)")
    ho.add_argument("session")
    ho.add_argument("--clear", action="store_true")
    ho.add_argument("--reason", required=True)
    ho.set_defaults(func=cmd_audit_hold)
    rk = au.add_parser("recipient-key", help="make an X25519 key pair for receiving bundles")
    rk.add_argument("out", help="private key file (0600); the public key goes to OUT.pub")
    rk.set_defaults(func=cmd_audit_recipient_key)

    idn = sub.add_parser("identity", help="face references and matching accuracy"
                         ).add_subparsers(dest="identity_cmd", required=True)
    ev = idn.add_parser("eval", help="genuine/impostor distances and FAR/FRR per threshold "
                        "over labelled photos and clips")
    ev.add_argument("dir", help="folder of photos/clips (labels: see identity/evaluate.py)")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.add_argument("--clip-frames", type=int, default=10, help="frames taken per clip")
    ev.set_defaults(func=cmd_identity_eval)
    en = idn.add_parser("enroll", help="store a customer's reference photo (audited)")
    en.add_argument("--customer-id", required=True)
    en.add_argument("photo", help="JPEG or PNG with exactly one face")
    en.set_defaults(func=cmd_identity_enroll)

    be = sub.add_parser("backend", help="service credentials for the bank backend"
                        ).add_subparsers(dest="backend_cmd", required=True)
    ba = be.add_parser("add", help="make a credential (the key is printed once)")
    ba.add_argument("name")
    br = be.add_parser("revoke", help="revoke a credential at once")
    br.add_argument("name")
    be.add_parser("list", help="list credentials")
    for cmd in (ba, br, be.choices["list"]):
        cmd.set_defaults(func=cmd_backend)

    sm = sub.add_parser("sim", help="simulate the queue: routing policy vs FIFO")
    sm.add_argument("--tellers", type=int, default=60)
    sm.add_argument("--hours", type=float, default=8.0)
    sm.set_defaults(func=cmd_sim)

    pr = sub.add_parser("protocol", help="the signaling contract").add_subparsers(
        dest="protocol_cmd", required=True)
    e = pr.add_parser("export", help="write the JSON Schemas of every message")
    e.add_argument("--out", default="signaling/schemas")
    e.set_defaults(func=cmd_protocol_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"vteller: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
