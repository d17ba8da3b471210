"""Reading a config file: TOML → ``${VAR}``/``${file:}`` substitution → the validated
models of :mod:`tableship.config.models` → the cross-key checks of
:mod:`tableship.config.validate`. Every problem found is reported at once, each with
its key path (:mod:`tableship.config.problems`); ``[defaults]`` is merged into each job,
table lists are expanded (:mod:`tableship.config.tables`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from tableship.config.models import (
    AlertsConfig,
    ChannelConfig,
    Config,
    DestinationConfig,
    JobConfig,
    Settings,
    SourceConfig,
)
from tableship.config.problems import validate
from tableship.config.substitute import substitute
from tableship.config.tables import expand as expand_tables
from tableship.config.validate import collision_problems, job_problems
from tableship.core import plugins, redact
from tableship.core.errors import ConfigError
from tableship.destinations.base import REGISTRY as DESTINATION_TYPES
from tableship.sources.base import REGISTRY as SOURCE_TYPES

DEFAULT_CONFIG = "tableship.toml"

_SOURCE = TypeAdapter(SourceConfig)
_DEST = TypeAdapter(DestinationConfig)
BUILTIN_TYPES = {"source": SOURCE_TYPES, "destination": DESTINATION_TYPES}
_CHANNEL = TypeAdapter(ChannelConfig)
_TOP_KEYS = {"settings", "sources", "destinations", "defaults", "jobs", "alerts"}
_ALERT_KEYS = set(AlertsConfig.model_fields) - {"definitions"}


def _schema(kind: str, builtin: TypeAdapter, raw: Any) -> Any:
    """What validates a ``[sources.x]`` / ``[destinations.x]`` table: the built-in types'
    union, or the ``config_model`` of the installed plugin registering its ``type``
    (core/plugins.py)."""
    type_ = raw.get("type") if isinstance(raw, dict) else None
    if isinstance(type_, str) and type_ not in BUILTIN_TYPES[kind]:
        cls = plugins.plugin(kind, type_)
        if cls is not None:
            return cls.config_model
    return builtin


_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _placeholders(value: Any, path: str, problems: list[str]) -> None:
    """A ``"<...>"`` value is a placeholder of a starter or imported config (``tableship init``,
    ``import-legacy``), never a real value: refused until it is filled in."""
    if isinstance(value, dict):
        for k, v in value.items():
            _placeholders(v, f"{path}.{k}" if path else k, problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _placeholders(v, f"{path}[{i}]", problems)
    elif isinstance(value, str) and _PLACEHOLDER.fullmatch(value.strip()):
        problems.append(f"{path}: {value!r} is a placeholder: replace it with the real value")


def _merge(defaults: dict, job: dict) -> dict:
    out = dict(defaults)
    if "destination" in job or "destinations" in job:  # a job's own destination(s) replace the default's
        out.pop("destination", None)
        out.pop("destinations", None)
    for k, v in job.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            base = out[k]
            if (
                k == "compression"
                and "level" not in v
                and v.get("codec", base.get("codec")) != base.get("codec")
            ):
                base = {x: y for x, y in base.items() if x != "level"}  # a level belongs to its codec
            if k == "format" and "preset" in v:
                base = {}  # a job's preset replaces the default dialect instead of being overridden by it
            out[k] = {**base, **v}
        else:
            out[k] = v
    return out


def _check_defaults(defaults: dict, problems: list[str]) -> dict:
    """Unknown keys of [defaults] (and of its inline tables) are reported once, under
    ``defaults.``, and dropped, instead of once per job under a misleading ``jobs.<name>.``."""
    out = {}
    for key, value in defaults.items():
        field = JobConfig.model_fields.get(key)
        if key == "destination":
            out[key] = value
            continue
        if field is None or key == "name":
            problems.append(f"defaults.{key}: unknown key (check the spelling)")
            continue
        sub = field.annotation
        if isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, BaseModel):
            known = set(sub.model_fields) | {f.alias for f in sub.model_fields.values() if f.alias}
            for k in [k for k in value if k not in known]:
                problems.append(f"defaults.{key}.{k}: unknown key (check the spelling)")
            value = {k: v for k, v in value.items() if k in known}
        out[key] = value
    return out


def config_path(path: str | os.PathLike | None) -> Path:
    """The config file to use: explicit path, else $TABLESHIP_CONFIG, else ./tableship.toml."""
    return Path(path or os.environ.get("TABLESHIP_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read, substitute, validate. Raises ConfigError listing every problem found."""
    path = config_path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(path)!r} not found",
            "pass --config PATH, set TABLESHIP_CONFIG, or run 'tableship demo' to see a sample",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file {str(path)!r}: {exc}", "check the path and its permissions"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the syntax at the line shown") from None
    return parse_config(raw, path.resolve())


