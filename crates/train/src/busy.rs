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
//!
//! Spinning is right only while the cores are ours. When another process
//! holds one (a browser, a build), a worker that took half of a product can
//! be descheduled for a whole time slice, milliseconds, while the step it
//! belongs to waits: a 2-thread run became 2.5x slower than a 1-thread one.
//! So the owner times its steps ([`Helpers::timed`]) and now and then runs a
//! few of them the other way: with the helpers standing aside (asleep,
//! taking no work, so that every job stays with the owner) or helping. The
//! faster way is kept, and checked again after twice as many windows of
//! steps each time it wins. Which thread runs a job never changes what it
//! computes, so the results are the same either way.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `f` on the calling worker while the other workers of its pool spin
/// on [`rayon::yield_now`], running any job pushed meanwhile, until `f`
/// returns (or panics). Which thread runs a job does not change what it
/// computes, so results are the same as without spinning.
///
/// `f` is given the [`Helpers`]: steps run through [`Helpers::timed`] let
/// the helpers stand aside while they slow the work down (another process
/// holding a core). Work not run through it finds them as the last timed
/// step left them (helping, before the first): the trainer's evaluations
/// run on the owner alone while the helpers stand aside.
///
/// Called outside a pool, in a pool of one thread, or in a pool of more
/// threads than the machine has cores (spinners would then take turns on the
/// cores with the threads doing the work), it just runs `f`.
pub fn with_busy_workers<R>(f: impl FnOnce(&mut Helpers<'_>) -> R) -> R {
    let Some(owner) = rayon::current_thread_index() else {
        return f(&mut Helpers::none());
    };
    let threads = rayon::current_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || threads > cores {
        return f(&mut Helpers::none());
    }
    let others = threads - 1;
    let spinners = Spinners {
        owner,
        others,
        started: AtomicUsize::new(0),
        done: AtomicBool::new(false),
        helping: AtomicBool::new(true),
        #[cfg(test)]
        naps: AtomicUsize::new(0),
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
        f(&mut Helpers {
            spinners: Some(&spinners),
            pace: Pace::new(),
        })
    })
}

/// The other workers of a pool kept busy by [`with_busy_workers`], as the
/// owner sees them: helping (spinning, taking work) or standing aside.
pub struct Helpers<'a> {
    /// `None` where there are no helpers (one thread, no pool).
    spinners: Option<&'a Spinners>,
    pace: Pace,
}

impl Helpers<'_> {
    fn none() -> Self {
        Helpers {
            spinners: None,
            pace: Pace::new(),
        }
    }

    /// Runs one step of a loop of like steps (a training iteration), timed:
    /// the helpers help or stand aside for it, whichever way the timings so
    /// far have found faster.
    pub fn timed<R>(&mut self, step: impl FnOnce() -> R) -> R {
        let Some(spinners) = self.spinners else {
            return step();
        };
        let start = Instant::now();
        let result = step();
        let helping = self.pace.record(start.elapsed());
        // Between steps every job of the last one is finished, so the
        // helpers can change their way here without a job in flight.
        spinners.helping.store(helping, Ordering::Relaxed);
        result
    }

    /// Whether the helpers help (spin and take work) at the next step; true
    /// where there are none to stand aside.
    pub fn helping(&self) -> bool {
        self.spinners.is_none() || self.pace.helping
    }
}

/// The most steps in a measured window: 32 steps of the book's net are
/// ~6 ms, several time slices, so that a helper descheduled now and then
/// shows in the mean.
const WINDOW: u32 = 32;
/// A window also ends once it has lasted this long: a convnet's step (5 to
/// 40 ms) spans time slices on its own, and a trial of the slower way should
/// cost about a window's time, not 32 such steps (each up to twice as slow
/// on two cores).
const WINDOW_TIME: Duration = Duration::from_millis(20);
/// Steps before the first window: the first steps allocate and warm caches.
const WARM_UP: u32 = 8;
/// Windows between trials of the other way, at first and after a change.
const FIRST_INTERVAL: u32 = 4;
/// The most windows between trials: one window in 64 is a trial, at worst
/// (the other way slower by as much as it ever is) a few percent.
const LONGEST_INTERVAL: u32 = 64;
/// A trial wins when its mean step is faster than this fraction of the
/// window before it: noise between windows is a few percent.
const WIN_BELOW: f64 = 0.95;

