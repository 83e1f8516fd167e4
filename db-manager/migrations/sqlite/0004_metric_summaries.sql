-- Per trial and metric: the smallest and largest numeric value (with its text as
-- reported) and the latest value, kept up to date in the same transaction as the rows.
-- The bulk best-value read of a whole experiment reads these few rows instead of every
-- observation. Ours; Katib has no such table.
CREATE TABLE IF NOT EXISTS metric_summaries (
    trial_name TEXT NOT NULL,
    metric_name TEXT NOT NULL,
    min_value REAL,
    min_text TEXT,
    max_value REAL,
    max_text TEXT,
    latest_time TEXT,
    latest_text TEXT,
    PRIMARY KEY (trial_name, metric_name)
);

-- Backfill from rows already there (rows without a time are skipped, as reads skip them). SQLite has no REGEXP: "numeric" here is an
-- approximation (a digit, and only digits, signs, dots and exponent letters); rows
-- written from now on use the exact rule of the store (`store::numeric`).
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
               CASE WHEN value GLOB '*[0-9]*' AND value NOT GLOB '*[^0-9eE.+-]*'
                    THEN CAST(value AS REAL) END AS num
        FROM observation_logs
        WHERE time IS NOT NULL
    ) AS numbered
) AS ranked
GROUP BY trial_name, metric_name;
