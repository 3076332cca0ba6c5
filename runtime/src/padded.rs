//! A value on cache lines of its own.

use std::ops::{Deref, DerefMut};

/// Keeps `T` on cache lines no other value shares (128 bytes: x86 prefetches lines in
/// pairs), so that threads writing it (a lock taken on every run) do not slow threads
/// reading its neighbours, and the reverse.
///
/// The engine's in-flight lock and the memory store's lock and inbox are padded: each
/// is taken by both worker threads on every run, and the fields beside them (the
/// registry, the counters, the `Arc`'s reference count) are read as often.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Padded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
