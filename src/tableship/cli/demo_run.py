"""``tableship demo``: build the demo warehouse and config, then back it up."""

from __future__ import annotations

from pathlib import Path

from tableship.backup.runner import exit_code
from tableship.cli.demo import DEMO_TABLE, create_demo_warehouse, demo_config_text
from tableship.cli.progress import live_progress
from tableship.config.loader import load_config
from tableship.core.log import setup_logging
from tableship.ops.wiring import run_jobs


def run_demo(directory: Path, rows: int, echo=print, verbosity: int = 0) -> int:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    warehouse = directory / "warehouse.duckdb"
    config_file = directory / "tableship.toml"
    if not warehouse.exists():
        echo(f"Creating demo warehouse {warehouse} ({DEMO_TABLE}, {rows:,} rows)…")
        create_demo_warehouse(warehouse, rows=rows)
    if not config_file.exists():
        config_file.write_text(demo_config_text(), encoding="utf-8")
        echo(f"Wrote commented config {config_file}")
    (directory / "backup-server").mkdir(exist_ok=True)
    config = load_config(config_file)
    s = config.settings
    setup_logging(verbosity, s.log_file, max_bytes=s.log_max_bytes, backups=s.log_backups)
    with live_progress(verbosity) as progress:
        outcomes = run_jobs(config, None, progress_factory=progress, echo=echo)
    code = exit_code(outcomes)
    for o in outcomes:
        if o.status != "success" or o.plan is None:  # a success has its plan
            continue
        folder = Path(o.plan.job.destination.settings.path) / o.plan.remote_dir  # the demo ships locally
        archive = folder / o.plan.file_name
        echo("")
        echo(f"Archive:  {archive}")
        echo(f"Manifest: {archive}.manifest.json")
        echo("Inspect it:")
        echo(f"  zcat '{archive}' | head -5")
        echo(f"  (cd '{folder}' && sha256sum -c '{o.plan.file_name}.sha256')")
        echo(f"  tableship --config '{config_file}' status")
    return code
