-- katib-rs extension tables (Katib keeps these objects in etcd as CRs): the local runtime's
-- Experiments and Trials, written as they change, so the web UI reads a page in one query.
-- `summary` (experiments) and `row_json` (trials) are the small JSON documents list views
-- read; `body` is the whole object in Katib's JSON shape.
CREATE TABLE IF NOT EXISTS katib_experiments (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    body TEXT NOT NULL,
    run_dir TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX IF NOT EXISTS katib_experiments_updated ON katib_experiments (updated);

CREATE TABLE IF NOT EXISTS katib_trials (
    namespace TEXT NOT NULL,
    experiment TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    objective REAL,
    row_json TEXT NOT NULL,
    body TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (namespace, experiment, name)
);
CREATE INDEX IF NOT EXISTS katib_trials_by_seq ON katib_trials (namespace, experiment, seq);
