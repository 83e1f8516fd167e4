-- Per trial and metric: the smallest and largest numeric value (with its text as
-- reported) and the latest value, kept up to date in the same transaction as the rows.
-- The bulk best-value read of a whole experiment reads these few rows instead of every
-- observation. Ours; Katib has no such table.
CREATE TABLE IF NOT EXISTS metric_summaries (
    trial_name VARCHAR(255) NOT NULL,
    metric_name VARCHAR(255) NOT NULL,
    min_value DOUBLE PRECISION,
    min_text TEXT,
    max_value DOUBLE PRECISION,
    max_text TEXT,
    latest_time TIMESTAMP(6),
    latest_text TEXT,
    PRIMARY KEY (trial_name, metric_name)
);

-- Backfill from rows already there (rows without a time are skipped, as reads skip them) (a database Katib wrote). "Numeric" is a bounded
-- decimal (at most 30 + 30 digits and a two-digit exponent, so the cast cannot
-- overflow); rows written from now on use the store's exact rule (`store::numeric`).
INSERT INTO metric_summaries
    (trial_name, metric_name, min_value, min_text, max_value, max_text, latest_time, latest_text)
SELECT trial_name, metric_name,
       MAX(CASE WHEN by_min = 1 THEN num END),
       MAX(CASE WHEN by_min = 1 AND num IS NOT NULL THEN value END),
       MAX(CASE WHEN by_max = 1 THEN num END),
       MAX(CASE WHEN by_max = 1 AND num IS NOT NULL THEN value END),
       MAX(CASE WHEN by_time = 1 THEN time END),
       MAX(CASE WHEN by_time = 1 AND time IS NOT NULL THEN value END)
FROM (
    SELECT trial_name, metric_name, value, time, num,
           ROW_NUMBER() OVER (PARTITION BY trial_name, metric_name
                              ORDER BY num IS NULL, num, id) AS by_min,
           ROW_NUMBER() OVER (PARTITION BY trial_name, metric_name
                              ORDER BY num IS NULL, num DESC, id) AS by_max,
           ROW_NUMBER() OVER (PARTITION BY trial_name, metric_name
                              ORDER BY time IS NULL, time DESC, id DESC) AS by_time
    FROM (
        SELECT trial_name, metric_name, value, time, id,
               CASE WHEN value ~ '^[-+]?([0-9]{1,30}[.]?[0-9]{0,30}|[.][0-9]{1,30})([eE][-+]?[0-9]{1,2})?$'
                    THEN value::double precision END AS num
        FROM observation_logs
        WHERE time IS NOT NULL
    ) AS numbered
) AS ranked
GROUP BY trial_name, metric_name;
