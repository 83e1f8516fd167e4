-- Katib has no secondary index; every GetObservationLog filters on trial_name and
-- orders by time, so index exactly that. MySQL (unlike MariaDB) has no
-- CREATE INDEX IF NOT EXISTS; sqlx's migration table guarantees this runs once.
CREATE INDEX observation_logs_trial_name_time
    ON observation_logs (trial_name, time);
