//! Guards on the query plans of the hot statements: with a large backlog and history in
//! the tables, none reads a whole table (no `Seq Scan` / full `SCAN`) or sorts the backlog
//! (no big `Sort`, no `USE TEMP B-TREE FOR ORDER BY`). A change that brings such a plan
//! back fails here, before it makes claims O(backlog) in production. On PostgreSQL, also
//! that no index of the runs table names a column a claim or a completion changes (so
//! those updates stay heap-only).

/// Queued runs, and as many completed ones, in the tables the plans are made on.
const BACKLOG: i64 = 100_000;

/// The filters of `Runtime::list_runs` whose statements are checked: each status, alone
/// and with a function, a function alone, an event, a time range, and a page after the
/// first.
fn lists() -> Vec<(String, crate::inspect::RunFilter)> {
    use crate::inspect::RunFilter;
    use crate::store::RunStatus;
    use std::time::{Duration, UNIX_EPOCH};
    let cursor = crate::event::RunId::new(crate::event::now_millis());
    let event = crate::event::EventId::from_key("plan");
    let second = |s| UNIX_EPOCH + Duration::from_secs(s);
    let mut lists = vec![
        ("every run".to_owned(), RunFilter::new()),
        (
            "a function's runs".to_owned(),
            RunFilter::new().function("f3"),
        ),
        ("an event's runs".to_owned(), RunFilter::new().event(event)),
        (
            "a time range".to_owned(),
            RunFilter::new().since(second(1)).until(second(2)),
        ),
        (
            "a later page".to_owned(),
            RunFilter::new().function("f3").after(cursor),
        ),
    ];
    for status in RunStatus::ALL {
        let filter = RunFilter::new().status(status);
        lists.push((format!("{status}"), filter.clone()));
        lists.push((format!("a function's {status}"), filter.function("f3")));
    }
    lists
        .into_iter()
        .map(|(name, filter)| (format!("list: {name}"), filter))
        .collect()
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::BACKLOG;
    use crate::store::sqlite::{
        configure, list_sql, of_event, BATCH_EVENTS, BY_RUN_ID, CLAIM, COMPLETE, EXPIRED, FIND,
        FINISH_BATCH, HELD_BY_FUNCTION, HELD_BY_KEY, MARK, MIGRATIONS, NEXT_DUE, PRUNE_EVENTS,
        PRUNE_FAILED, PRUNE_RUNS, QUEUE_STATS, WAITS_OF,
    };
    use rusqlite::Connection;

    /// The plan of a statement, one line per step.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("EXPLAIN QUERY PLAN");
        let mut rows = stmt.raw_query();
        let mut lines = Vec::new();
        while let Some(row) = rows.next().expect("plan row") {
            lines.push(row.get::<_, String>(3).expect("plan detail"));
        }
        lines
    }

    #[test]
    fn hot_statements_read_indexes_in_order() {
        let path = std::env::temp_dir().join(format!(
            "fanfare-plans-{}-{:x}.db",
            std::process::id(),
            fastrand::u64(..)
        ));
        let conn = Connection::open(&path).expect("open");
        // As the store opens it: plans that do not depend on bound values, `rarray`.
        configure(&conn).expect("configure");
        for m in MIGRATIONS {
            conn.execute_batch(m).expect("migration");
        }
        conn.execute_batch(&format!(
            "CREATE TEMP TABLE fanfare_local (id TEXT PRIMARY KEY);
             INSERT INTO temp.fanfare_local VALUES ('f1'), ('f2'), ('f3'), ('f4'), ('f5');
             BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {events})
             INSERT INTO fanfare_events (id, name, data, ts)
                 SELECT randomblob(16), 'plan/event', '{{\"n\":1}}', i FROM n;
             INSERT INTO fanfare_runs (run_id, event_id, function_id, status, attempts, due_at, finished_at)
                 SELECT randomblob(16), e.id, 'f' || f.i, CASE WHEN e.ts % 2 = 0 THEN 2 ELSE 0 END,
                        1, e.ts, CASE WHEN e.ts % 2 = 0 THEN e.ts END
                 FROM fanfare_events e,
                      (SELECT 1 AS i UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5) f;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {waits})
             INSERT INTO fanfare_waits (run, seq, step_id, event, field, value, deadline)
                 SELECT i, 0, 's', 'plan/settled', 'order_id', i, 1e13 FROM n;
             INSERT INTO fanfare_wait_fields VALUES ('plan/settled', 'order_id');
             INSERT INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at)
                 SELECT id, 0, 's', 'null', 0, 0 FROM fanfare_runs;
             UPDATE fanfare_runs SET status = 4, hold = 1 + id % 2, ckey = 'k' || (id % 100)
                 WHERE status = 0 AND id % 3 = 0;
             UPDATE fanfare_runs SET batch = id - id % 100, flow = 8 WHERE id % 7 = 0;
             UPDATE fanfare_runs SET status = 3 WHERE status = 2 AND id % 11 = 0;
             COMMIT;",
            events = BACKLOG * 2 / 5,
            waits = BACKLOG / 2,
        ))
        .expect("fill");
        let mut bad = Vec::new();
        for (name, filter) in super::lists() {
            // A page reads at most its limit per status code, so sorting it is cheap; but
            // it must start from an index that holds what it selects, not walk every run
            // through the run id index past what it filters out.
            let sql = list_sql(&filter);
            let lines = plan(&conn, &sql);
            // Lists read the run id index newest first (no index every run would write:
            // by function, or of queued and running runs); the rarer states have theirs.
            use crate::store::RunStatus::*;
            let selective = filter
                .status
                .is_some_and(|s| matches!(s, Failed | Cancelled | Sleeping | Waiting | Skipped));
            if lines.iter().any(|l| {
                l == "SCAN fanfare_runs"
                    || (selective
                        && l.starts_with("SCAN fanfare_runs USING INDEX fanfare_runs_run_id"))
            }) {
                bad.push(format!("{name}:\n  {}\n  {}", sql, lines.join("\n  ")));
            }
        }
        let run_by_id = format!("SELECT * FROM fanfare_runs WHERE {BY_RUN_ID}");
        let event_runs = format!(
            "DELETE FROM fanfare_runs WHERE id IN ({})",
            of_event("SELECT id FROM fanfare_runs WHERE")
        );
        for (name, sql) in [
            ("claim", CLAIM),
            ("mark claimed runs running", MARK),
            ("complete runs", COMPLETE),
            ("next due", NEXT_DUE),
            ("waits of an event", WAITS_OF),
            ("prune runs", PRUNE_RUNS),
            ("prune failed runs", PRUNE_FAILED),
            ("are an event's runs past their keep", &EXPIRED),
            ("prune events", PRUNE_EVENTS),
            ("held runs of a key", HELD_BY_KEY),
            ("held runs of a function", HELD_BY_FUNCTION),
            ("a batch's events", BATCH_EVENTS),
            ("finish a batch", FINISH_BATCH),
            ("a run by its id (cancel)", &FIND),
            ("a run by its id", &run_by_id),
            ("an event's runs", &event_runs),
            ("due runs by function (metrics)", QUEUE_STATS),
        ] {
            let lines = plan(&conn, sql);
            let full_scan = |l: &String| {
                [
                    "fanfare_runs",
                    "fanfare_events",
                    "fanfare_waits",
                    "fanfare_steps",
                ]
                .iter()
                .any(|t| l.starts_with(&format!("SCAN {t}")))
            };
            if lines
                .iter()
                .any(|l| full_scan(l) || l.contains("TEMP B-TREE FOR ORDER BY"))
            {
                bad.push(format!("{name}:\n  {}\n  {}", sql, lines.join("\n  ")));
            }
        }
        // Each freed slot reads its key's held runs: binding another key must not make
        // SQLite plan the statement again (it did, before the planner's stability
        // guarantee was on: a sixth of the writer's time under keyed concurrency).
        conn.execute_batch(
            "UPDATE fanfare_runs SET status = 4, hold = 1, ckey = 'key' || ((id / 2) % 4) \
             WHERE id IN (SELECT id FROM fanfare_runs WHERE status = 0 LIMIT 100)",
        )
        .expect("hold runs");
        let mut held = conn.prepare(HELD_BY_KEY).expect("prepare");
        let function: String = conn
            .query_row(
                "SELECT function_id FROM fanfare_runs WHERE ckey = 'key0'",
                [],
                |r| r.get(0),
            )
            .expect("a held run");
        for key in ["key0", "key1", "key2", "key3"] {
            let ids: Vec<i64> = held
                .query_map(rusqlite::params![function, key, 10], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .expect("held runs");
            assert!(!ids.is_empty(), "{function} has held runs of {key}");
        }
        assert_eq!(
            held.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "the held-runs query was planned again for a new key"
        );
        drop(held);
        drop(conn);
        let _ = std::fs::remove_file(&path);
        assert!(
            bad.is_empty(),
            "statements that read a whole table or sort it:\n{}",
            bad.join("\n")
        );
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::BACKLOG;
    use crate::store::postgres::{
        list_sql, BATCH_EVENTS, CLAIM, FIND, FINISH_BATCHES, HELD_BY_FUNCTION, HELD_BY_KEY,
        MIGRATIONS, NEXT_DUE, PRUNE_EVENTS, PRUNE_FAILED, PRUNE_RUNS, QUEUE_STATS, REAP, RECORD,
        RECORD_FAILURES, SEND, SESSION,
    };
    use serde_json::Value;
    use tokio_postgres::NoTls;

    /// Plan nodes that read a whole big table or sort more than a batch, with the reason.
    /// Below an update or delete of runs (`updating`), runs are reached by an index
    /// condition: not by walking a whole index, even a partial one (of every running run,
    /// say).
    fn offenders(node: &Value, updating: bool, out: &mut Vec<String>) {
        // The tables a run's row is in (their indexes' names begin with the table's).
        const RUN_TABLES: [&str; 2] = ["fanfare_runs", "fanfare_queue"];
        let kind = node["Node Type"].as_str().unwrap_or_default();
        let relation = node["Relation Name"].as_str().unwrap_or_default();
        let updating = updating || (kind == "ModifyTable" && RUN_TABLES.contains(&relation));
        if updating
            && kind.contains("Index")
            && node["Index Name"]
                .as_str()
                .is_some_and(|i| RUN_TABLES.iter().any(|t| i.starts_with(t)))
            && node.get("Index Cond").is_none()
        {
            out.push(format!(
                "a walk of index {} to update runs",
                node["Index Name"]
            ));
        }
        if kind == "Seq Scan"
            && [
                "fanfare_runs",
                "fanfare_queue",
                "fanfare_finished",
                "fanfare_events",
                "fanfare_waits",
                "fanfare_steps",
            ]
            .contains(&relation)
        {
            out.push(format!("Seq Scan on {relation}"));
        }
        if kind == "Sort" && node["Plan Rows"].as_f64().unwrap_or(0.0) > 2_000.0 {
            out.push(format!("Sort of {} rows", node["Plan Rows"]));
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            offenders(child, updating, out);
        }
    }

    /// A connection to the test database in a new schema with fanfare's migrations
    /// applied, and the schema's name; `None` (the test `what` is skipped) when the
    /// database is unreachable and not required.
    async fn migrated(what: &str) -> Option<(tokio_postgres::Client, String)> {
        let url = std::env::var("FANFARE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let (client, connection) = match tokio_postgres::connect(&url, NoTls).await {
            Ok(c) => c,
            Err(e) if std::env::var("FANFARE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                panic!("PostgreSQL at {url} is unreachable ({e}), and FANFARE_REQUIRE_POSTGRES=1 requires it")
            }
            Err(e) => {
                eprintln!("SKIPPED: {what}: {url} is unreachable ({e})");
                return None;
            }
        };
        tokio::spawn(connection);
        let schema = format!(
            "fanfare_plans_{}_{:x}",
            std::process::id(),
            fastrand::u32(..)
        );
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema}; {SESSION}"
            ))
            .await
            .expect("schema");
        for m in MIGRATIONS {
            client.batch_execute(m).await.expect("migration");
        }
        Some((client, schema))
    }

    /// The columns of a run that its claim and its completion change (`CLAIM`, `RECORD`).
    const CLAIM_AND_COMPLETION: [&str; 6] = [
        "status",
        "attempts",
        "lease_until",
        "owner",
        "output",
        "finished_at",
    ];

    /// While no index of the runs table names a column a claim or a completion changes
    /// (in its key, an expression or its condition), those updates can be heap-only and
    /// write no index entry (migration 14): an index that names one makes every such
    /// update write every index of the row again.
    #[tokio::test]
    async fn claims_and_completions_change_no_indexed_column_of_runs() {
        let Some((client, schema)) = migrated("the heap-only guard").await else {
            return;
        };
        let indexes = client
            .query(
                "SELECT indexname, indexdef FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename = 'fanfare_runs'",
                &[],
            )
            .await
            .expect("indexes");
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop schema");
        assert!(indexes.len() >= 4, "{} indexes", indexes.len());
        let mut bad = Vec::new();
        for row in &indexes {
            let (name, def): (&str, &str) = (row.get(0), row.get(1));
            let words: Vec<&str> = def
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .collect();
            for column in CLAIM_AND_COMPLETION {
                if words.contains(&column) {
                    bad.push(format!("{name} names `{column}`: {def}"));
                }
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[tokio::test]
    async fn hot_statements_read_indexes_in_order() {
        let Some((client, schema)) = migrated("the PostgreSQL plan guard").await else {
            return;
        };
        let statements = statements();
        // A process that starts on a new database prepares its statements on empty
        // tables, and keeps the generic plans made then while the tables fill: explaining
        // each once makes that plan.
        client
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .await
            .expect("SET");
        for (i, (name, sql, args)) in statements.iter().enumerate() {
            client
                .batch_execute(&format!("PREPARE empty_{i} AS {sql}"))
                .await
                .unwrap_or_else(|e| panic!("PREPARE {name}: {e}"));
            explain(&client, &format!("empty_{i}"), name, args).await;
        }
        client
            .batch_execute(&format!(
                "INSERT INTO fanfare_functions SELECT 'plan', 'f' || i, 'plan/event', 0 FROM generate_series(1, 5) i;
                 INSERT INTO fanfare_events (id, name, data, ts)
                     SELECT gen_random_uuid(), 'plan/event', '{{\"n\":1}}', i FROM generate_series(1, {events}) i;
                 INSERT INTO fanfare_runs (run_id, event_id, app, function_id, status, attempts, due_at, finished_at)
                     SELECT gen_random_uuid(), e.id, 'plan', 'f' || f, CASE WHEN e.ts % 2 = 0 THEN 2 ELSE 0 END,
                            1, e.ts, CASE WHEN e.ts % 2 = 0 THEN e.ts END
                     FROM fanfare_events e, generate_series(1, 5) f;
                 INSERT INTO fanfare_waits (run, seq, step_id, event, field, value, deadline)
                     SELECT i, 0, 's', 'plan/settled', 'order_id', to_jsonb(i), 10000000000000
                     FROM generate_series(1, {waits}) i;
                 INSERT INTO fanfare_wait_fields VALUES ('plan/settled', 'order_id');
                 INSERT INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at)
                     SELECT id, 0, 's', 'null', 0, 0 FROM fanfare_runs;
                 UPDATE fanfare_runs SET status = 4, hold = 1 + id % 2, ckey = 'k' || (id % 100)
                     WHERE status = 0 AND id % 3 = 0;
                 UPDATE fanfare_runs SET batch = id - id % 100, flow = 8 WHERE id % 7 = 0;
                 UPDATE fanfare_runs SET status = 3 WHERE status = 2 AND id % 11 = 0;
                 INSERT INTO fanfare_queue (run, app, function_id, state, due_at, lease_until)
                     SELECT id, app, function_id, status, due_at, lease_until FROM fanfare_runs
                     WHERE status NOT IN (2, 5);
                 INSERT INTO fanfare_finished (finished_at, run)
                     SELECT finished_at, id FROM fanfare_runs WHERE status IN (2, 5)",
                events = BACKLOG * 2 / 5,
                waits = BACKLOG / 2,
            ))
            .await
            .expect("fill");
        let mut bad = Vec::new();
        for (i, (name, sql, args)) in statements.iter().enumerate() {
            let plan = explain(&client, &format!("empty_{i}"), name, args).await;
            check(
                &plan,
                || format!("{name} (planned on empty tables, run on full ones)"),
                sql,
                &mut bad,
            );
        }
        // Before statistics exist (a new database growing faster than autovacuum looks at
        // it), and after.
        for stats in ["no statistics", "analyzed"] {
            if stats == "analyzed" {
                client.batch_execute("ANALYZE").await.expect("ANALYZE");
            }
            explain_all(&client, &statements, stats, &mut bad).await;
        }
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop schema");
        assert!(
            bad.is_empty(),
            "statements that read a whole table or sort it:\n{}",
            bad.join("\n\n")
        );
    }

    /// The statements checked, each with a name and the arguments it is explained with.
    fn statements() -> Vec<(String, String, String)> {
        let nil = "'00000000-0000-0000-0000-000000000000'";
        let functions = "'{f1,f2,f3,f4,f5}'";
        let ids = (1..=512)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let statements = [
            ("claim", CLAIM, format!("'plan', {functions}, 30000, {nil}, 512")),
            ("next due", NEXT_DUE, format!("'plan', {functions}")),
            ("reap", REAP, "'plan'".to_owned()),
            ("due runs by function (metrics)", QUEUE_STATS, "'plan', 100000".to_owned()),
            (
                "record",
                RECORD,
                // A batch as the engine writes it: 512 outcomes.
                format!(
                    "'{{{ids}}}', array_fill(2::smallint, ARRAY[512]), \
                     array_fill(NULL::text, ARRAY[512]), array_fill(NULL::text, ARRAY[512]), \
                     array_fill(0::bigint, ARRAY[512]), {nil}, array_fill(-1, ARRAY[512])"
                ),
            ),
            (
                "record with failures",
                RECORD_FAILURES,
                // 512 retries.
                format!(
                    "'{{{ids}}}', array_fill(0::smallint, ARRAY[512]), \
                     array_fill(NULL::text, ARRAY[512]), array_fill('boom'::text, ARRAY[512]), \
                     array_fill(0::bigint, ARRAY[512]), {nil}, array_fill(-1, ARRAY[512]), \
                     array_fill(0::bigint, ARRAY[512]), array_fill(0::bigint, ARRAY[512])"
                ),
            ),
            (
                "prune runs",
                PRUNE_RUNS,
                "3600000, -1, -1, 1000, 2592000000".to_owned(),
            ),
            (
                "prune failed runs",
                PRUNE_FAILED,
                "3600000, -1, -1, 1000, 2592000000".to_owned(),
            ),
            ("prune events", PRUNE_EVENTS, format!("3600000, -1, {nil}, 1000")),
            (
                "held runs of keys",
                HELD_BY_KEY,
                "'plan', '{f1,f2}', '{k7,k8}', '{100,100}'".to_owned(),
            ),
            (
                "held runs of functions",
                HELD_BY_FUNCTION,
                "'plan', '{f1,f2}', '{100,100}'".to_owned(),
            ),
            ("batch events", BATCH_EVENTS, "'{700,1400}'".to_owned()),
            ("finish batches", FINISH_BATCHES, format!("'{{{ids}}}'")),
            ("a run by its id (cancel)", FIND, nil.to_owned()),
            (
                "send",
                SEND,
                format!(
                    "ARRAY[gen_random_uuid()], '{{plan/settled}}', ARRAY['{{\"order_id\": 7}}'], '{{1}}', 'plan', {functions}, '{{0}}', ARRAY[NULL::text], {functions}, 30000, gen_random_uuid(), 100"
                ),
            ),
        ];
        let lists = super::lists();
        statements
            .into_iter()
            .map(|(name, sql, args)| (name.to_owned(), sql.to_owned(), args))
            .chain(lists.into_iter().map(|(name, filter)| {
                // `$1` the limit, then the function, event and bounds the filter sets.
                let mut args = vec!["51".to_owned()];
                if filter.function.is_some() {
                    args.push("'f3'".to_owned());
                }
                if filter.event.is_some() {
                    args.push(nil.to_owned());
                }
                if filter.from().is_some() {
                    args.push(format!(
                        "'{}'",
                        filter.from().map(|r| r.to_string()).unwrap_or_default()
                    ));
                }
                if filter.below().is_some() {
                    args.push(format!(
                        "'{}'",
                        filter.below().map(|r| r.to_string()).unwrap_or_default()
                    ));
                }
                let sql = list_sql(&filter);
                (name, sql, args.join(", "))
            }))
            .collect::<Vec<_>>()
    }

    /// Explains each statement with its arguments, custom and generic; adds what offends
    /// to `bad`.
    async fn explain_all(
        client: &tokio_postgres::Client,
        statements: &[(String, String, String)],
        stats: &str,
        bad: &mut Vec<String>,
    ) {
        for (i, (name, sql, args)) in statements.iter().enumerate() {
            let i = format!("{i}_{}", stats.len());
            client
                .batch_execute(&format!("PREPARE plan_{i} AS {sql}"))
                .await
                .unwrap_or_else(|e| panic!("PREPARE {name}: {e}"));
            // Custom plans (made for the values) and the generic plan a prepared statement
            // switches to after five executions.
            for mode in ["force_custom_plan", "force_generic_plan"] {
                client
                    .batch_execute(&format!("SET plan_cache_mode = {mode}"))
                    .await
                    .expect("SET");
                let plan = explain(client, &format!("plan_{i}"), name, args).await;
                check(&plan, || format!("{name} ({stats}, {mode})"), sql, bad);
            }
        }
    }

    /// Adds what offends in `plan` (of `sql`, described by `what`) to `bad`.
    fn check(plan: &Value, what: impl FnOnce() -> String, sql: &str, bad: &mut Vec<String>) {
        let mut found = Vec::new();
        offenders(plan, false, &mut found);
        if !found.is_empty() {
            bad.push(format!("{}: {}\n{sql}\n{plan:#}", what(), found.join(", ")));
        }
    }

    /// The plan of prepared statement `stmt` (`name`) for arguments `args`.
    async fn explain(client: &tokio_postgres::Client, stmt: &str, name: &str, args: &str) -> Value {
        let text = client
            .simple_query(&format!("EXPLAIN (FORMAT JSON) EXECUTE {stmt}({args})"))
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {name}: {e}"))
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .expect("a plan");
        let plan: Value = serde_json::from_str(&text).expect("a JSON plan");
        plan[0]["Plan"].clone()
    }
}
