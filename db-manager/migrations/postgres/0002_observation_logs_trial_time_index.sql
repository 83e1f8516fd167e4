-- Katib has no secondary index; every GetObservationLog filters on trial_name and
-- orders by time, so index exactly that.
CREATE INDEX IF NOT EXISTS observation_logs_trial_name_time
    ON observation_logs (trial_name, time);
