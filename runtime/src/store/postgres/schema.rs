//! The schema: versioned migrations, applied at start; an app's subscriptions.

use super::*;

/// The schema migrations, applied in order; the schema version is their count.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE FUNCTION fanfare_now() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;
CREATE FUNCTION fanfare_uuid7(ms bigint) RETURNS uuid LANGUAGE sql VOLATILE
    AS $$ SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                 PLACING substring(int8send(ms) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid $$;
CREATE TABLE fanfare_functions (
    app text NOT NULL,
    function_id text NOT NULL,
    trigger text NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (app, function_id)
);
CREATE INDEX fanfare_functions_trigger ON fanfare_functions (trigger);
CREATE TABLE fanfare_events (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    data text NOT NULL,
    ts bigint NOT NULL
);
CREATE TABLE fanfare_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL,
    event_id uuid NOT NULL,
    app text NOT NULL,
    function_id text NOT NULL,
    status smallint NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    due_at bigint NOT NULL,
    lease_until bigint,
    owner uuid,
    last_error text,
    output text,
    finished_at bigint
);
CREATE INDEX fanfare_runs_due ON fanfare_runs (app, function_id, due_at) WHERE status = 0;
CREATE INDEX fanfare_runs_lease ON fanfare_runs (app, lease_until) WHERE status = 1;
CREATE INDEX fanfare_runs_owner ON fanfare_runs (owner) WHERE status = 1;
CREATE INDEX fanfare_runs_event ON fanfare_runs (event_id);
"#,
    r#"
CREATE TABLE fanfare_steps (
    run bigint NOT NULL,
    seq integer NOT NULL,
    step_id text NOT NULL,
    output text NOT NULL,
    started_at bigint NOT NULL,
    completed_at bigint NOT NULL,
    PRIMARY KEY (run, seq)
);
ALTER TABLE fanfare_runs ADD COLUMN steps integer NOT NULL DEFAULT 0,
                         ADD COLUMN sleeping boolean NOT NULL DEFAULT false;
"#,
    r#"
