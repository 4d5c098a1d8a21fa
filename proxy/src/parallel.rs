//! Control-path work spread over the cores: parsing a manifest folder,
//! compiling every tenant at a start or a full resync.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What [`map`] produced.
pub struct Mapped<R> {
    /// One result per item, in the items' order; `None` for the items a
    /// worker that panicked had taken.
    pub results: Vec<Option<R>>,
    /// The first panic, if a worker panicked.
    pub panic: Option<Box<dyn Any + Send>>,
}

/// Maps `items` with `f` on every core (at most 8), this thread included.
/// Items are handed out in batches of `batch`, so a slow item delays nothing
/// else and fewer items than two batches use no other thread. What this
/// thread builds lives in the main heap, which later phases reuse; with the
/// work only on other threads, glibc's per-thread heaps kept what it freed.
pub fn map<T: Sync, R: Send>(items: &[T], batch: usize, f: impl Fn(&T) -> R + Sync) -> Mapped<R> {
    let batch = batch.max(1);
    let next = AtomicUsize::new(0);
    let work = || {
        let mut out: Vec<(usize, R)> = Vec::new();
        loop {
            let start = next.fetch_add(batch, Ordering::Relaxed);
            if start >= items.len() {
                return out;
            }
            for (i, item) in items.iter().enumerate().skip(start).take(batch) {
                out.push((i, f(item)));
            }
        }
    };
    let helpers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8)
        .min(items.len().div_ceil(batch))
        .saturating_sub(1);
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut panic = None;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..helpers).map(|_| scope.spawn(work)).collect();
        let mut done = vec![catch_unwind(AssertUnwindSafe(work))];
        done.extend(handles.into_iter().map(|h| h.join()));
        for outcome in done {
            match outcome {
                Ok(out) => {
                    for (i, r) in out {
                        results[i] = Some(r);
                    }
                }
                Err(p) => {
                    panic.get_or_insert(p);
                }
            }
        }
    });
    Mapped { results, panic }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u32> = (0..1000).collect();
        let mapped = map(&items, 7, |x| x * 2);
        assert!(mapped.panic.is_none());
        let results: Vec<u32> = mapped.results.into_iter().map(Option::unwrap).collect();
        assert_eq!(results, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(map(&[] as &[u32], 4, |x| *x).results.is_empty());
    }

    #[test]
    fn a_panic_is_returned_and_loses_only_that_workers_items() {
        let items: Vec<u32> = (0..64).collect();
        let mapped = map(&items, 4, |x| {
            assert!(*x != 13, "item 13 fails");
            *x
        });
        assert!(mapped.panic.is_some());
        assert!(mapped.results[13].is_none());
        // Items in batches before 13's were finished by someone.
        for (i, r) in mapped.results.iter().enumerate() {
            if let Some(r) = r {
                assert_eq!(*r as usize, i);
            }
        }
    }
}
