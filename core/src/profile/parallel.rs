//! Independent, CPU-bound work of one profile (opening pulled envelopes,
//! loading section documents) spread over the device's cores, results in
//! input order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `f` over `items` on up to `available_parallelism()` scoped threads (on
/// this thread alone for fewer than `min_items`). Workers take items from
/// one queue in order, so put the largest first. An item whose worker
/// panicked is `None` (never silently dropped: callers refuse it).
pub(crate) fn map<T: Sync, R: Send>(
    items: &[T],
    min_items: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Option<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads < 2 || items.len() < min_items {
        return items.iter().map(|item| Some(f(item))).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                })
            })
            .collect();
        for worker in workers {
            // A panicked worker leaves its item's slot empty.
            let _ = worker.join();
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_reports_panics_as_none() {
        let items: Vec<u32> = (0..200).collect();
        let doubled = map(&items, 1, |x| x * 2);
        assert_eq!(
            doubled,
            items.iter().map(|x| Some(x * 2)).collect::<Vec<_>>()
        );
        let sequential = map(&items[..3], 10, |x| x + 1);
        assert_eq!(sequential, vec![Some(1), Some(2), Some(3)]);
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            let out = map(&items, 1, |x| {
                assert!(*x != 7, "a worker fails on item 7");
                *x
            });
            // Only the failed item is missing: the other workers finish the rest.
            for (i, r) in out.iter().enumerate() {
                assert_eq!(r.is_none(), i == 7, "item {i}");
            }
        }
    }
}
