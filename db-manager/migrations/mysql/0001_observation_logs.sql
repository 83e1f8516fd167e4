-- Katib's observation_logs table, verbatim from pkg/db/v1beta1/mysql/init.go.
-- IF NOT EXISTS: a database Katib already initialised is adopted, not broken.
CREATE TABLE IF NOT EXISTS observation_logs (
    trial_name VARCHAR(255) NOT NULL,
    id INT AUTO_INCREMENT PRIMARY KEY,
    time DATETIME(6),
    metric_name VARCHAR(255) NOT NULL,
    value TEXT NOT NULL
);
