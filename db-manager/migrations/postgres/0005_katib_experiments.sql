-- katib-rs extension tables (Katib keeps these objects in etcd as CRs): the local runtime's
-- Experiments and Trials, written as they change, so the web UI reads a page in one query.
-- `summary` (experiments) and `row_json` (trials) are the small JSON documents list views
-- read; `body` is the whole object in Katib's JSON shape.
CREATE TABLE IF NOT EXISTS katib_experiments (
    namespace VARCHAR(253) NOT NULL,
    name VARCHAR(253) NOT NULL,
    status VARCHAR(64) NOT NULL,
    summary TEXT NOT NULL,
    body TEXT NOT NULL,
    run_dir TEXT,
    created VARCHAR(64) NOT NULL,
    updated VARCHAR(64) NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX IF NOT EXISTS katib_experiments_updated ON katib_experiments (updated);

CREATE TABLE IF NOT EXISTS katib_trials (
    namespace VARCHAR(253) NOT NULL,
    experiment VARCHAR(253) NOT NULL,
    name VARCHAR(253) NOT NULL,
    seq BIGINT NOT NULL,
    status VARCHAR(64) NOT NULL,
    objective DOUBLE PRECISION,
    row_json TEXT NOT NULL,
    body TEXT NOT NULL,
    updated VARCHAR(64) NOT NULL,
    PRIMARY KEY (namespace, experiment, name)
);
CREATE INDEX IF NOT EXISTS katib_trials_by_seq ON katib_trials (namespace, experiment, seq);
