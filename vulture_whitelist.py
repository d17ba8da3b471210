"""Names vulture reports as unused that ARE used, by something vulture cannot see.

vulture (run by .ci/run and tests/unit/test_static_checks.py as ``vulture src vulture_whitelist.py``)
flags code nothing in src/ refers to by name. Everything it flags is either removed or listed
here with the reason it is alive; add an entry only with such a reason. The file is never
imported: each line only "uses" a name for vulture (``_`` stands for any object).
"""

# ruff: noqa  (not Python to run: bare names and attributes for vulture)

# Click commands: registered on their group by their decorators, called by Click
config_validate  # cli/setup_commands.py
state_migrate  # cli/backup_commands.py

# pydantic: validators run by the model machinery, model_config read by pydantic
_.model_config  # config/models.py
_abs  # config/models.py
_lag  # config/models.py
_preset  # config/models.py
_delim  # config/models.py
_level  # config/models.py
_one_staging  # config/models.py
_partition_format  # config/models.py
_names_render  # config/models.py
_dur  # config/models.py
_known  # config/models.py
_single_destination  # config/models.py
_distinct  # config/models.py
_state_url  # config/models.py

# io and logging protocols: called by the standard library
_.readable  # archive/codecs.py (io.RawIOBase: BufferedReader asks it)
_.writelines  # core/redact.py (a text stream's method, used by print/traceback)
_.lastResort  # core/redact.py (logging's fallback handler, replaced by a redacting one)
_.run_tag  # core/log.py (a LogRecord attribute read by the format string %(run_tag)s)
_.row_factory  # ledger/schema.py (sqlite3.Connection setting)
_.collect  # ops/outputs.py (prometheus_client custom collector protocol)

# ledger rows: every column of a table is a field of the dataclass that reads it
# (dataclass(**row)), whether or not a view shows it
_.verify_method  # ledger/state.py Run
_.updated_at  # ledger/state.py Run, ops/alerts/incidents.py
_.closed_at  # ops/alerts/incidents.py Incident
_.first_run_id  # ops/alerts/incidents.py Incident
_.last_run_id  # ops/alerts/incidents.py Incident
_.resolved_run_id  # ops/alerts/incidents.py Incident
_.verified_at  # ledger/deliveries.py Delivery

# documentation kept next to the code it explains (referenced from docstrings)
IMPALA_SHELL_RULES  # archive/csvrender.py

# classes loaded by name from a registry (core/plugins.load_class)
DuckDBLoader  # catalog/loaders/duckdb.py (catalog/loaders/targets.py REGISTRY)
HS2Loader  # catalog/loaders/hs2.py
SQLAlchemyLoader  # catalog/loaders/sqlalchemy.py

# library callbacks
_.validate_host_public_key  # destinations/sftp/session.py (asyncssh.SSHClient, during the handshake)
_.rich_proxied_file  # cli/progress.py (rich asks a proxied file for the real one)

# result records and APIs for library callers (tableship is a library too: `import tableship`)
_.csv_paths  # catalog/restore_range.py RangeResult: where restore --to left the CSVs
_.not_started  # backup/pool.py PoolResult: the jobs a stopped pool never started
_.set_total  # cli/progress.py: a line's total rows when known (percent and ETA)
build_dag  # ops/airflow.py: the Airflow DAG factory users import (docs/scaling.md)

# backup/identity.py: the credential-free target of a source / destination settings model,
# the public spelling tests/e2e/test_identity.py checks (the specs read settings.target)
source_target
destination_target
