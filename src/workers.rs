//! A fixed number of worker threads that take items from a shared list, so
//! one slow tenant never holds up the others.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Calls `work` on every item from up to `parallelism` threads. Once `stop`
/// is set, no further item is started; items already running finish.
pub fn run_all<T: Sync>(
    items: &[T],
    parallelism: usize,
    stop: &AtomicBool,
    work: impl Fn(&T) + Sync,
) {
    let next = AtomicUsize::new(0);
    let workers = parallelism.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    work(item);
                }
            });
        }
    });
}
