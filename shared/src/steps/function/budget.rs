//! The time budget of one run: the CPU time of the thread running it, with a wall-clock
//! ceiling as a separate guard.
//!
//! Invariant: a run is stopped once its thread has used `time_limit` of CPU time (measured
//! with `CLOCK_THREAD_CPUTIME_ID`, so a busy machine does not shorten it), or once
//! [`wall_ceiling`] of wall-clock time has passed since it started, whichever comes first.
//! The check runs from QuickJS's interrupt handler, which is called very often: it reads the
//! wall clock on every call (cheap, a vDSO read) and the thread's CPU clock (a system call) at
//! most once per [`CPU_CHECK_EVERY`] of wall time, so a run may overshoot its CPU limit by
//! about that much.

use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

/// How often, in wall time, the interrupt handler reads the thread's CPU clock.
pub const CPU_CHECK_EVERY: Duration = Duration::from_millis(1);

/// Which time bound a run went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overrun {
    /// The thread used the run's CPU time limit.
    CpuTime,
    /// The run's wall-clock time passed [`wall_ceiling`] (the thread was starved of CPU, or
    /// the script sat in a host call).
    WallClock,
}

/// The wall-clock ceiling of a run with CPU time limit `cpu_limit`: 3 × the limit + 1 s.
/// Generous on purpose: the pool runs at most one script per core, so a run normally gets
/// its CPU time in about as much wall time; the ceiling only bounds a run whose thread is
/// starved or held.
pub fn wall_ceiling(cpu_limit: Duration) -> Duration {
    cpu_limit.saturating_mul(3).saturating_add(Duration::from_secs(1))
}

/// The CPU time the calling thread has used so far; `None` if the clock cannot be read.
pub fn thread_cpu_time() -> Option<Duration> {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok().map(Duration::from)
}

/// The running bounds of one run. Pure: the clocks are passed in, so the logic is testable
/// without burning CPU.
#[derive(Debug)]
pub struct Deadline {
    cpu_limit: Duration,
    ceiling: Duration,
    wall_start: Instant,
    cpu_start: Option<Duration>,
    next_cpu_check: Instant,
    cpu_used: Duration,
}

impl Deadline {
    /// Starts the budget at wall time `now`, with the thread's CPU clock reading `cpu_now`.
    pub fn start(cpu_limit: Duration, ceiling: Duration, now: Instant, cpu_now: Option<Duration>) -> Self {
        Deadline {
            cpu_limit,
            ceiling,
            wall_start: now,
            cpu_start: cpu_now,
            next_cpu_check: now,
            cpu_used: Duration::ZERO,
        }
    }

    /// Whether the run is over a bound at wall time `now`. `cpu_clock` is read only when the
    /// last reading is at least [`CPU_CHECK_EVERY`] old. Without a CPU clock (it failed at the
    /// start or now), wall time stands in for CPU time.
    pub fn check(&mut self, now: Instant, cpu_clock: impl FnOnce() -> Option<Duration>) -> Option<Overrun> {
        let wall = now.saturating_duration_since(self.wall_start);
        if wall >= self.ceiling {
            return Some(Overrun::WallClock);
        }
        if now < self.next_cpu_check {
            return None;
        }
        self.next_cpu_check = now + CPU_CHECK_EVERY;
        self.cpu_used = match (self.cpu_start, cpu_clock()) {
            (Some(start), Some(cpu)) => cpu.saturating_sub(start),
            _ => wall,
        };
        (self.cpu_used >= self.cpu_limit).then_some(Overrun::CpuTime)
    }

    /// [`Deadline::check`] at the end of a run, reading the CPU clock whatever the age of the
    /// last reading: a run that ended past a bound (inside a native call, which the interrupt
    /// cannot stop) is over it all the same.
    pub fn check_at_end(&mut self, now: Instant, cpu_clock: impl FnOnce() -> Option<Duration>) -> Option<Overrun> {
        self.next_cpu_check = now;
        self.check(now, cpu_clock)
    }

