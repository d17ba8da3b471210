"""Run identity: a fingerprint of everything that shapes a run's archive.

A run records the fingerprint of the config it was planned under. Resuming it under a
config whose fingerprint differs would ship an archive the config no longer describes
(old format, old name, old table), so the pipeline abandons such a run and starts a
fresh one instead (see ``Pipeline.begin``).

The fingerprint names things, it never holds a secret: sources and destinations appear
as name, type and *target* (a path, ``host:port/database``, ``user@host:port/path``);
passwords, keys and the user-info and query parts of a SQLAlchemy URL are left out.
"""

from __future__ import annotations

import json

from tableship.backup.plan import Plan
from tableship.config.models import DestinationSettings, SourceSettings


def source_target(settings: SourceSettings) -> str:
    """Where a source reads from, without any credential."""
    return settings.target


def destination_target(settings: DestinationSettings) -> str:
    """Where a destination writes to, without any credential."""
    return settings.target


def fingerprint(plan: Plan) -> dict:
    """The identity of the archive ``plan`` produces (JSON-ready, no secrets).

    The compression level is the *configured* one (``"auto"`` when left to the codec's
    default), not the level a compressor may choose per block.
    """
    job = plan.job
    src = job.source
    fp = {
        "source": {"name": src.name, "type": src.type, "target": src.target},
        "table": job.table,
        "partition": {
            "column": job.partition_column,
            "type": job.partition_type,
            "format": job.partition_format,
        },
        "window": str(plan.window),
        "format": job.format.model_dump(mode="json", exclude_none=True),
        "compression": {"codec": job.compression.codec, "level": job.compression_level},
        "file_name": plan.file_name,
        "remote_path": plan.remote_path,
        "destinations": [{"name": d.name, "type": d.type, "target": d.target} for d in job.destinations],
    }
    if job.chunk != "none":  # only then: the runs of an unchunked job keep their identity
        fp["chunks"] = {"chunk": job.chunk, "layout": job.layout}
    return fp


def dumps(fp: dict) -> str:
    return json.dumps(fp, sort_keys=True, separators=(",", ":"))


def differences(old: dict, new: dict) -> list[str]:
    """The keys whose values differ, as ``key: old → new`` (short, for one log line)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append(f"{key}: {_short(a)} → {_short(b)}")
    return out


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
