//! A criterion measurement that reads the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) instead of the wall clock.
//!
//! The benches run on a 2-core machine shared with other builds; wall-clock
//! samples there mostly measure how long the thread waited for a core. CPU
//! time excludes that wait (it still includes cache and frequency effects of
//! sharing). Both the Nexus codec and the crates it is compared with are
//! measured with it, in the same run.
#![allow(unsafe_code)]

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Thread CPU time, formatted like wall time.
pub(crate) struct ThreadCpuTime;

static WALL: WallTime = WallTime;

fn now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // supported on Linux. On failure `ts` stays zero, which only skews a sample.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        now()
    }
    fn end(&self, start: Duration) -> Duration {
        now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}
