"""tableship 0.1.0's ledger DDL, for the migration tests.

Used by tests/e2e/test_ledger.py and tests/unit/test_ledger_migrations.py.
"""

# tableship 0.1.0's DDL, verbatim from its state.py, archives.py and alerts/incidents.py
# (each ran it on every open; 0.1.0 never set PRAGMA user_version).
V010_STATE = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    run_date TEXT NOT NULL,
    phase TEXT NOT NULL,
    result TEXT NOT NULL,
    failed_phase TEXT,
    error TEXT,
    rows INTEGER,
    archive_bytes INTEGER,
    sha256 TEXT,
    file_name TEXT,
    remote_path TEXT,
    staged_path TEXT,
    manifest TEXT,
    verify_method TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    pid INTEGER,
    host TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job, id);
CREATE TABLE IF NOT EXISTS transitions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL,
    from_phase TEXT,
    to_phase TEXT NOT NULL,
    note TEXT
);
"""
V010_ARCHIVES = """
CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,
    job TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    status TEXT NOT NULL,
    detail TEXT,
    sha256 TEXT,
    method TEXT,
    verified_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verifications_job ON verifications(job, id);
CREATE INDEX IF NOT EXISTS verifications_path ON verifications(job, remote_path, id);
CREATE TABLE IF NOT EXISTS pruned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    sha256 TEXT,
    pruned_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pruned_job ON pruned(job, remote_path);
"""
V010_INCIDENTS = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    first_run_id INTEGER,
    last_run_id INTEGER,
    last_failed_at TEXT,
    last_phase TEXT,
    last_error TEXT,
    resolved_run_id INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open ON incidents(job) WHERE closed_at IS NULL;
CREATE TABLE IF NOT EXISTS alert_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    job TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    failures INTEGER NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    counted_at TEXT,
    pid INTEGER,
    host TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS alert_messages_incident ON alert_messages(incident_id, channel);
CREATE INDEX IF NOT EXISTS alert_messages_budget ON alert_messages(counted_at);
CREATE INDEX IF NOT EXISTS alert_messages_job_state ON alert_messages(job, state);
"""
