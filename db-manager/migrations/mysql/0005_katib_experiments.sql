-- katib-rs extension tables (Katib keeps these objects in etcd as CRs): the local runtime's
-- Experiments and Trials, written as they change, so the web UI reads a page in one query.
-- `summary` (experiments) and `row_json` (trials) are the small JSON documents list views
-- read; `body` is the whole object in Katib's JSON shape. Names are VARBINARY (exact bytes).
CREATE TABLE IF NOT EXISTS katib_experiments (
    namespace VARBINARY(253) NOT NULL,
    name VARBINARY(253) NOT NULL,
    status VARCHAR(64) NOT NULL,
    summary LONGTEXT NOT NULL,
    body LONGTEXT NOT NULL,
    run_dir TEXT NULL,
    created VARCHAR(64) NOT NULL,
    updated VARCHAR(64) NOT NULL,
    PRIMARY KEY (namespace, name),
    INDEX katib_experiments_updated (updated)
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS katib_trials (
    namespace VARBINARY(253) NOT NULL,
    experiment VARBINARY(253) NOT NULL,
    name VARBINARY(253) NOT NULL,
    seq BIGINT NOT NULL,
    status VARCHAR(64) NOT NULL,
    objective DOUBLE NULL,
    row_json LONGTEXT NOT NULL,
    body LONGTEXT NOT NULL,
    updated VARCHAR(64) NOT NULL,
    PRIMARY KEY (namespace, experiment, name),
    INDEX katib_trials_by_seq (namespace, experiment, seq)
) DEFAULT CHARSET = utf8mb4;
