-- Idempotency keys of stored reports (ours; Katib has no such table). One row per
-- ReportObservationLog that wrote rows: request_hash is the SHA-256 (hex) of the request
-- as sent (trial name, then each log's time stamp text, metric name and value). It is
-- inserted in the same transaction as the rows, so a report whose answer was lost and
-- that is sent again finds its key and writes nothing. Rows go with their trial
-- (DeleteObservationLog).
CREATE TABLE IF NOT EXISTS report_keys (
    trial_name VARCHAR(255) NOT NULL,
    request_hash CHAR(64) NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (trial_name, request_hash)
);
