-- Katib's observation_logs table (pkg/db/v1beta1/mysql/init.go), SQLite dialect.
-- IF NOT EXISTS: a database that already holds this table is adopted, not broken.
-- `time` holds UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (always six fraction digits),
-- so text order is time order and range filters compare correctly.
CREATE TABLE IF NOT EXISTS observation_logs (
    trial_name VARCHAR(255) NOT NULL,
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT,
    metric_name VARCHAR(255) NOT NULL,
    value TEXT NOT NULL
);
