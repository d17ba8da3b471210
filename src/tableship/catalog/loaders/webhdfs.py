"""HDFS as the Hive/Spark loader's staging area, written over WebHDFS (``load_staging_webhdfs``).

Per archive, under the configured HDFS folder: ``tableship-load-<hex>/.data.csv.part`` is
written (one WebHDFS ``CREATE``, the CSV streamed), renamed to ``data.csv`` (a NameNode
rename is atomic, and Spark's file listing skips dot files: the engine never reads a
partial file), read by the engine at ``load_staging_uri`` (default: the ``webhdfs://`` URL
itself; a cluster's Spark usually names the same folder ``hdfs://NAMENODE:8020/PATH``) and
deleted after the load. The client is HdfsCLI (the ``hdfs`` package, the ``webhdfs``
extra, imported when used); simple authentication only (``user.name`` =
``load_staging_user``, default the OS user) — a Kerberized cluster needs a mounted
``load_staging`` folder instead.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tableship.catalog.loaders.base import LoadError, TransientLoadError

PART = ".data.csv.part"
FINAL = "data.csv"


class WebHdfsStaging:
    def __init__(self, source: str, url: str, user: str | None, timeout: float = 60):
        parts = urlsplit(url)
        self.source = source
        self.http = f"http://{parts.hostname}:{parts.port}"
        self.root = "/" + parts.path.strip("/")
        self.user = user or getpass.getuser()
        self.url = url
        self.timeout = timeout
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            try:
                from hdfs import InsecureClient  # the webhdfs extra's driver, imported when used
            except ImportError:
                raise LoadError(
                    f"source {self.source!r} stages on HDFS (load_staging_webhdfs) but the WebHDFS "
                    "client is not installed",
                    "pip install 'tableship[webhdfs]'",
                ) from None
            self._client = InsecureClient(self.http, user=self.user, timeout=self.timeout)
        return self._client

    def _error(self, exc: Exception, what: str, refused: bool) -> LoadError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if refused:  # the NameNode answered with an error (rights, a missing parent, safe mode)
            return LoadError(
                f"HDFS staging {self.url}: {what} failed: {first}",
                "check load_staging_webhdfs, load_staging_user and that user's rights on the folder",
            )
        return TransientLoadError(
            f"HDFS staging {self.url}: {what} failed: {type(exc).__name__}: {first}",
            "check that the NameNode's WebHDFS answers, then re-run (archives loaded are skipped)",
        )

    def folder(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def place(self, csv: Path, name: str) -> str:
        """Upload ``csv`` as ``<root>/<name>/data.csv``; the folder's HDFS path."""
        client = self._connect()
        import requests  # HdfsCLI's transport (the webhdfs extra)
        from hdfs.util import HdfsError  # the webhdfs extra's driver

        path = self.folder(name)
        try:
            client.makedirs(path)
            with open(csv, "rb") as data:
                client.write(f"{path}/{PART}", data=data, overwrite=False)
            client.rename(f"{path}/{PART}", f"{path}/{FINAL}")
        except (HdfsError, requests.RequestException, OSError) as exc:
            raise self._error(exc, f"uploading {csv.name}", isinstance(exc, HdfsError)) from None
        return path

    def remove(self, name: str) -> None:
        """Delete ``<root>/<name>`` (a failure is the caller's to ignore: the load is done)."""
        self._connect().delete(self.folder(name), recursive=True)
