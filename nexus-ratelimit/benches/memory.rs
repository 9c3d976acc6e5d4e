//! Memory held for 1,000,000 distinct keys, ours against `governor`'s keyed limiter.
//!
//! `cargo bench -p nexus-ratelimit --bench memory`
//!
//! Prints the hash-table bytes our limiter reports, its computed bound at the
//! cap, and the resident-set growth of the process (Linux `/proc/self/statm`)
//! for each limiter, keys being IPv4 addresses. Governor's keyed limiter has
//! no cap: its map holds every key until `retain_recent` is called.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::num::{NonZeroU32, NonZeroUsize};

use nexus_ratelimit::{KeyedLimiter, LimiterConfig, ManualClock, Quota};

const N: u32 = 1_000_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from_bits(0x0A00_0000 + i))
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quota = Quota::per_second(NonZeroU32::new(10).unwrap(), NonZeroU32::new(2).unwrap());
    let cfg = LimiterConfig::new(quota).with_max_keys(NonZeroUsize::new(N as usize).unwrap());
    let before = rss_bytes();
    // Time stands still so that every key stays active (none is idle and
    // evictable): the worst case for memory.
    let clock = ManualClock::new();
    let ours: KeyedLimiter<IpAddr, ManualClock> = KeyedLimiter::with_clock(cfg, clock.clone());
    for i in 0..N {
        let _ = ours.check(&ip(i));
    }
    let after = rss_bytes();
    println!(
        "nexus-ratelimit: {} keys, table {:.1} MiB (bound at cap {:.1} MiB), RSS +{:.1} MiB",
        ours.len(),
        mib(ours.table_bytes()),
        mib(ours.table_bytes_bound()),
        mib(after.saturating_sub(before))
    );
    // A flood of 4x the cap does not grow the table.
    for i in N..4 * N {
        let _ = ours.check(&ip(i));
    }
    println!(
        "nexus-ratelimit after 4,000,000 distinct keys: {} keys, table {:.1} MiB, RSS +{:.1} MiB",
        ours.len(),
        mib(ours.table_bytes()),
        mib(rss_bytes().saturating_sub(before))
    );
    clock.advance(std::time::Duration::from_secs(10));
    let purged = ours.purge_idle();
    println!(
        "nexus-ratelimit after 10 s idle + purge_idle: {purged} purged, {} keys, table {:.3} MiB",
        ours.len(),
        mib(ours.table_bytes())
    );
    drop(ours);

    let before = rss_bytes();
    let gov: governor::DefaultKeyedRateLimiter<IpAddr> = governor::RateLimiter::keyed(
        governor::Quota::per_second(NonZeroU32::new(2).unwrap())
            .allow_burst(NonZeroU32::new(10).unwrap()),
    );
    for i in 0..N {
        let _ = gov.check_key(&ip(i));
    }
    println!(
        "governor keyed (dashmap): {} keys, RSS +{:.1} MiB",
        gov.len(),
        mib(rss_bytes().saturating_sub(before))
    );
}