/// Which way the helpers run, and when to try the other one.
struct Pace {
    /// The way chosen: helping (spinning, taking work) or standing aside.
    helping: bool,
    /// Steps taken in the current window, and their time.
    steps: u32,
    elapsed: Duration,
    /// The mean step of the last window run the chosen way, and its steps.
    chosen_mean: Option<Duration>,
    chosen_steps: u32,
    /// Whether the current window is a trial of the other way.
    trial: bool,
    /// Whether the current window is the lead-in of a trial of helping,
    /// run helping but not measured: helpers that napped through windows
    /// of standing aside (on a core left idle) take a few milliseconds to
    /// help at full speed, and trials measured from their first step kept
    /// a run standing aside long after another process had let a core go
    /// (each trial of helping slower than standing aside: 240-280 us a step
    /// of the default run against 230, where helping takes 150-160).
    lead_in: bool,
    /// Windows the chosen way until the next trial, and that interval.
    until_trial: u32,
    interval: u32,
    /// Steps left to warm up.
    warm_up: u32,
}

impl Pace {
    fn new() -> Self {
        Pace {
            helping: true,
            steps: 0,
            elapsed: Duration::ZERO,
            chosen_mean: None,
            chosen_steps: WINDOW,
            // The first window after the warm-up is measured helping, the
            // second standing aside: the choice is made from the start.
            trial: false,
            lead_in: false,
            until_trial: 1,
            interval: FIRST_INTERVAL,
            warm_up: WARM_UP,
        }
    }

    /// Records a step's time; returns whether the helpers help at the next.
    fn record(&mut self, step: Duration) -> bool {
        if self.warm_up > 0 {
            self.warm_up -= 1;
            return self.current();
        }
        self.steps += 1;
        self.elapsed += step;
        // A trial already slower than a window of the chosen way has lost:
        // it ends there, so that a trial costs at most about one window's
        // time however slow the other way is (a helper descheduled in every
        // step of it: tens of times slower).
        let chosen = self.chosen_mean.unwrap_or(Duration::MAX).as_secs_f64();
        let lost = self.trial && self.elapsed.as_secs_f64() > chosen * f64::from(self.chosen_steps);
        if self.steps < WINDOW && self.elapsed < WINDOW_TIME && !lost {
            return self.current();
        }
        let (steps, mean) = (self.steps, self.elapsed / self.steps);
        (self.steps, self.elapsed) = (0, Duration::ZERO);
        if self.lead_in {
            self.lead_in = false;
            // A lead-in already slower than a window of the chosen way is
            // judged as the trial (it costs no more than one); otherwise the
            // next window, helping at full speed, is.
            if !lost {
                return self.current();
            }
        }
        if self.trial {
            self.trial = false;
            // The mean decides, not `lost`: a faster trial whose window ran
            // more steps than the chosen one's can pass its total time.
            if mean.as_secs_f64() < WIN_BELOW * chosen {
                // The other way is faster: take it, and check it again soon.
                self.helping = !self.helping;
                self.chosen_mean = Some(mean);
                self.chosen_steps = steps;
                self.interval = FIRST_INTERVAL;
            } else {
                self.interval = (self.interval * 2).min(LONGEST_INTERVAL);
            }
            self.until_trial = self.interval;
        } else {
            self.chosen_mean = Some(mean);
            self.chosen_steps = steps;
            self.until_trial -= 1;
            self.trial = self.until_trial == 0;
            self.lead_in = self.trial && !self.helping;
        }
        self.current()
    }

    /// The way of the next step: the chosen one, or the other in a trial.
    fn current(&self) -> bool {
        self.helping != self.trial
    }
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
    /// Whether the spinners take work; when not, they sleep in short naps
    /// and every job stays with the owner.
    helping: AtomicBool,
    /// Naps taken: a test's proof that a spinner has seen `helping` false
    /// (waiting a fixed time instead would race with a descheduled spinner
    /// that read it true just before the change).
    #[cfg(test)]
    naps: AtomicUsize,
}

