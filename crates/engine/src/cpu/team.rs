//! Fork-join inside one forward step without sleeping between operations.
//!
//! A decode step is hundreds of short parallel operations (each matmul of a
//! 7B is ~1 ms, of a 135M model ~20 us) with short serial parts between
//! them. Under rayon alone, a worker that finds no work for a few
//! microseconds parks, and waking it costs tens of microseconds on these
//! VMs (an inter-processor interrupt to a halted vCPU); so does waking the
//! thread that waits for the last piece. Traced on a 2-vCPU Sapphire Rapids
//! VM, a 7B decode lost ~8% of its time that way: the second thread joined
//! each matmul ~40 us late and the caller resumed ~40 us after the last
//! piece. Like ggml's thread pool, [`step`] keeps every pool thread
//! spinning through one step, and [`for_each_task`] hands them work
//! through one atomic word. Between steps the threads park as rayon parks
//! them; within one, a thread idle for [`IDLE_LIMIT`] goes back to rayon
//! (and the step's later jobs with it), so a busy machine or a long serial
//! part costs no more than rayon alone.
//!
//! While spinning, the other threads still run rayon jobs
//! ([`rayon::yield_now`]), so parallel iterators inside a step keep their
//! parallelism. A second step started meanwhile (one at a time per
//! process) runs on plain rayon, on them when it shares their pool.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// A job's task count and next task share the ticket with the job's
/// number, so that a thread claims a task of the job it read and no other.
const INDEX_BITS: u32 = 20;
const MAX_TASKS: usize = (1 << INDEX_BITS) - 1;
const INDEX_MASK: u64 = MAX_TASKS as u64;

/// How long a following thread spins without work before it leaves the
/// step: longer than the gaps between a decode step's operations (tens of
/// microseconds), short enough that a busy machine loses little.
const IDLE_LIMIT: Duration = Duration::from_micros(500);

/// Set while a step holds its pool's threads. One flag for the process: a
/// second step at the same time runs on plain rayon, whatever its pool (on
/// the same pool the first step's followers take its jobs while they wait).
static STEPPING: AtomicBool = AtomicBool::new(false);

/// The task a job runs, as the leader's stack holds it.
type Task<'a> = &'a (dyn Fn(usize) + Sync);

/// The state one step's threads share.
struct Team {
    /// Job number (bits 40..), task count (20..40), next task (0..20).
    ticket: AtomicU64,
    /// The current job's [`Task`], on the leader's stack. Read only by a
    /// thread that has claimed one of its tasks, which keeps the leader
    /// waiting, so the task is alive.
    task: AtomicPtr<()>,
    /// Tasks of the current job finished (or panicked).
    done: AtomicUsize,
    /// The first panic of the current job, raised again by the leader.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Set when the step's work is over: the other threads go back to rayon.
    over: AtomicBool,
    /// Threads following the leader now. With none, jobs go to rayon.
    members: AtomicUsize,
    /// Set while the leader is inside [`Team::run`]. Waiting there, it runs
    /// rayon jobs, and one of them may be another step's forward (from
    /// another engine in the process) calling [`for_each_task`] on this
    /// thread: that must not start a job over the one in flight.
    in_run: AtomicBool,
}

thread_local! {
    /// The team whose leader this thread is, during a [`step`].
    static LEADING: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    fn new() -> Self {
        Team {
            ticket: AtomicU64::new(0),
            task: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
            over: AtomicBool::new(false),
            members: AtomicUsize::new(0),
            in_run: AtomicBool::new(false),
        }
    }

    /// Claims and runs tasks of the job in the ticket until none is left.
    fn work(&self) {
        let mut t = self.ticket.load(Ordering::Acquire);
        loop {
            let (count, next) = ((t >> INDEX_BITS) & INDEX_MASK, t & INDEX_MASK);
            if next >= count {
                return;
            }
            match self
                .ticket
                .compare_exchange_weak(t, t + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: the claimed task is not done, so the leader is
                    // still inside `for_each_task` and its task is alive.
                    let task = unsafe { *(self.task.load(Ordering::Acquire) as *const Task) };
                    if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| task(next as usize))) {
                        self.panic
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(p);
                    }
                    self.done.fetch_add(1, Ordering::AcqRel);
                    t = self.ticket.load(Ordering::Acquire);
                }
                Err(now) => t = now,
            }
        }
    }

    /// A non-leading thread's part of the step: until the step is over, or
    /// until it has found nothing to do for [`IDLE_LIMIT`] (a long serial
    /// part, or other work on the machine that wants the core), after which
    /// it goes back to rayon.
    fn follow(&self) {
        self.members.fetch_add(1, Ordering::AcqRel);
        let mut idle_since = Instant::now();
        let mut idle_rounds = 0u32;
        while !self.over.load(Ordering::Acquire) {
            let before = self.done.load(Ordering::Relaxed);
            self.work();
            let worked = self.done.load(Ordering::Relaxed) != before
                || rayon::yield_now() == Some(rayon::Yield::Executed);
            if worked {
                idle_rounds = 0;
                continue;
            }
            std::hint::spin_loop();
            idle_rounds += 1;
            if idle_rounds == 1 {
                idle_since = Instant::now();
            } else if idle_rounds.is_multiple_of(64) && idle_since.elapsed() > IDLE_LIMIT {
                break;
            }
        }
        self.members.fetch_sub(1, Ordering::AcqRel);
    }

    /// Runs `task(0..n)` on the team and returns when every task is done.
    fn run(&self, n: usize, task: Task) {
        struct Leave<'a>(&'a AtomicBool);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        self.in_run.store(true, Ordering::Relaxed);
        let _leave = Leave(&self.in_run);
        self.done.store(0, Ordering::Relaxed);
        self.task
            .store(&task as *const Task as *mut (), Ordering::Release);
        let job = (self.ticket.load(Ordering::Relaxed) >> (2 * INDEX_BITS)) + 1;
        self.ticket.store(
            (job << (2 * INDEX_BITS)) | ((n as u64) << INDEX_BITS),
            Ordering::Release,
        );
        self.work();
        // Rayon jobs while waiting too: a task still running elsewhere may
        // wait on one that only this thread can take (another step's
        // broadcast, queued here).
        while self.done.load(Ordering::Acquire) < n {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
        let panicked = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = panicked {
            panic::resume_unwind(p);
        }
    }
}

