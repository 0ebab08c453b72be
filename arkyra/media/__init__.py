"""Local storage for rendered media (speech, video, images), content-addressed by SHA-256."""

from arkyra.media.store import (
    ALLOWED_CONTENT_TYPES,
    DEFAULT_MAX_BYTES,
    MediaStore,
    StoredMedia,
)

__all__ = ["ALLOWED_CONTENT_TYPES", "DEFAULT_MAX_BYTES", "MediaStore", "StoredMedia"]
