//! Values computed once per process by key (a parsed graph, a graph optimized for some images,
//! a signature). A second caller of a key waits for the first rather than computing it again:
//! two stages loading one 400 MB graph at once (`--jobs`) would otherwise parse it twice and
//! hold both. A failure is not kept: the next caller tries again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A process-wide map from keys to values computed on first use.
pub(super) struct Memo<K, V>(Mutex<BTreeMap<K, Arc<Mutex<Option<V>>>>>);

/// A lock whose holder panicked still guards a consistent value here (a slot is either empty
/// or filled), so it is taken as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K: Ord, V: Clone> Memo<K, V> {
    pub(super) const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    /// The value of `key`, made by `make` if no caller made it yet.
    pub(super) fn get_or_try<E>(
        &self,
        key: K,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let slot = lock(&self.0).entry(key).or_default().clone();
        let mut value = lock(&slot);
        if let Some(v) = value.as_ref() {
            return Ok(v.clone());
        }
        let v = make()?;
        *value = Some(v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn a_value_is_made_once_and_a_failure_is_retried() {
        static MEMO: Memo<u32, u32> = Memo::new();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let make = |ok: bool| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if ok { Ok(7) } else { Err("no") }
        };
        assert_eq!(MEMO.get_or_try(1, || make(false)), Err("no"));
        assert_eq!(MEMO.get_or_try(1, || make(true)), Ok(7));
        assert_eq!(MEMO.get_or_try(1, || make(true)), Ok(7));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| assert_eq!(MEMO.get_or_try(2, || make(true)), Ok(7)));
            }
        });
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
