"""One archive delivered to one destination: uploaded under a temporary name unless the
destination already holds the same bytes, its sha256 proved there (re-uploaded at most
twice on a mismatch), then its sidecars. The one loop the window's archive
(backup/pipeline.py) and each chunk archive (backup/chunked.py) go through."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tableship.core.errors import DestinationError, TableshipError, VerificationError
from tableship.core.redact import redact_bytes
from tableship.destinations.base import Destination, Digest, digest_hex

log = logging.getLogger("tableship")

Retrying = Callable[[str], Callable[..., Any]]  # what → a retry policy (pipeline.retrying)


class StagedLost(Exception):
    """The staged archive a delivery needs is gone or changed: the run exports it again."""


@dataclass(frozen=True)
class Delivery:
    """What is delivered where: ``sha256`` of the archive that must end at ``remote``."""

    dest: Destination
    remote: str
    sha256: str
    owner: str  # the job's name: the owner part of the destination's temporary names
    where: str  # " on NAME" for a job with several destinations, else ""
    retry: Retrying


def upload_verified(
    d: Delivery,
    upload: Callable[[int], None],
    on_uploaded: Callable[[], None] | None = None,
    replacing: bool = False,
) -> tuple[str, Digest]:
    """Upload (``upload(attempt)`` puts the file under ``d.remote``) unless the destination
    already has the same sha256, then prove the sha256 there. Returns (what was done, the
    destination's digest); raises :class:`VerificationError` after two re-uploads.
    ``replacing``: the final name may hold an earlier version on purpose (a changed chunk,
    a window manifest), replaced without a warning."""
    for attempt in range(3):

        def put(attempt: int = attempt) -> str:
            found = d.dest.sha256(d.remote)
            if found is not None and found.hex == d.sha256:
                return "already on the destination with the same sha256"
            if found is not None and replacing and not attempt:
                log.info("%s%s: replacing the earlier version", d.remote, d.where)
            elif found is not None:
                # a copy under the final name that is not this archive (damaged since an earlier
                # attempt, or changed by hand): say so before replacing it
                log.warning(
                    "verification of %s%s failed: remote file has sha256 %s…, expected %s…; uploading again",
                    d.remote,
                    d.where,
                    found.hex[:12],
                    d.sha256[:12],
                )
            upload(attempt)
            return "uploaded"

        note = d.retry(f"upload of {d.remote}{d.where}")(put)
        log.info("%s%s: %s", d.remote, d.where, note)
        if on_uploaded is not None:
            on_uploaded()
        digest = d.retry(f"verification of {d.remote}{d.where}")(d.dest.sha256, d.remote)
        remote_sha = digest.hex if digest is not None else None
        if digest is not None and remote_sha == d.sha256:
            return note, digest
        problem = (
            "is missing"
            if remote_sha is None
            else f"has sha256 {remote_sha[:12]}…, expected {d.sha256[:12]}…"
        )
        if attempt == 2:
            raise VerificationError(
                f"{d.remote}{d.where} {problem} after re-uploading twice",
                "check the destination's storage, then re-run",
            )
        log.warning(
            "verification of %s%s failed: remote file %s; uploading again", d.remote, d.where, problem
        )
    raise AssertionError("unreachable")  # the loop returns or raises


def write_sidecars(d: Delivery, file_name: str, manifest: dict | None) -> None:
    """``<remote>.sha256`` and ``<remote>.manifest.json`` (redacted). ``manifest`` None: a
    window manifest of ``layout = "chunk"``, which gets its ``.sha256`` only, rewritten only
    when it changed (a re-run with nothing changed uploads nothing)."""
    sidecar = f"{d.sha256}  {file_name}\n".encode()
    if manifest is None:

        def write() -> None:
            if digest_hex(d.dest.sha256(d.remote + ".sha256")) != hashlib.sha256(sidecar).hexdigest():
                d.dest.put_bytes(sidecar, d.remote + ".sha256", d.owner)

    else:
        body = redact_bytes((json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())

        def write() -> None:
            d.dest.put_bytes(sidecar, d.remote + ".sha256", d.owner)
            d.dest.put_bytes(body, d.remote + ".manifest.json", d.owner)

    d.retry(f"writing sidecars of {d.remote}{d.where}")(write)


def delivery_error(failures: list[tuple[str, TableshipError]], total: int) -> TableshipError:
    """The error a run with failed deliveries ends with: the error itself for a job with one
    destination; else one naming each failed destination."""
    if total == 1:
        return failures[0][1]
    ok = total - len(failures)
    text = "; ".join(f"destination {n}: {e.message}" for n, e in failures)
    got = f" ({ok} of {total} destinations verified)" if ok else ""
    hint = failures[0][1].hint or "fix the destination, then re-run"
    return DestinationError(text + got, hint + " (the next run does only the missing deliveries)")
