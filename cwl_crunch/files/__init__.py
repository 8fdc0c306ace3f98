"""Content-addressed blobs (and, later, collections built from them).

Imported by crunch-run, which must stay lean: the standard library and `cwl_crunch.domain` only.
"""

from .blobs import (
    BlobCorrupt,
    BlobError,
    BlobMismatch,
    BlobNotFound,
    BlobStore,
    FileBlobStore,
    InvalidHash,
    MemoryBlobStore,
    ReadOnly,
    check_hash,
)

__all__ = [
    "BlobCorrupt",
    "BlobError",
    "BlobMismatch",
    "BlobNotFound",
    "BlobStore",
    "FileBlobStore",
    "InvalidHash",
    "MemoryBlobStore",
    "ReadOnly",
    "check_hash",
]