/// A standing-aside spinner's nap: long enough that its wake-ups, each a
/// trip through the scheduler that can preempt the owner, cost little (with
/// one core held by another process, the default run took 1.11x its
/// 1-thread time with naps of 200 us, 1.05x with 2 ms); short enough that it
/// is back within a window of being asked to help.
const NAP: Duration = Duration::from_millis(2);

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
            if !self.helping.load(Ordering::Relaxed) {
                std::thread::sleep(NAP);
                #[cfg(test)]
                self.naps.fetch_add(1, Ordering::Release);
            } else if rayon::yield_now() != Some(rayon::Yield::Executed) {
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
            let sum = pool(threads).install(|| with_busy_workers(|_| (0..50).map(|_| join_sum(&values)).sum::<u64>()));
            assert_eq!(sum, 50 * 10_000 * 10_001 / 2, "{threads} threads");
        }
        // Outside any pool it is a plain call.
        assert_eq!(with_busy_workers(|_| 7), 7);
    }

    #[test]
    fn a_spinning_worker_takes_the_job_the_owner_leaves() {
        // The owner pushes `right` and then waits for another worker to take
        // it. A spinner that spun without looking for work would leave it
        // there; the owner would then (after 10 s, a guard against hanging,
        // not a measure of speed) run it itself, and fail.
        pool(2).install(|| {
            with_busy_workers(|_| {
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
        let result = pool.install(|| std::panic::catch_unwind(|| with_busy_workers(|_| panic!("inside"))));
        assert!(result.is_err());
        // The scope waited for the spinners to stop, and the pool still works.
        assert_eq!(
            pool.install(|| with_busy_workers(|_| join_sum(&[1, 2, 3, 4, 5, 6]))),
            21
        );
    }

    /// Which worker runs the second half of a join while the first waits
    /// (up to `wait`) for it to be taken.
    fn taker_of_a_join(wait: Duration) -> Option<usize> {
        let taken_by = AtomicUsize::new(usize::MAX);
        let waiting = Instant::now();
        rayon::join(
            || {
                while taken_by.load(Ordering::Acquire) == usize::MAX && waiting.elapsed() < wait {
                    std::hint::spin_loop();
                }
            },
            || taken_by.store(rayon::current_thread_index().unwrap(), Ordering::Release),
        );
        Some(taken_by.into_inner())
    }

    #[test]
    fn standing_aside_helpers_leave_every_job_to_the_owner_and_return_to_help() {
        pool(2).install(|| {
            with_busy_workers(|helpers| {
                let owner = rayon::current_thread_index();
                let spinners = helpers.spinners.expect("two threads on a machine of two or more cores");
                spinners.helping.store(false, Ordering::Relaxed);
                // Until the spinner has napped once it may still be between
                // reading `helping` (true) and looking for work: on a loaded
                // machine that gap can last a time slice.
                let waiting = Instant::now();
                while spinners.naps.load(Ordering::Acquire) == 0 {
                    assert!(
                        waiting.elapsed() < Duration::from_secs(10),
                        "the spinner never stood aside"
                    );
                    std::thread::sleep(NAP);
                }
                for _ in 0..20 {
                    // Left 2 ms in the owner's queue, the job is still there
                    // for the owner to run itself.
                    assert_eq!(taker_of_a_join(Duration::from_millis(2)), owner);
                }
                spinners.helping.store(true, Ordering::Relaxed);
                for _ in 0..20 {
                    assert_ne!(taker_of_a_join(Duration::from_secs(10)), owner);
                }
            })
        });
    }

    /// Runs `steps` steps through a [`Pace`] whose steps take `cost(helping,
    /// step)`; returns how many ran helping.
    fn paced(pace: &mut Pace, steps: u32, cost: impl Fn(bool, u32) -> Duration) -> u32 {
        let mut helped = 0;
        let mut helping = pace.current();
        for step in 0..steps {
            helped += u32::from(helping);
            helping = pace.record(cost(helping, step));
        }
        helped
    }

    /// A [`Pace`] that has chosen to stand aside: 2000 steps of 5 ms helping
    /// (another process holding a core) and `aside` on the owner alone.
    fn standing_aside(aside: Duration) -> Pace {
        let mut pace = Pace::new();
        paced(
            &mut pace,
            2_000,
            |helping, _| if helping { Duration::from_millis(5) } else { aside },
        );
        assert!(!pace.helping);
        pace
    }

    #[test]
    fn pace_keeps_helping_while_it_is_faster_and_tries_the_other_way_rarely() {
        let mut pace = Pace::new();
        let us = Duration::from_micros;
        // The book's net: helping 200 us a step, standing aside 300 us (two
        // cores of our own); windows of 32 steps.
        let helped = paced(&mut pace, 10_000, |helping, _| if helping { us(200) } else { us(300) });
        assert!(pace.helping);
        // The trials, at doubling intervals, are under 4% of the steps.
        assert!(helped > 9_600, "{helped} of 10000 steps helped");
        // Steps of milliseconds: windows of 20 ms, the same way.
        let mut pace = Pace::new();
        let ms = Duration::from_millis;
        let helped = paced(&mut pace, 10_000, |helping, _| if helping { ms(2) } else { ms(3) });
        assert!(pace.helping);
        assert!(helped > 9_600, "{helped} of 10000 steps helped");
    }

    #[test]
    fn pace_tries_long_steps_one_at_a_time() {
        // DeepConvNet's steps: 40 ms helping, 72 ms on the owner alone. A
        // window is one step, so a lost trial costs one step, not 32.
        let mut pace = Pace::new();
        let ms = Duration::from_millis;
        let helped = paced(&mut pace, 100, |helping, _| if helping { ms(40) } else { ms(72) });
        assert!(pace.helping);
        assert!(helped >= 95, "{helped} of 100 steps helped");
    }

    #[test]
    fn pace_stands_aside_while_helping_is_slower_and_follows_a_change() {
        let mut pace = Pace::new();
        let ms = Duration::from_millis;
        // Another process holds a core: helping costs 2.5x.
        let helped = paced(&mut pace, 10_000, |helping, _| if helping { ms(5) } else { ms(2) });
        assert!(!pace.helping);
        assert!(helped < 400, "{helped} of 10000 steps helped");
        // However slow helping is, a trial of it ends once it has taken a
        // window's time: 50x slower, each of its ~20 trials is one step (and
        // the first window, one step too).
        let mut pace = Pace::new();
        let helped = paced(&mut pace, 10_000, |helping, _| if helping { ms(100) } else { ms(2) });
        assert!(!pace.helping);
        assert!(helped < WARM_UP + 1 + 24, "{helped} of 10000 steps helped");
        // The other process ends: within the longest interval (64 windows
        // of 7 steps of 3 ms) and a trial, the helpers help again, and keep
        // helping.
        let helped = paced(&mut pace, 10_000, |helping, _| if helping { ms(2) } else { ms(3) });
        assert!(pace.helping);
        assert!(helped > 10_000 - LONGEST_INTERVAL * 7 - 400, "{helped}");
    }

    #[test]
    fn pace_returns_to_helping_when_it_is_faster_by_an_uneven_margin() {
        // Standing aside at 3 ms makes windows of 7 steps (21 ms); a trial
        // of helping at 2.2 ms passes that total on its tenth step, but its
        // mean is what decides.
        let (ms, us) = (Duration::from_millis, Duration::from_micros);
        let mut pace = standing_aside(ms(3));
        let helped = paced(&mut pace, 10_000, |helping, _| if helping { us(2_200) } else { ms(3) });
        assert!(pace.helping);
        assert!(helped > 10_000 - LONGEST_INTERVAL * 7 - 400, "{helped}");
    }

    #[test]
    fn pace_returns_to_helping_when_helpers_are_slow_to_wake() {
        // After standing aside, the helpers' first 5 steps of helping (three
        // quarters of a window) are slower than the owner alone (napping
        // threads, an idle core), then twice as fast: a trial measured from
        // its first step would lose every time (a mean of 2 ms against 2);
        // after its lead-in it wins.
        let ms = Duration::from_millis;
        let mut pace = standing_aside(ms(2));
        let helping_run = std::cell::Cell::new(0u32);
        let helped = paced(&mut pace, 10_000, |helping, _| {
            helping_run.set(if helping { helping_run.get() + 1 } else { 0 });
            match (helping, helping_run.get()) {
                (false, _) => ms(2),
                (true, 1..=5) => ms(3),
                (true, _) => ms(1),
            }
        });
        assert!(pace.helping);
        assert!(helped > 9_000, "{helped} of 10000 steps helped");
    }

    #[test]
    fn timed_steps_without_helpers_run_as_they_are() {
        // Outside a pool there is nothing to pace: the step's value comes back.
        let total = with_busy_workers(|helpers| (0..100).map(|i| helpers.timed(|| i)).sum::<u32>());
        assert_eq!(total, 4950);
    }
}