CREATE TABLE fanfare_waits (
    run bigint NOT NULL,
    seq integer NOT NULL,
    step_id text NOT NULL,
    event text NOT NULL,
    field text,
    value jsonb,
    deadline bigint NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE INDEX fanfare_waits_event ON fanfare_waits (event);
CREATE INDEX fanfare_events_name ON fanfare_events (name, ts);
ALTER TABLE fanfare_runs ADD COLUMN waiting boolean NOT NULL DEFAULT false;
CREATE INDEX fanfare_runs_waiting ON fanfare_runs (app) WHERE waiting;
"#,
    // Every hot statement reads an index in the order it needs and stops at its limit:
    // claims take an app's due runs in `due_at` order whatever the functions; pruning
    // walks finished runs and events in time order; a send finds the waits it resolves
    // by (event, field, value) instead of reading every wait for the event's name.
    r#"
DROP INDEX fanfare_runs_due;
CREATE INDEX fanfare_runs_ready ON fanfare_runs (app, due_at) WHERE status = 0;
DROP INDEX fanfare_runs_waiting;
CREATE INDEX fanfare_runs_finished ON fanfare_runs (finished_at, id) WHERE status = 2;
CREATE INDEX fanfare_events_ts ON fanfare_events (ts, id);
DROP INDEX fanfare_waits_event;
CREATE INDEX fanfare_waits_match ON fanfare_waits (event, field, value);
CREATE TABLE fanfare_wait_fields (
    event text NOT NULL,
    field text NOT NULL,
    PRIMARY KEY (event, field)
);
INSERT INTO fanfare_wait_fields SELECT DISTINCT event, field FROM fanfare_waits WHERE field IS NOT NULL;
"#,
    // Claims take due runs in arrival order (`id` breaks ties of `due_at`): the order
    // of debounce, batch and throttle. Flow control (`flow::rules`): a run's flags (`rules::flags`), its concurrency key,
    // its rank (arrival minus priority), its batch and, while held (status 4) or
    // delayed, or once skipped (status 2 with the flag), why. Held runs wait per function
    // and key (stage 1) or per function (stage 2), in rank order, or in their batch
    // (stage 3). The rules' states per app, function, kind and key.
    r#"
DROP INDEX fanfare_runs_ready;
CREATE INDEX fanfare_runs_ready ON fanfare_runs (app, due_at, id) WHERE status = 0;
ALTER TABLE fanfare_runs ADD COLUMN flow smallint NOT NULL DEFAULT 0,
                         ADD COLUMN ckey text,
                         ADD COLUMN rank bigint NOT NULL DEFAULT 0,
                         ADD COLUMN hold smallint,
                         ADD COLUMN reason text,
                         ADD COLUMN batch bigint;
CREATE INDEX fanfare_runs_batch ON fanfare_runs (batch, id) WHERE batch IS NOT NULL;
CREATE INDEX fanfare_runs_held_key ON fanfare_runs (app, function_id, ckey, rank, id)
    WHERE status = 4 AND hold = 1;
CREATE INDEX fanfare_runs_held_function ON fanfare_runs (app, function_id, rank, id)
    WHERE status = 4 AND hold = 2;
CREATE TABLE fanfare_flow (
    app text NOT NULL,
    function_id text NOT NULL,
    kind smallint NOT NULL,
    key text NOT NULL,
    tat bigint NOT NULL,
    active bigint NOT NULL,
    run bigint NOT NULL DEFAULT 0,
    since bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (app, function_id, kind, key)
);
"#,
    // A function may have several triggers (`trigger = [..]`, an event union): a row each.
    r#"
ALTER TABLE fanfare_functions DROP CONSTRAINT fanfare_functions_pkey;
ALTER TABLE fanfare_functions ADD PRIMARY KEY (app, function_id, trigger);
"#,
    // Cancellation (`Store::cancel`): runs are found by their id; status 5 is cancelled,
    // with who or what cancelled it in `reason`; `cancel` holds the reason of a run
    // marked while running (in any process), until it stops. Pruning walks cancelled
    // runs as completed ones.
    r#"
ALTER TABLE fanfare_runs ADD COLUMN cancel text;
CREATE INDEX fanfare_runs_run_id ON fanfare_runs (run_id);
DROP INDEX fanfare_runs_finished;
CREATE INDEX fanfare_runs_finished ON fanfare_runs (finished_at, id) WHERE status IN (2, 5);
"#,
    // Retention of failed runs (`store::retention`): pruning walks failed runs by
    // `(finished_at, id)` past the failed retention, apart from completed ones.
    r#"
CREATE INDEX IF NOT EXISTS fanfare_runs_failed ON fanfare_runs (finished_at, id) WHERE status = 3;
"#,
    // Listing runs (`Store::list`), newest first: run ids become UUIDv7s (made from the
    // text of a random UUID: `uuid_send` and back costs twice as much), so they sort by
    // creation time, and lists are read newest first through the run id index, or the
    // function's: failed, held, cancelled, sleeping, waiting and skipped runs have
    // partial indexes of their own, each written only when a run comes to that state.
    // The function index is written by every run (SQLite goes without it: it cost a
    // quarter of its throughput; here, where an update that changes the status writes
    // every index of the row anyway, the planner needs it not to read every run for a
    // function's page). `replay_of` links a replayed run to its original.
    r#"
CREATE FUNCTION fanfare_run_id(ms bigint) RETURNS uuid LANGUAGE sql VOLATILE
    AS $$ SELECT overlay(gen_random_uuid()::text PLACING (substr(lpad(to_hex(ms), 12, '0'), 1, 8)
                 || '-' || substr(lpad(to_hex(ms), 12, '0'), 9, 4) || '-7') FROM 1 FOR 15)::uuid $$;
ALTER TABLE fanfare_runs ADD COLUMN replay_of uuid;
CREATE INDEX fanfare_runs_function ON fanfare_runs (function_id, run_id);
CREATE INDEX fanfare_runs_failed_runs ON fanfare_runs (run_id) WHERE status = 3;
CREATE INDEX fanfare_runs_held_runs ON fanfare_runs (run_id) WHERE status = 4;
CREATE INDEX fanfare_runs_cancelled_runs ON fanfare_runs (run_id) WHERE status = 5;
CREATE INDEX fanfare_runs_sleeping ON fanfare_runs (run_id) WHERE sleeping;
CREATE INDEX fanfare_runs_waiting_runs ON fanfare_runs (run_id) WHERE waiting;
CREATE INDEX fanfare_runs_skipped ON fanfare_runs (run_id) WHERE flow & 32 <> 0;
"#,
    // Trace context (`trace.rs`): the W3C `traceparent` an event was sent in, if any.
    r#"
ALTER TABLE fanfare_events ADD COLUMN traceparent text;
"#,
    // A run's history (`RunInfo::failed_attempts`): each attempt that failed, written
    // only then (a run that completes first time writes nothing here), pruned with it.
    r#"
CREATE TABLE fanfare_attempts (
    run bigint NOT NULL,
    attempt integer NOT NULL,
    started_at bigint NOT NULL,
    ended_at bigint NOT NULL,
    error text NOT NULL,
    PRIMARY KEY (run, attempt)
);
"#,
    // A run has an owner only while it runs (status 1), a rule the database holds every
    // statement to, so a statement that finds a run by its owner needs no `status = 1`
    // beside it (which would let a plan walk every running run through an index of them).
    // The owner index went unused: each statement that names an owner also names the runs.
    r#"
UPDATE fanfare_runs SET owner = NULL WHERE owner IS NOT NULL AND status <> 1;
ALTER TABLE fanfare_runs ADD CONSTRAINT fanfare_runs_owned CHECK (owner IS NULL OR status = 1);
DROP INDEX fanfare_runs_owner;
"#,
    // No index names a column that a run's common path changes (`status` as a run is
    // claimed and completed, `finished_at`), the first step towards updates that write
    // no index entry (PostgreSQL's heap-only updates). The states a list reads by index
    // (failed, held, cancelled, sleeping, waiting, skipped), and when a failed run
    // failed, are generated columns, null for a run queued, running or completed, whose
    // claim and completion leave them unchanged: one index of listed runs in place of six,
    // the failed retention's index on `failed_at`, held runs' on `list = 4`.
    r#"
ALTER TABLE fanfare_runs
    ADD COLUMN list smallint GENERATED ALWAYS AS (CASE
        WHEN status IN (3, 4, 5) THEN status
        WHEN status = 0 AND waiting THEN 7
        WHEN status = 0 AND sleeping THEN 6
        WHEN status = 2 AND flow & 32 <> 0 THEN 8 END) STORED,
    ADD COLUMN failed_at bigint GENERATED ALWAYS AS (CASE WHEN status = 3 THEN finished_at END) STORED;
DROP INDEX fanfare_runs_failed_runs, fanfare_runs_held_runs, fanfare_runs_cancelled_runs,
    fanfare_runs_sleeping, fanfare_runs_waiting_runs, fanfare_runs_skipped, fanfare_runs_failed,
    fanfare_runs_held_key, fanfare_runs_held_function;
CREATE INDEX fanfare_runs_listed ON fanfare_runs (list, run_id) WHERE list IS NOT NULL;
CREATE INDEX fanfare_runs_failed ON fanfare_runs (failed_at, id) WHERE failed_at IS NOT NULL;
CREATE INDEX fanfare_runs_held_key ON fanfare_runs (app, function_id, ckey, rank, id)
    WHERE list = 4 AND hold = 1;
CREATE INDEX fanfare_runs_held_function ON fanfare_runs (app, function_id, rank, id)
    WHERE list = 4 AND hold = 2;
"#,
    // The queue (`fanfare_queue`): a row per run mirroring what the claim, crash takeover
    // and retention look runs up by: state (the run's status), due time, lease and finish
    // time, with their indexes, which leave the runs table. Every statement that changes
    // those columns of runs updates the run's row here in the same statement (`mirror!`).
    // So a claim and a completion change no column an index of `fanfare_runs` names, and
    // are heap-only updates (no index entry written) when the page has room for the new
    // version: the table keeps half of each page free for them.
    r#"
CREATE TABLE fanfare_queue (
    run bigint PRIMARY KEY,
    app text NOT NULL,
    function_id text NOT NULL,
    state smallint NOT NULL,
    due_at bigint NOT NULL,
    lease_until bigint,
    finished_at bigint
);
INSERT INTO fanfare_queue (run, app, function_id, state, due_at, lease_until, finished_at)
    SELECT id, app, function_id, status, due_at, lease_until, finished_at FROM fanfare_runs;
CREATE INDEX fanfare_queue_ready ON fanfare_queue (app, due_at, run) WHERE state = 0;
CREATE INDEX fanfare_queue_lease ON fanfare_queue (app, lease_until) WHERE state = 1;
CREATE INDEX fanfare_queue_finished ON fanfare_queue (finished_at, run) WHERE state IN (2, 5);
DROP INDEX fanfare_runs_ready, fanfare_runs_lease, fanfare_runs_finished;
ALTER TABLE fanfare_runs SET (fillfactor = 50);
"#,
    // Run ids in two parts: the prefix (the time, the version), computed once per
    // statement, and the random rest, per run, from `random()` (the text of a
    // `gen_random_uuid()` rewritten per run cost 2.2 µs a run; this costs 0.8). 74 random
    // bits, as UUIDv7 has; the variant's bits are set with the top bit of the last 64.
    r#"
CREATE OR REPLACE FUNCTION fanfare_run_id_prefix(ms bigint) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT lpad(to_hex(ms), 12, '0') || '7' $$;
CREATE OR REPLACE FUNCTION fanfare_run_id_from(prefix text) RETURNS uuid LANGUAGE sql VOLATILE
    AS $$ SELECT (prefix || lpad(to_hex(floor(random() * 4096)::int), 3, '0')
        || to_hex(x'8000000000000000'::bigint | (floor(random() * 2147483648)::bigint << 31)
                  | floor(random() * 2147483648)::bigint))::uuid $$;
CREATE OR REPLACE FUNCTION fanfare_run_id(ms bigint) RETURNS uuid LANGUAGE sql VOLATILE
    AS $$ SELECT fanfare_run_id_from(fanfare_run_id_prefix(ms)) $$;
"#,
    // A finished run (completed, cancelled, skipped) leaves the queue: its queue row is
    // deleted, and a row of `fanfare_finished` says when it finished, for retention. So
    // finishing writes one index entry (the finished runs' index) instead of a new
    // version of the queue's row with two (its key and that index), which a state's
    // change could not write in place. Failed runs keep their queue row (state 3);
    // retention finds them through the runs' `failed_at` index.
    r#"
CREATE TABLE fanfare_finished (
    finished_at bigint NOT NULL,
    run bigint NOT NULL
);
INSERT INTO fanfare_finished (finished_at, run)
    SELECT finished_at, run FROM fanfare_queue WHERE state IN (2, 5);
DELETE FROM fanfare_queue WHERE state IN (2, 5);
DROP INDEX fanfare_queue_finished;
ALTER TABLE fanfare_queue DROP COLUMN finished_at;
CREATE INDEX fanfare_finished_at ON fanfare_finished (finished_at, run);
"#,
];

