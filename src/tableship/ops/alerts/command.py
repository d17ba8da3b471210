"""Command channel: runs ``argv`` with the event in ``TABLESHIP_*`` environment variables
and the plain-text message on stdin (so ``mail -s "$TABLESHIP_SUBJECT" ...`` works)."""

from __future__ import annotations

import os
import subprocess

from tableship.core.interrupts import child_preexec
from tableship.ops.alerts.errors import ChannelError

MAX_ENV_VALUE = 100_000  # Linux refuses single strings over 128 KiB


def send(name: str, cfg, event) -> None:
    env = dict(os.environ)
    for key, value in event.environ().items():
        env[key] = value if len(value) <= MAX_ENV_VALUE else value[:MAX_ENV_VALUE]
    try:
        # preexec: the command dies with tableship (the outbox replays an unsent message)
        proc = subprocess.run(
            cfg.argv,
            input=event.text().encode("utf-8"),
            env=env,
            capture_output=True,
            timeout=cfg.timeout,
            check=False,
            preexec_fn=child_preexec(),
        )
    except FileNotFoundError:
        raise ChannelError(f"command {cfg.argv[0]!r} not found", transient=False) from None
    except PermissionError:
        raise ChannelError(f"command {cfg.argv[0]!r} is not executable", transient=False) from None
    except subprocess.TimeoutExpired:
        raise ChannelError(f"command {cfg.argv[0]!r} timed out after {cfg.timeout:g}s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ChannelError(
            f"command {cfg.argv[0]!r} exited with status {proc.returncode}" + (f": {err[-1]}" if err else "")
        )
