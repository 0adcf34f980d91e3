"""Identity references: each customer's face encoding, encrypted by `identity`."""

from __future__ import annotations

from vteller.store.db import Database


class ReferenceRepository:
    db: Database

    def put_reference(self, customer_id: str, kek_id: str, wrapped: bytes, encoding: bytes,
                      photo: bytes | None, source: str, at: float, face_px: int,
                      sharpness: float) -> bool:
        """Insert or replace; True when a previous reference was replaced."""
        with self.db.atomic():
            existed = bool(self.db.execute(
                "SELECT 1 FROM identity_references WHERE customer_id=?", (customer_id,)))
            self.db.execute(
                "INSERT INTO identity_references VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (customer_id) DO UPDATE SET kek_id=excluded.kek_id, "
                "wrapped_key=excluded.wrapped_key, encoding=excluded.encoding, "
                "photo=excluded.photo, source=excluded.source, updated_at=excluded.updated_at, "
                "face_px=excluded.face_px, sharpness=excluded.sharpness",
                (customer_id, kek_id, wrapped, encoding, photo, source, at, face_px, sharpness))
        return existed

    def get_reference(self, customer_id: str) -> tuple[str, bytes, bytes] | None:
        rows = self.db.execute("SELECT kek_id, wrapped_key, encoding FROM identity_references"
                               " WHERE customer_id=?", (customer_id,))
        return (rows[0][0], bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    def delete_reference(self, customer_id: str) -> bool:
        return self.db.rowcount("DELETE FROM identity_references WHERE customer_id=?",
                                (customer_id,)) == 1