/// Runs `f` (one forward step) on a thread of the current rayon pool while
/// its other threads spin, taking [`for_each_task`]'s tasks and rayon's
/// jobs, until `f` returns. Plain `f()` in a one-thread pool or inside
/// another step.
pub fn step<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() < 2
        || !LEADING.get().is_null()
        || STEPPING.swap(true, Ordering::AcqRel)
    {
        return f();
    }
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            STEPPING.store(false, Ordering::Release);
        }
    }
    let _release = Release;
    let team = Team::new();
    let f = Mutex::new(Some(f));
    let result = Mutex::new(None);
    rayon::broadcast(|ctx| {
        if ctx.index() != 0 {
            return team.follow();
        }
        let f = f.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Another step's leader may be below on this thread's stack (this
        // broadcast taken while that one waited).
        let outer = LEADING.replace(&team);
        let r = panic::catch_unwind(AssertUnwindSafe(|| f.map(|f| f())));
        LEADING.set(outer);
        team.over.store(true, Ordering::Release);
        *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    });
    let r = result.into_inner().unwrap_or_else(|e| e.into_inner());
    match r {
        Some(Ok(Some(out))) => out,
        Some(Err(p)) => panic::resume_unwind(p),
        _ => unreachable!("the leader ran the step"),
    }
}

/// `task(i)` for every `i < n`, in parallel: on the step's spinning team
/// when called by a [`step`]'s leader, else on rayon.
pub fn for_each_task(n: usize, task: impl Fn(usize) + Sync) {
    // SAFETY: `LEADING` points at the team of the step this thread is
    // running, which lives until the step returns.
    match unsafe { LEADING.get().as_ref() } {
        Some(team)
            if n <= MAX_TASKS
                && team.members.load(Ordering::Acquire) > 0
                && !team.in_run.load(Ordering::Relaxed) =>
        {
            team.run(n, &task)
        }
        _ => (0..n).into_par_iter().for_each(&task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn every_task_runs_once_in_a_step_and_outside_one() {
        for threads in [1, 2, 3] {
            pool(threads).install(|| {
                let hits: Vec<AtomicU32> = (0..1000).map(|_| AtomicU32::new(0)).collect();
                let total = step(|| {
                    for n in [0, 1, 7, 1000] {
                        for_each_task(n, |i| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    // Parallel iterators still work inside a step.
                    (0..100u64).into_par_iter().sum::<u64>()
                });
                assert_eq!(total, 4950);
                for_each_task(1000, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                let counts: Vec<u32> = hits.iter().map(|h| h.load(Ordering::Relaxed)).collect();
                assert_eq!(&counts[..1], &[4], "threads {threads}");
                assert!(counts[1..7].iter().all(|&c| c == 3), "threads {threads}");
                assert!(counts[7..].iter().all(|&c| c == 2), "threads {threads}");
            });
        }
    }

    #[test]
    fn tasks_use_more_than_one_thread() {
        pool(2).install(|| {
            let seen = Mutex::new(std::collections::HashSet::new());
            step(|| {
                for _ in 0..50 {
                    for_each_task(64, |_| {
                        seen.lock().unwrap().insert(std::thread::current().id());
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    });
                }
            });
            assert_eq!(seen.into_inner().unwrap().len(), 2);
        });
    }

    #[test]
    fn a_job_started_inside_a_running_job_leaves_it_whole() {
        // As when the leader, waiting, takes another engine's forward off
        // rayon's queue: the inner job must not replace the outer one.
        pool(2).install(|| {
            let outer: Vec<AtomicU32> = (0..64).map(|_| AtomicU32::new(0)).collect();
            let inner: Vec<AtomicU32> = (0..64 * 8).map(|_| AtomicU32::new(0)).collect();
            step(|| {
                for _ in 0..20 {
                    for_each_task(64, |i| {
                        // Long enough for the other thread to join the team.
                        std::thread::sleep(std::time::Duration::from_micros(20));
                        outer[i].fetch_add(1, Ordering::Relaxed);
                        for_each_task(8, |j| {
                            inner[i * 8 + j].fetch_add(1, Ordering::Relaxed);
                        });
                    });
                }
            });
            assert!(outer.iter().all(|c| c.load(Ordering::Relaxed) == 20));
            assert!(inner.iter().all(|c| c.load(Ordering::Relaxed) == 20));
        });
    }

    #[test]
    fn a_task_panic_reaches_the_caller_and_the_pool_survives() {
        pool(2).install(|| {
            let caught = panic::catch_unwind(|| {
                step(|| for_each_task(100, |i| assert!(i != 57, "task 57 fails")))
            });
            let message = caught.unwrap_err();
            let text = (message.downcast_ref::<&str>().copied())
                .or(message.downcast_ref::<String>().map(String::as_str))
                .unwrap_or_default();
            assert!(text.contains("task 57 fails"), "{text}");
            assert_eq!(step(|| 41 + 1), 42);
        });
    }
}
