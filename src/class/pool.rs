//! Learners side by side: a bounded pool of OS threads, each taking the
//! next learner until none is left. The exercise machinery is synchronous
//! per lab (a Rhai engine on a blocking thread, bridged to tokio), so a
//! thread per running lab is the natural unit; the bound keeps a class of
//! thirty from starting thirty labs at once on a two-core machine or
//! thirty bursts of API calls against one AWS account.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `job` on every item, at most `parallel` at a time; the results
/// come back in the items' order. Once `stop` is set no further item is
/// started (`None` for those); the ones running finish.
pub fn run<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    stop: &AtomicBool,
    job: impl Fn(&T) -> R + Sync,
) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let threads = parallel.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { return };
                    let r = job(item);
                    results.lock().expect("results lock")[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().expect("results lock")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn runs_everything_in_order_at_most_n_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let items: Vec<u32> = (0..12).collect();
        let out = run(&items, 3, &stop, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| Some(i * 2)).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn stop_starts_nothing_more() {
        let stop = AtomicBool::new(false);
        let items: Vec<u32> = (0..10).collect();
        let out = run(&items, 2, &stop, |i| {
            if *i == 3 {
                stop.store(true, Ordering::SeqCst);
            }
            *i
        });
        let done = out.iter().filter(|r| r.is_some()).count();
        assert!((4..=5).contains(&done), "{out:?}");
        assert_eq!(out[3], Some(3));
        assert_eq!(out[9], None);
        assert!(run(&Vec::<u32>::new(), 4, &stop, |i| *i).is_empty());
    }
}