impl Shared {
    /// Applies the migrations this database has not seen, one process at a time;
    /// refuses a schema newer than this fanfare knows.
    pub(super) async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error("cannot migrate", e))?;
        let err = |e| self.error("migration failed", e);
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7283421066); \
             CREATE TABLE IF NOT EXISTS fanfare_meta (key text PRIMARY KEY, value bigint NOT NULL)",
        )
        .await
        .map_err(err)?;
        let version: i64 = tx
            .query_opt(
                "SELECT value FROM fanfare_meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .map_err(err)?
            .map_or(0, |row| row.get(0));
        if version > MIGRATIONS.len() as i64 {
            return Err(Error::new(
                ErrorKind::Store,
                format_args!(
                    "PostgreSQL {}: written by a newer fanfare: its schema version is {version}, this fanfare knows versions up to {}; upgrade fanfare",
                    self.target,
                    MIGRATIONS.len()
                ),
            ));
        }
        for m in &MIGRATIONS[version as usize..] {
            tx.batch_execute(m).await.map_err(err)?;
        }
        tx.execute(
            "INSERT INTO fanfare_meta (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&(MIGRATIONS.len() as i64)],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    /// Makes the database's subscriptions of this app the functions of this process.
    pub(super) async fn register(&self, registry: &Registry) -> Result<()> {
        // A row per function and trigger.
        let (functions, triggers): (Vec<&str>, Vec<&str>) = registry
            .defs
            .iter()
            .filter(|d| self.index.contains_key(d.id()))
            .flat_map(|d| d.triggers().iter().map(move |t| (d.id(), *t)))
            .unzip();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error("cannot register functions", e))?;
        let err = |e| self.error("cannot register functions", e);
        tx.execute(
            "INSERT INTO fanfare_functions (app, function_id, trigger, updated_at) \
             SELECT $1, f, t, fanfare_now() FROM unnest($2::text[], $3::text[]) AS x(f, t) \
             ON CONFLICT (app, function_id, trigger) DO UPDATE SET updated_at = excluded.updated_at",
            &[&self.app, &functions, &triggers],
        )
        .await
        .map_err(err)?;
        tx.execute(
            "DELETE FROM fanfare_functions WHERE app = $1 \
             AND (function_id, trigger) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))",
            &[&self.app, &functions, &triggers],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }
}