    /// The CPU time used at the last CPU reading, and the wall time since the start.
    pub fn used(&self, now: Instant) -> (Duration, Duration) {
        (self.cpu_used, now.saturating_duration_since(self.wall_start))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_cpu_limit_counts_cpu_time_not_wall_time() {
        let start = Instant::now();
        let mut deadline = Deadline::start(2000 * MS, wall_ceiling(2000 * MS), start, Some(500 * MS));
        // 3 s of wall time but only 1.5 s of CPU (the thread shared its core): not over.
        assert_eq!(deadline.check(start + 3000 * MS, || Some(2000 * MS)), None);
        assert_eq!(deadline.check(start + 4100 * MS, || Some(2500 * MS)), Some(Overrun::CpuTime));
        assert_eq!(deadline.used(start + 4100 * MS), (2000 * MS, 4100 * MS));
    }

    #[test]
    fn the_wall_clock_ceiling_stops_a_run_that_gets_no_cpu() {
        let start = Instant::now();
        assert_eq!(wall_ceiling(2000 * MS), 7000 * MS, "3 × 2 s + 1 s");
        let mut deadline = Deadline::start(2000 * MS, wall_ceiling(2000 * MS), start, Some(Duration::ZERO));
        assert_eq!(deadline.check(start + 6999 * MS, || Some(10 * MS)), None);
        assert_eq!(deadline.check(start + 7000 * MS, || Some(10 * MS)), Some(Overrun::WallClock));
        assert_eq!(wall_ceiling(Duration::from_millis(200)), 1600 * MS);
        assert_eq!(wall_ceiling(Duration::MAX), Duration::MAX, "saturates instead of overflowing");
    }

    #[test]
    fn the_cpu_clock_is_read_at_most_once_a_millisecond() {
        let start = Instant::now();
        let mut deadline = Deadline::start(1000 * MS, wall_ceiling(1000 * MS), start, Some(Duration::ZERO));
        let reads = Cell::new(0);
        let clock = || {
            reads.set(reads.get() + 1);
            Some(Duration::ZERO)
        };
        for _ in 0..10_000 {
            assert_eq!(deadline.check(start, clock), None);
        }
        assert_eq!(reads.get(), 1, "the same instant: one read");
        for step in 1..=100u32 {
            deadline.check(start + step * Duration::from_micros(100), clock);
        }
        assert_eq!(reads.get(), 11, "10 ms of calls every 0.1 ms: one read per millisecond");
    }

    #[test]
    fn without_a_cpu_clock_wall_time_stands_in() {
        let start = Instant::now();
        let mut deadline = Deadline::start(100 * MS, wall_ceiling(100 * MS), start, None);
        assert_eq!(deadline.check(start + 50 * MS, || Some(Duration::ZERO)), None);
        assert_eq!(deadline.check(start + 100 * MS, || Some(Duration::ZERO)), Some(Overrun::CpuTime));
        let mut deadline = Deadline::start(100 * MS, wall_ceiling(100 * MS), start, Some(Duration::ZERO));
        assert_eq!(deadline.check(start + 100 * MS, || None), Some(Overrun::CpuTime));
    }

    #[test]
    fn the_thread_cpu_clock_advances_with_work_and_not_with_sleep() {
        let before = thread_cpu_time().expect("the thread CPU clock reads");
        std::thread::sleep(Duration::from_millis(50));
        let slept = thread_cpu_time().expect("reads");
        assert!(slept - before < Duration::from_millis(20), "sleeping used {:?} of CPU", slept - before);
        let begun = Instant::now();
        let mut spin = 0u64;
        let mut worked = slept;
        while worked - slept < Duration::from_millis(20) && begun.elapsed() < Duration::from_secs(10) {
            for _ in 0..10_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            worked = thread_cpu_time().expect("reads");
        }
        assert!(worked - slept >= Duration::from_millis(20), "10 s of spinning used only {:?} of CPU", worked - slept);
    }
}
