"""Object storage paths (``s3://``, ``gs://``, ``az://``): list and copy objects through fsspec.

A source ``path: s3://bucket/prefix/*.parquet`` names one object or a glob of
them. The objects are copied (streamed, a few MiB at a time) into a scratch
folder that lives for the ingest, keeping their names, and read by the same
readers as local files, so a file ingested from a bucket gives the same rows,
quarantine entries and record ids as the same file on disk.

Credentials come from the environment or the provider's standard chain only
(AWS: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance
roles, and ``AWS_ENDPOINT_URL`` for an S3-compatible server; Google:
``GOOGLE_APPLICATION_CREDENTIALS``; Azure: ``AZURE_STORAGE_ACCOUNT_NAME`` and
``AZURE_STORAGE_ACCOUNT_KEY``/``AZURE_STORAGE_CONNECTION_STRING`` or a managed
identity). ``cip.yaml`` never holds them: a source carrying a credential is
refused when the config is read.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cip.profiles.errors import ConfigError, SourceError
from cip.profiles.sources import SourceConfig

log = logging.getLogger(__name__)

__all__ = ["fetch_objects", "filesystem"]

#: scheme -> (fsspec protocol, the package that implements it)
_PROTOCOLS = {
    "s3": ("s3", "s3fs"),
    "gs": ("gcs", "gcsfs"),
    "gcs": ("gcs", "gcsfs"),
    "az": ("abfs", "adlfs"),
    "abfs": ("abfs", "adlfs"),
    "abfss": ("abfs", "adlfs"),
}
_EXTRA = {"gcsfs": "gcs", "adlfs": "azure", "s3fs": ""}


def filesystem(scheme: str):  # noqa: ANN201 (an fsspec AbstractFileSystem)
    """The fsspec filesystem of ``scheme``, configured from the environment only."""
    import fsspec

    protocol, package = _PROTOCOLS[scheme.lower()]
    try:
        # skip_instance_cache: a new ingest sees changed credentials and endpoints
        return fsspec.filesystem(protocol, skip_instance_cache=True)
    except ImportError:
        extra = _EXTRA.get(package)
        hint = f"pip install 'cip-platform[{extra}]'" if extra else f"pip install {package}"
        raise ConfigError(f"{scheme}:// paths need the {package} package ({hint})") from None


def fetch_objects(src: SourceConfig, scratch: Path) -> list[str]:
    """Copy the objects ``src.path`` names into ``scratch``; the local paths, sorted by key."""
    assert src.path is not None
    scheme, rest = src.path.split("://", 1)
    fs = filesystem(scheme)
    try:
        if any(c in rest for c in "*?["):
            keys = sorted(fs.glob(rest))
            keys = [k for k in keys if fs.isfile(k)]
        else:
            keys = [rest] if fs.isfile(rest) else []
    except FileNotFoundError:
        keys = []
    except Exception as exc:  # noqa: BLE001 (provider errors: permissions, endpoint, bucket)
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(f"source {src.name!r}: cannot list {src.path}: {msg}") from None
    if not keys:
        raise SourceError(f"source {src.name!r}: no object found at {src.path}")
    files = []
    for i, key in enumerate(keys):
        # one folder per object: two objects with the same name under different prefixes
        # keep their names (the name is what quarantine and reports show)
        dest = scratch / f"{i:06d}" / Path(key).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with fs.open(key, "rb") as fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout, 8 << 20)
        except Exception as exc:  # noqa: BLE001
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SourceError(f"source {src.name!r}: cannot read {scheme}://{key}: {msg}") from None
        files.append(str(dest))
    log.info("source %s: copied %d object(s) from %s", src.name, len(files), src.path)
    return files
