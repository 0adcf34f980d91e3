"""Reference photos: validate an uploaded ID photo and keep its face encoding encrypted.

Validation gives one typed error per problem: not_an_image, too_large, no_face,
several_faces, face_too_small, too_blurry. The 128-d encoding is encrypted with
AES-256-GCM under a fresh data key per reference, wrapped by the key-encryption key
with the customer id as context; the photo itself is kept (encrypted the same way)
only when `keep_reference_photo` is set.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass

import cv2
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image, ImageOps, UnidentifiedImageError

from vteller.audit.keys import KekProvider, WrappedKey, new_data_key
from vteller.identity.faces import FaceEngine, Quality
from vteller.identity.policy import IdentityPolicy
from vteller.store import Store

MAX_REFERENCE_SIDE = 1600
_AAD = b"vteller reference v1|"


class EnrollmentError(Exception):
    """A bad reference photo; ``code`` is the typed error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)  # both args: it crosses process boundaries
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ReferenceFace:
    encoding: np.ndarray
    quality: Quality
    photo: bytes | None = None


def decode_photo(data: bytes, policy: IdentityPolicy) -> np.ndarray:
    """JPEG or PNG bytes to an RGB array (EXIF orientation applied)."""
    if len(data) > policy.max_photo_bytes:
        raise EnrollmentError("too_large", f"photo larger than {policy.max_photo_bytes} bytes")
    if not data:
        raise EnrollmentError("not_an_image", "empty upload")
    try:
        img = Image.open(io.BytesIO(data))
        if img.format not in ("JPEG", "PNG"):
            raise EnrollmentError("not_an_image", "only JPEG and PNG photos are accepted")
        if img.width * img.height > policy.max_photo_pixels:
            raise EnrollmentError("too_large", f"photo has more than {policy.max_photo_pixels} "
                                  "pixels")
        img = ImageOps.exif_transpose(img).convert("RGB")
        img.load()
    except EnrollmentError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            SyntaxError):
        raise EnrollmentError("not_an_image", "not a readable JPEG or PNG image") from None
    rgb = np.asarray(img)
    side = max(rgb.shape[:2])
    if side > MAX_REFERENCE_SIDE:
        scale = MAX_REFERENCE_SIDE / side
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def analyse_reference(engine: FaceEngine, data: bytes, policy: IdentityPolicy) -> ReferenceFace:
    """Validate a reference photo and encode its face (blocking: run in a worker)."""
    rgb = decode_photo(data, policy)
    boxes = engine.detect(rgb, detect_width=0, upsample=1)  # accuracy over speed here
    if not boxes:
        raise EnrollmentError("no_face", "no face found in the photo")
    largest = boxes[0]
    others = [b for b in boxes[1:] if b.height >= 0.4 * largest.height]
    if others:
        raise EnrollmentError("several_faces", f"{len(others) + 1} faces in the photo; "
                              "a reference photo shows exactly one person")
    quality = engine.quality(rgb, largest)
    if quality.face_px < policy.min_reference_face_px:
        raise EnrollmentError("face_too_small", f"face is {quality.face_px} px high; at least "
                              f"{policy.min_reference_face_px} px needed")
    if quality.sharpness < policy.min_reference_sharpness:
        raise EnrollmentError("too_blurry", "the face is not sharp enough "
                              f"({quality.sharpness:.0f} < {policy.min_reference_sharpness:.0f})")
    return ReferenceFace(engine.encode(rgb, largest), quality,
                         data if policy.keep_reference_photo else None)


def _context(customer_id: str) -> str:
    return "reference:" + customer_id


class ReferenceStore:
    """Encrypted reference encodings per customer id (blocking; call from threads)."""

    def __init__(self, store: Store, kek: KekProvider) -> None:
        self._store = store
        self._kek = kek

    def put(self, customer_id: str, ref: ReferenceFace, source: str) -> bool:
        """Store (replacing any previous one). Returns True when it replaced one."""
        key = new_data_key()
        wrapped = self._kek.wrap(key, _context(customer_id))
        aad = _AAD + customer_id.encode()
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, ref.encoding.astype("<f8").tobytes(), aad)
        photo = None
        if ref.photo is not None:
            photo_nonce = os.urandom(12)
            photo = photo_nonce + AESGCM(key).encrypt(photo_nonce, ref.photo, aad + b"|photo")
        return self._store.put_reference(
            customer_id, wrapped.kek_id, wrapped.blob, nonce + ciphertext, photo, source,
            time.time(), ref.quality.face_px, ref.quality.sharpness)

    def get(self, customer_id: str) -> np.ndarray | None:
        row = self._store.get_reference(customer_id)
        if row is None:
            return None
        kek_id, wrapped, blob = row
        key = self._kek.unwrap(WrappedKey(kek_id, wrapped), _context(customer_id))
        plain = AESGCM(key).decrypt(blob[:12], blob[12:], _AAD + customer_id.encode())
        return np.frombuffer(plain, dtype="<f8").astype(np.float64)

    def delete(self, customer_id: str) -> bool:
        return self._store.delete_reference(customer_id)


def fingerprint(encoding: np.ndarray) -> str:
    """A digest of an encoding for the audit trail (the encoding itself stays secret)."""
    return hashlib.sha256(encoding.astype("<f8").tobytes()).hexdigest()[:32]
