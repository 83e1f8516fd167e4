-- Katib's observation_logs table, verbatim from pkg/db/v1beta1/postgres/init.go.
-- IF NOT EXISTS: a database Katib already initialised is adopted, not broken.
CREATE TABLE IF NOT EXISTS observation_logs (
    trial_name VARCHAR(255) NOT NULL,
    id serial PRIMARY KEY,
    time TIMESTAMP(6),
    metric_name VARCHAR(255) NOT NULL,
    value TEXT NOT NULL
);
