//! Sends: an event with one run per subscribed function, and the waits it resolves.

use super::*;

/// The waits for an event name matching on a field (or on none) with a value.
pub(crate) const WAITS_OF: &str = "SELECT run, seq, step_id FROM fanfare_waits \
    WHERE event = ?1 AND field IS ?2 AND value IS ?3";

/// How many runs the statements inserting runs take, largest first: a list of new runs
/// goes in as few statements as these sizes allow. Each execution of a statement on the
/// runs table opens a cursor on every index of it, so the writer inserts the runs of all
/// the sends of a batch together (see `Ctx::new_runs`).
const INSERT_ROWS: [usize; 4] = [64, 16, 4, 1];

/// The statement inserting `INSERT_ROWS[size]` runs, each with its position, run id,
/// event id, function id, status, attempts and when it is due.
fn insert_runs(size: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        INSERT_ROWS
            .iter()
            .map(|&n| {
                let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; n];
                format!(
                    "INSERT INTO fanfare_runs (id, run_id, event_id, function_id, status, attempts, due_at) VALUES {}",
                    rows.join(", ")
                )
            })
            .collect()
    });
    &all[size]
}

/// A run to insert: position, run id, event id, function id, when it is due, and
/// whether it is stored claimed (running, its first attempt: `handoff.rs`).
pub(super) struct NewRun {
    position: i64,
    run_id: RunId,
    event: EventId,
    function: &'static str,
    due: i64,
    claimed: bool,
}

/// A pending wait: run, step position, step id.
pub(super) type WaitRow = (i64, u32, String);

impl Ctx<'_> {
    pub(super) fn append(
        &self,
        tx: &Connection,
        event: &Arc<Envelope>,
        to: Option<u32>,
        cache: &mut EventCache,
    ) -> Result<usize> {
        let subscribers = self.registry.targets(&event.name, to.as_ref());
        let err = self.err("cannot store the event");
        // The runs' positions (`position.rs`), recorded in the event's row. (Taken even
        // when the event is a replayed `ctx.send`'s, stored already: a gap is harmless.)
        let first = self.positions.take(self.now, subscribers.len());
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO fanfare_events (id, name, data, ts, traceparent, first_run, runs) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    event.id.as_uuid().as_bytes(),
                    &*event.name,
                    &event.data,
                    event.ts as i64,
                    event.trace.as_ref().map(|t| t.as_str()),
                    first,
                    subscribers.len() as i64
                ])
            })
            .map_err(&err)?;
        if inserted == 0 {
            // A replayed `ctx.send`: the event and its runs were stored the first time.
            return Ok(0);
        }
        // A delayed send's runs are due at its time.
        let due = self.now.max(event.not_before.unwrap_or(0)) as i64;
        let mut claimed = 0;
        let runs = subscribers.iter().enumerate().map(|(i, &f)| {
            let position = first + i as i64;
            let run = NewRun {
                position,
                run_id: position::run_id(position),
                event: event.id,
                function: self.registry.defs[f as usize].id(),
                due,
                claimed: self.claims(f, due),
            };
            if run.claimed {
                claimed += 1;
                self.claimed.borrow_mut().push(ClaimedRun::sent(
                    position as RunKey,
                    run.run_id,
                    f,
                    Arc::clone(event),
                ));
            }
            run
        });
        match &mut *self.new_runs.borrow_mut() {
            Some(pending) => pending.extend(runs),
            None => {
                let runs: Vec<NewRun> = runs.collect();
                self.insert_runs(tx, &runs)?
            }
        }
        let resolved = self.resolve_waits(tx, event)?;
        let queued = subscribers.len() - claimed;
        cache.keep(Arc::clone(event), queued);
        // Runs made due for a claim: the new ones queued, and waiting ones this event
        // resumes.
        Ok(queued + resolved)
    }

    /// Inserts the runs a batch's sends left in `new_runs`.
    pub(super) fn flush_runs(&self, tx: &Connection) -> Result<()> {
        let runs = match &mut *self.new_runs.borrow_mut() {
            Some(pending) => std::mem::take(pending),
            None => return Ok(()),
        };
        self.insert_runs(tx, &runs)
    }

    fn insert_runs(&self, tx: &Connection, mut runs: &[NewRun]) -> Result<()> {
        let err = self.err("cannot store the event");
        for (size, &n) in INSERT_ROWS.iter().enumerate() {
            while runs.len() >= n {
                let (these, rest) = runs.split_at(n);
                runs = rest;
                tx.prepare_cached(insert_runs(size))
                    .and_then(|mut s| {
                        for (i, run) in these.iter().enumerate() {
                            let (status, attempts) = match run.claimed {
                                true => (RUNNING, 1),
                                false => (QUEUED, 0),
                            };
                            s.raw_bind_parameter(7 * i + 1, run.position)?;
                            s.raw_bind_parameter(7 * i + 2, run.run_id.as_uuid().as_bytes())?;
                            s.raw_bind_parameter(7 * i + 3, run.event.as_uuid().as_bytes())?;
                            s.raw_bind_parameter(7 * i + 4, run.function)?;
                            s.raw_bind_parameter(7 * i + 5, status)?;
                            s.raw_bind_parameter(7 * i + 6, attempts)?;
                            s.raw_bind_parameter(7 * i + 7, run.due)?;
                        }
                        s.raw_execute()
                    })
                    .map_err(&err)?;
            }
        }
        Ok(())
    }

    /// Hands `event` to the runs waiting for it; returns how many it resumed. Each wait is
    /// found through the index: those for any event of the name, and, per field some wait
    /// of the name matches on, those whose value is the event's.
    pub(super) fn resolve_waits(&self, tx: &Connection, event: &Envelope) -> Result<usize> {
        let err = self.err("cannot resolve waits");
        let any = match self.waits.get() {
            Some(any) => any,
            None => {
                let any = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM fanfare_waits)")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(&err)?;
                self.waits.set(Some(any));
                any
            }
        };
        if !any {
            return Ok(0);
        }
        let fields: Vec<String> = tx
            .prepare_cached("SELECT field FROM fanfare_wait_fields WHERE event = ?1")
            .and_then(|mut s| s.query_map([&*event.name], |r| r.get(0))?.collect())
            .map_err(&err)?;
        let mut keys: Vec<(Option<String>, Option<String>)> = vec![(None, None)];
        if !fields.is_empty() {
            let data: serde_json::Value =
                serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
            for field in fields {
                if let Some(value) = data.get(&field) {
                    keys.push((Some(field), Some(value.to_string())));
                }
            }
        }
        let mut waits: Vec<WaitRow> = Vec::new();
        let mut select = tx.prepare_cached(WAITS_OF).map_err(&err)?;
        for (field, value) in &keys {
            let found = select
                .query_map(params![&*event.name, field, value], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<WaitRow>>>())
                .map_err(&err)?;
            waits.extend(found);
        }
        for (run, seq, step_id) in &waits {
            let spec = WaitSpec {
                seq: *seq,
                step_id: step_id.clone(),
                event: event.name.to_string(),
                matching: None,
                deadline_ms: 0,
                since_ms: 0,
                event_id: None,
            };
            self.resolve(tx, *run, &spec, event.data.clone())?;
        }
        Ok(waits.len())
    }
}
