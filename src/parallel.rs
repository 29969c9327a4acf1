//! Sharing work out between scoped threads (weight packing, the weights' NaN scan).

use std::sync::Mutex;

/// Runs `f` on every item of `items`, on this thread and up to `threads - 1` scoped ones that
/// take the items in turn. A thread that cannot start (a process limit) leaves its share to the
/// others; this thread always works, so every item is done.
pub(crate) fn share_out<T: Send>(items: impl Iterator<Item = T> + Send, threads: usize, f: &(dyn Fn(T) + Sync)) {
    let items = Mutex::new(items);
    // The lock is held only to take the next item.
    let take = || {
        while let Some(item) = items.lock().ok().and_then(|mut it| it.next()) {
            f(item);
        }
    };
    if threads <= 1 {
        return take();
    }
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new().spawn_scoped(scope, take);
        }
        take();
    });
}
