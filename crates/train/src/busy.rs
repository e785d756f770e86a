//! Keeping a pool's workers awake through a training loop.
//!
//! A step of the book's net splits three pieces of work over the threads
//! (the gather and two products), each lasting tens of microseconds. Between
//! them, rayon's idle workers spin briefly and then sleep, and waking a
//! sleeping thread is a futex call and a trip through the scheduler: on a
//! virtual machine that costs as much as the half product it was woken for.
//! `perf` on a 2-thread step put a quarter of the time in the kernel's
//! scheduler, and the step was no faster than on one thread.
//!
//! So for the length of a run the other workers do what OpenMP's
//! `OMP_WAIT_POLICY=active` and OpenBLAS's threads do: they spin, taking
//! work the moment it is pushed. The price is that those cores stay busy
//! between pieces of work, which a run that asked for them uses anyway.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `f` on the calling worker while the other workers of its pool spin
/// on [`rayon::yield_now`], running any job pushed meanwhile, until `f`
/// returns (or panics). Which thread runs a job does not change what it
/// computes, so results are the same as without spinning.
///
/// Called outside a pool, in a pool of one thread, or in a pool of more
/// threads than the machine has cores (spinners would then take turns on the
/// cores with the threads doing the work), it just runs `f`.
pub fn with_busy_workers<R>(f: impl FnOnce() -> R) -> R {
    let Some(owner) = rayon::current_thread_index() else {
        return f();
    };
    let threads = rayon::current_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || threads > cores {
        return f();
    }
    let others = threads - 1;
    let spinners = Spinners {
        owner,
        others,
        started: AtomicUsize::new(0),
        done: AtomicBool::new(false),
    };
    // `in_place_scope` runs `f` here, on this worker, so `f` need not be
    // `Send`; the spinners are pushed to this worker's queue for the idle
    // workers to take. The scope returns once they have all stopped.
    rayon::in_place_scope(|scope| {
        for _ in 0..others {
            scope.spawn(|_| spinners.spin());
        }
        let _stop = SetOnDrop(&spinners.done);
        // Until every spinner is on its own worker, this worker must not
        // wait on a join: it would take the spinners left in its own queue.
        let waiting = Instant::now();
        while spinners.started.load(Ordering::Acquire) < others && waiting.elapsed() < START_WAIT {
            std::hint::spin_loop();
        }
        f()
    })
}

/// How long the owner waits for the spinners to start before running `f`
/// anyway: only a worker held elsewhere (another job in the pool) takes
/// longer than microseconds, and then the run goes on without its help.
const START_WAIT: Duration = Duration::from_secs(1);

struct Spinners {
    /// The index of the worker that runs `f`.
    owner: usize,
    /// How many spinners there are: the pool's other workers.
    others: usize,
    /// Spinners started on a worker, or (after [`START_WAIT`]) returned at
    /// once by the owner: when it reaches `others`, the spinners look for work.
    started: AtomicUsize,
    /// Set when `f` has returned or panicked.
    done: AtomicBool,
}

impl Spinners {
    /// A worker's loop while the owner's work lasts.
    fn spin(&self) {
        // The owner only takes a spinner from its queue after giving up
        // waiting for them; it must return at once, as `done` is set only
        // when `f` returns on that same thread. It still counts as started,
        // so that the spinners that did start go on to look for work.
        self.started.fetch_add(1, Ordering::AcqRel);
        if rayon::current_thread_index() == Some(self.owner) {
            return;
        }
        // Wait for the other spinners to start before looking for work, so
        // that no spinner takes another one's job and leaves a worker asleep.
        while self.started.load(Ordering::Acquire) < self.others && !self.done.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        while !self.done.load(Ordering::Acquire) {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
    }
}

/// Sets the flag when dropped, so the spinners stop even when `f` panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    /// A recursive sum whose every level is a join.
    fn join_sum(values: &[u64]) -> u64 {
        if values.len() <= 4 {
            return values.iter().sum();
        }
        let (left, right) = values.split_at(values.len() / 2);
        let (a, b) = rayon::join(|| join_sum(left), || join_sum(right));
        a + b
    }

    #[test]
    fn work_inside_finishes_and_returns_its_value_for_any_pool_size() {
        let values: Vec<u64> = (1..=10_000).collect();
        for threads in 1..=4 {
            let sum = pool(threads).install(|| with_busy_workers(|| (0..50).map(|_| join_sum(&values)).sum::<u64>()));
            assert_eq!(sum, 50 * 10_000 * 10_001 / 2, "{threads} threads");
        }
        // Outside any pool it is a plain call.
        assert_eq!(with_busy_workers(|| 7), 7);
    }

    #[test]
    fn a_spinning_worker_takes_the_job_the_owner_leaves() {
        // The owner pushes `right` and then waits for another worker to take
        // it. A spinner that spun without looking for work would leave it
        // there; the owner would then (after 10 s, a guard against hanging,
        // not a measure of speed) run it itself, and fail.
        pool(2).install(|| {
            with_busy_workers(|| {
                let owner = rayon::current_thread_index();
                for _ in 0..100 {
                    let taken_by = AtomicUsize::new(usize::MAX);
                    let waiting = Instant::now();
                    rayon::join(
                        || {
                            while taken_by.load(Ordering::Acquire) == usize::MAX
                                && waiting.elapsed() < Duration::from_secs(10)
                            {
                                std::hint::spin_loop();
                            }
                        },
                        || taken_by.store(rayon::current_thread_index().unwrap(), Ordering::Release),
                    );
                    assert_ne!(Some(taken_by.into_inner()), owner);
                }
            })
        });
    }

    #[test]
    fn a_panic_in_f_stops_the_spinners_and_reaches_the_caller() {
        let pool = pool(2);
        let result = pool.install(|| std::panic::catch_unwind(|| with_busy_workers(|| panic!("inside"))));
        assert!(result.is_err());
        // The scope waited for the spinners to stop, and the pool still works.
        assert_eq!(pool.install(|| with_busy_workers(|| join_sum(&[1, 2, 3, 4, 5, 6]))), 21);
    }
}