def parse_config(raw: dict, path: Path) -> Config:
    problems: list[str] = []
    file_values: set[str] = set()
    raw = substitute(raw, "", problems, file_values)
    _placeholders(raw, "", problems)
    # every output of this process is redacted with these from now on (see redact.py)
    secrets = redact.raw_secrets(raw) | file_values
    redact.activate(secrets)
    ctx = {"base": path.parent}
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown section (expected one of {', '.join(sorted(_TOP_KEYS))})")

    def table(key: str) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            problems.append(f"{key}: must be a table")
            return {}
        return value

    settings = validate(Settings, table("settings"), "settings", problems, ctx) or Settings()
    sources = {
        n: validate(_schema("source", _SOURCE, v), v, f"sources.{n}", problems, ctx, plugin_types=True)
        for n, v in table("sources").items()
    }
    dests = {
        n: validate(
            _schema("destination", _DEST, v), v, f"destinations.{n}", problems, ctx, plugin_types=True
        )
        for n, v in table("destinations").items()
    }
    defaults = _check_defaults(table("defaults"), problems)

    jobs = _parse_jobs(table("jobs"), defaults, sources, dests, path, problems, ctx)

    staging = settings.staging_dir or settings.state_dir / "staging"
    for job in jobs.values():
        for dest in job.destinations:
            problems += job_problems(job, dests.get(dest), staging, dest)
    problems += collision_problems(jobs, dests)

    alerts, defs = _parse_alerts(table("alerts"), problems, ctx)

    secrets |= redact.model_secrets([sources, dests, defs])
    redact.activate(secrets)
    if problems:
        n = len(problems)
        raise ConfigError(
            f"{path}: {problems[0]}"
            + (f" (and {n - 1} more problem{'s' if n > 2 else ''})" if n > 1 else ""),
            "fix the config file; 'tableship config validate' lists every problem",
            problems=[f"{path}: {p}" for p in problems],
        )
    return Config(path, settings, sources, dests, jobs, alerts or AlertsConfig(), frozenset(secrets))


def _parse_jobs(
    jobs_raw: dict, defaults: dict, sources: dict, dests: dict, path: Path, problems: list[str], ctx: dict
) -> dict[str, JobConfig]:
    """``[jobs.*]``: table lists expanded, ``[defaults]`` merged, the source and destination
    names checked, each job validated (every problem appended to ``problems``)."""
    if not jobs_raw:
        problems.append(
            "jobs: no job defined — add a [jobs.<name>] table with at least 'table = \"db.table\"'"
        )
    jobs: dict[str, JobConfig] = {}
    bodies: dict[str, dict] = {}
    for block, body in jobs_raw.items():
        if not isinstance(body, dict):
            problems.append(f"jobs.{block}: must be a table")
            continue
        for name, one in expand_tables(block, body, path.parent, problems).items():
            if name in bodies:
                problems.append(
                    f"jobs.{block}: job name {name!r} is used twice (a [jobs.{name}] block and a table "
                    "list entry): rename the block or drop the table from the list"
                )
                continue
            bodies[name] = one
    for name, body in bodies.items():
        data = _merge(defaults, body)
        data["name"] = name
        if "source" not in data and len(sources) == 1:
            data["source"] = next(iter(sources))
        if "destination" in data and "destinations" in data:
            problems.append(
                f"jobs.{name}: both 'destination' and 'destinations' are given: keep one "
                '(destinations = ["a", "b"] for several)'
            )
            continue
        if "destination" in data:  # destination = "x" (or a list, as a new user may write it)
            one = data.pop("destination")
            data["destinations"] = one if isinstance(one, list) else [one]
        if "destinations" not in data and len(dests) == 1:
            data["destinations"] = [next(iter(dests))]
        # checked before the job's own validation so that they are reported even when it fails
        if isinstance(data.get("source"), str) and data["source"] not in sources:
            problems.append(
                f"jobs.{name}.source: unknown source {data['source']!r} "
                f"(defined: {', '.join(sources) or 'none'})"
            )
        if isinstance(data.get("destinations"), list):
            for d in data["destinations"]:
                if isinstance(d, str) and d not in dests:
                    problems.append(
                        f"jobs.{name}.destination: unknown destination {d!r} "
                        f"(defined: {', '.join(dests) or 'none'})"
                    )
        before = len(problems)
        job = validate(JobConfig, data, f"jobs.{name}", problems, ctx)
        # the key a user most likely forgot is the single one
        problems[before:] = [
            p.replace(f"jobs.{name}.destinations: required", f"jobs.{name}.destination: required")
            for p in problems[before:]
        ]
        if job is None:
            continue
        jobs[name] = job
    return jobs


def _parse_alerts(alerts_raw: dict, problems: list[str], ctx: dict) -> tuple[AlertsConfig | None, dict]:
    """``[alerts]``: its scalars and the channel definitions (``[alerts.<name>]`` tables)."""
    scalars = {k: v for k, v in alerts_raw.items() if k in _ALERT_KEYS}
    defs = {}
    for k, v in alerts_raw.items():
        if k in _ALERT_KEYS:
            continue
        if not isinstance(v, dict):
            problems.append(f"alerts.{k}: unknown key (channel definitions are tables like [alerts.{k}])")
            continue
        defs[k] = validate(_CHANNEL, v, f"alerts.{k}", problems, ctx)
    alerts = validate(
        AlertsConfig,
        {**scalars, "definitions": {k: v for k, v in defs.items() if v}},
        "alerts",
        problems,
        ctx,
    )
    return alerts, defs
