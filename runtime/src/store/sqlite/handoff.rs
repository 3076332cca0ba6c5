//! Runs a batch of sends claims as it stores them (`store::Slots`).
//!
//! Every run in the database is this process's to execute, so a send can store the runs
//! it will start at once already running, as a claim would mark them: the writer
//! reserves free slots of the engine for a batch of sends before running it, the sends
//! insert that many of their runs due now of functions without flow control (whose gate
//! only a claim passes) as running, first attempt, and the engine starts them once the
//! batch has committed (`store::Handoff`). That spares each run the claim's select and
//! update, and the due index's entry. Runs the slots do not cover are queued and claimed
//! as before.

use super::*;

impl Writer {
    /// How many runs the sends of `batch` store due now for functions without flow
    /// control: what they would claim, given the slots.
    pub(super) fn claimable(&self, batch: &[Command], now: u64) -> usize {
        let runs = |event: &Envelope, to: Option<&u32>| {
            if event.not_before.is_some_and(|t| t > now) {
                return 0;
            }
            self.registry
                .targets(&event.name, to)
                .iter()
                .filter(|&&f| self.direct[f as usize])
                .count()
        };
        batch
            .iter()
            .map(|command| match command {
                Command::Append(event, to, _) => runs(event, to.as_ref()),
                Command::AppendAll(events, _) => events.iter().map(|e| runs(e, None)).sum(),
                _ => 0,
            })
            .sum()
    }
}

impl Ctx<'_> {
    /// Whether a run of `function` due at `due` is stored claimed (a slot is left for
    /// it), taking the slot.
    pub(super) fn claims(&self, function: u32, due: i64) -> bool {
        let left = self.quota.get();
        if left == 0 || due > self.now as i64 || !self.direct[function as usize] {
            return false;
        }
        self.quota.set(left - 1);
        true
    }

    /// Stops claiming in this batch and forgets the runs claimed so far (their work is
    /// being rolled back).
    pub(super) fn stop_claiming(&self) {
        self.quota.set(0);
        self.claimed.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::{FunctionDef, HandlerResult, RunInput};
    use crate::store::{Attached, Slots};
    use std::sync::{Mutex, Weak};

    fn never_called(_: RunInput) -> HandlerResult {
        Err(Error::new(ErrorKind::Function, "not called in this test"))
    }

    /// Two functions triggered by `h/event`: `a` and `b`.
    static A: FunctionDef = FunctionDef::for_test("a", &["h/event"], never_called);
    static B: FunctionDef = FunctionDef::for_test("b", &["h/event"], never_called);

    /// Slots that grant up to `free` and record what is handed back.
    struct Engine {
        free: Mutex<usize>,
        handed: Mutex<Vec<(Vec<RunKey>, usize)>>,
    }

    impl Slots for Engine {
        fn reserve(&self, want: usize) -> usize {
            let mut free = self.free.lock().unwrap();
            let n = want.min(*free);
            *free -= n;
            n
        }

        fn hand(self: Arc<Self>, runs: Vec<ClaimedRun>, reserved: usize) {
            *self.free.lock().unwrap() += reserved;
            let keys = runs.iter().map(|r| r.key).collect();
            self.handed.lock().unwrap().push((keys, reserved));
        }
    }

    fn event(not_before: Option<u64>) -> Arc<Envelope> {
        let now = now_millis();
        let id = EventId::from_uuid(crate::event::new_uuid(now));
        let mut event = Envelope::stored(id, "h/event".into(), "{}".into(), now);
        event.not_before = not_before;
        Arc::new(event)
    }

    /// (status, attempts) of every run, in position order.
    fn runs(writer: &Writer) -> Vec<(i64, i64)> {
        let mut s = writer
            .conn
            .prepare("SELECT status, attempts FROM fanfare_runs ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Sends `events` in one batch; the runs made due for a claim, per send.
    fn send(writer: &mut Writer, events: Vec<Arc<Envelope>>) -> Vec<usize> {
        let mut rxs = Vec::new();
        let mut batch = Vec::new();
        for event in events {
            let (tx, rx) = oneshot::channel();
            batch.push(Command::Append(event, None, tx));
            rxs.push(rx);
        }
        let replies = writer
            .transaction(&mut batch)
            .unwrap_or_else(|(_, e)| panic!("{e}"));
        replies.into_iter().for_each(|r| r.send(&Ok(())));
        rxs.into_iter()
            .map(|rx| rx.blocking_recv().unwrap().unwrap())
            .collect()
    }

    #[test]
    fn sends_store_as_many_runs_claimed_as_slots_were_free_and_hand_them_over() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let dir = TestDir::new("handoff");
        let registry = Arc::new(Registry::new(vec![&A, &B]).unwrap());
        let mut writer = Writer::open(
            &dir.file("h.db"),
            SqliteSync::Normal,
            registry,
            "app".into(),
            Retention::new(Duration::from_secs(3600), Duration::from_secs(3600)),
        )
        .unwrap();
        let engine = Arc::new(Engine {
            free: Mutex::new(3),
            handed: Mutex::default(),
        });
        let slots: Weak<dyn Slots> = Arc::downgrade(&engine) as _;
        writer.attached = Arc::new(std::sync::OnceLock::new());
        assert!(writer.attached.set(Attached::new(slots).unwrap()).is_ok());

        // Two events, four runs, three slots: three claimed, one queued for a claim;
        // a delayed event's runs are queued whatever the slots.
        let later = now_millis() + 60_000;
        let due = send(
            &mut writer,
            vec![event(None), event(None), event(Some(later))],
        );
        assert_eq!(due, [0, 1, 2]);
        assert_eq!(
            runs(&writer),
            [(1, 1), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)]
        );
        let handed = std::mem::take(&mut *engine.handed.lock().unwrap());
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].1, 3, "the reservation comes back whole");
        let keys: Vec<RunKey> = writer
            .conn
            .prepare("SELECT id FROM fanfare_runs WHERE status = 1 ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|k| k.unwrap() as RunKey)
            .collect();
        assert_eq!(handed[0].0, keys, "the runs stored running are handed over");
        // A claim finds only the queued run due now.
        let (tx, rx) = oneshot::channel();
        let replies = writer
            .transaction(&mut vec![Command::Claim(8, tx)])
            .unwrap_or_else(|(_, e)| panic!("{e}"));
        replies.into_iter().for_each(|r| r.send(&Ok(())));
        assert_eq!(rx.blocking_recv().unwrap().unwrap().runs.len(), 1);

        // A batch that fails claims nothing, and its reservation goes free again.
        writer
            .conn
            .execute_batch("DROP TABLE fanfare_waits")
            .unwrap();
        let (tx, rx) = oneshot::channel();
        let replies = writer
            .transaction(&mut vec![Command::Append(event(None), None, tx)])
            .unwrap_or_else(|(_, e)| panic!("{e}"));
        replies.into_iter().for_each(|r| r.send(&Ok(())));
        assert!(rx.blocking_recv().unwrap().is_err());
        assert_eq!(*engine.handed.lock().unwrap(), [(Vec::new(), 2)]);
        assert_eq!(*engine.free.lock().unwrap(), 3);
        assert_eq!(runs(&writer).len(), 6, "the failed send stored nothing");
        drop(writer);
    }
}
