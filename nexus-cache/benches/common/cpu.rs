//! Criterion measurement of this thread's CPU time
//! (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)` through the `cpu-time` crate), so
//! that time the scheduler gives other processes on the shared cores is not
//! counted.
//!
//! Shared by the crate's benches through `#[path]`.

use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};

static WALL: WallTime = WallTime;

pub(crate) struct ThreadCpu;

/// This thread's CPU time so far, in nanoseconds.
pub(crate) fn now() -> u64 {
    ThreadTime::now().as_duration().as_nanos() as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        now()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(now().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}
