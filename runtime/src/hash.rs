//! The maps on the per-run path: flow-control states and held queues (keyed by the
//! user's strings), the runs in flight, the registry's triggers.
//!
//! They hash with foldhash, seeded per process, instead of SipHash: a keyed run is
//! looked up about ten times between its send and its outcome, and with foldhash the
//! memory store ran 4-8 % more keyed runs a second (`bench --only flow`). foldhash keeps
//! a random seed, so keys an attacker picks cannot be aimed at one bucket in advance.

/// A `HashMap` with the fast hasher.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
