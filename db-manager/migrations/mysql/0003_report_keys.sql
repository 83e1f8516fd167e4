-- Idempotency keys of stored reports (ours; Katib has no such table). One row per
-- ReportObservationLog that wrote rows: request_hash is the SHA-256 (hex) of the request
-- as sent (trial name, then each log's time stamp text, metric name and value). It is
-- inserted in the same transaction as the rows, so a report whose answer was lost and
-- that is sent again finds its key and writes nothing. Rows go with their trial
-- (DeleteObservationLog). Names are VARBINARY so keys compare byte for byte whatever
-- the server's collation (255 characters of utf8mb4 = 1020 bytes).
CREATE TABLE IF NOT EXISTS report_keys (
    trial_name VARBINARY(1020) NOT NULL,
    request_hash CHAR(64) CHARACTER SET ascii NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (trial_name, request_hash)
) DEFAULT CHARSET = utf8mb4;
