//! Flow control's state: what the rules keep per function, kind and key.

use crate::hash::Map;

/// Which state of a function a [`Slot`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// The function's concurrency (`concurrency = N`), key `""`.
    Function = 0,
    /// A key's concurrency (`concurrency(limit, key)`).
    Key = 1,
    Throttle = 2,
    RateLimit = 3,
    Debounce = 4,
    Batch = 5,
    Idempotency = 6,
}

/// One piece of flow-control state: a function's, per kind and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot {
    pub function: &'static str,
    pub kind: Kind,
    pub key: String,
}

/// What is kept per [`Slot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// GCRA's theoretical arrival time, unix microseconds (rate limit, throttle); when
    /// the waiting run's event was sent, unix ms (debounce).
    pub tat_us: i64,
    /// Slots taken (concurrency); runs in the open batch (batch); the waiting run's
    /// order in its millisecond (debounce, see `RunFlow::arrival`).
    pub active: i64,
    /// The latest run of a debounce's burst; the open batch (its first run). 0: none.
    pub run: i64,
    /// When the burst or the batch began, unix ms; the key's last start, unix
    /// microseconds (throttle).
    pub since: i64,
}

impl State {
    /// Whether the state says nothing a fresh one would not (it can be forgotten).
    pub fn is_idle(&self, now_ms: u64) -> bool {
        self.active <= 0 && self.run == 0 && self.tat_us <= now_ms as i64 * 1000
    }
}

/// States by slot; looked up by `&str` keys without allocating.
#[derive(Debug, Default)]
pub(crate) struct States {
    map: Map<(&'static str, Kind), Map<String, State>>,
}

impl States {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub fn new() -> States {
        States::default()
    }

    /// The state of a slot, fresh if it has none.
    pub fn entry(&mut self, function: &'static str, kind: Kind, key: &str) -> &mut State {
        let keys = self.map.entry((function, kind)).or_default();
        if !keys.contains_key(key) {
            keys.insert(key.to_owned(), State::default());
        }
        keys.get_mut(key).expect("inserted above")
    }

    pub fn get(&self, function: &'static str, kind: Kind, key: &str) -> Option<&State> {
        self.map.get(&(function, kind))?.get(key)
    }

    /// Sets a slot's state.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub fn insert(&mut self, slot: Slot, state: State) {
        self.map
            .entry((slot.function, slot.kind))
            .or_default()
            .insert(slot.key, state);
    }

    /// Every slot's state.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &State)> {
        self.map.iter().flat_map(|(&(function, kind), keys)| {
            keys.iter().map(move |(key, state)| {
                let slot = Slot {
                    function,
                    kind,
                    key: key.clone(),
                };
                (slot, state)
            })
        })
    }

    /// Keeps the states `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&State) -> bool) {
        self.map.retain(|_, keys| {
            keys.retain(|_, s| keep(s));
            !keys.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.map.values().map(Map::len).sum()
    }
}
