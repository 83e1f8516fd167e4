-- SQLite only: fewer pages written per report transaction. Every commit copies each page
-- it changed into the write-ahead log, and a report touched eight or nine:
-- - report_keys and metric_summaries were rowid tables with their primary key as a
--   second B-tree beside them; WITHOUT ROWID keeps each in one B-tree, ordered by
--   that key;
-- - observation_logs' AUTOINCREMENT updated sqlite_sequence on every insert. A plain
--   INTEGER PRIMARY KEY still numbers rows upwards (one more than the largest stored
--   id), so ids keep growing in insertion order; only the ids of deleted newest rows can
--   come back, and nothing refers to an id.
-- Columns, keys and rows are kept as they were. The tables are rebuilt once, here.

CREATE TABLE report_keys_compact (
    trial_name TEXT NOT NULL,
    request_hash CHAR(64) NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (trial_name, request_hash)
) WITHOUT ROWID;
INSERT INTO report_keys_compact (trial_name, request_hash, created_at)
    SELECT trial_name, request_hash, created_at FROM report_keys;
DROP TABLE report_keys;
ALTER TABLE report_keys_compact RENAME TO report_keys;

CREATE TABLE metric_summaries_compact (
    trial_name TEXT NOT NULL,
    metric_name TEXT NOT NULL,
    min_value REAL,
    min_text TEXT,
    max_value REAL,
    max_text TEXT,
    latest_time TEXT,
    latest_text TEXT,
    PRIMARY KEY (trial_name, metric_name)
) WITHOUT ROWID;
INSERT INTO metric_summaries_compact
    (trial_name, metric_name, min_value, min_text, max_value, max_text, latest_time, latest_text)
    SELECT trial_name, metric_name, min_value, min_text, max_value, max_text, latest_time, latest_text
    FROM metric_summaries;
DROP TABLE metric_summaries;
ALTER TABLE metric_summaries_compact RENAME TO metric_summaries;

CREATE TABLE observation_logs_compact (
    trial_name VARCHAR(255) NOT NULL,
    id INTEGER PRIMARY KEY,
    time TEXT,
    metric_name VARCHAR(255) NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO observation_logs_compact (trial_name, id, time, metric_name, value)
    SELECT trial_name, id, time, metric_name, value FROM observation_logs;
DROP TABLE observation_logs;
ALTER TABLE observation_logs_compact RENAME TO observation_logs;
CREATE INDEX observation_logs_trial_name_time ON observation_logs (trial_name, time);
