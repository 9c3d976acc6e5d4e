//! Public behaviour of `nexus_cache::hotkeys`.
#![allow(clippy::unwrap_used)]
// The allocation counter below needs `unsafe impl GlobalAlloc`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use nexus_cache::hotkeys::{HotKeys, HotKeysConfig, SkipReason, Ttl, TtlDecision, TtlExtender};
use nexus_cache::policy::HotPolicy;
use nexus_cache::policy::metrics::MechanismMetrics;
use tokio::time::Instant;

/// Counts bytes allocated minus bytes freed, per thread, so tests running in
/// parallel do not disturb each other's measurements.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| l.set(l.get() + layout.size() as isize));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LIVE.try_with(|l| l.set(l.get() + new_size as isize - layout.size() as isize));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn config(seed: u64) -> HotKeysConfig {
    HotKeysConfig {
        window: Duration::from_secs(3600),
        seed: Some(seed),
        ..HotKeysConfig::default()
    }
}

/// splitmix64: a tiny seeded RNG.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over ranks 1..=n by inverting a precomputed CDF.
struct Zipf {
    cdf: Vec<f64>,
}
impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 1..=n {
            acc += (k as f64).powf(-s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u)
    }
}

fn zipf_recall(s: f64, seed: u64) -> f64 {
    let n_keys = 100_000;
    let zipf = Zipf::new(n_keys, s);
    let mut rng = Rng(seed);
    let hot = HotKeys::new(config(seed));
    let mut truth: HashMap<usize, u64> = HashMap::new();
    let mut key = Vec::with_capacity(32);
    for _ in 0..1_000_000 {
        // Shuffle ranks onto key names so popularity does not follow the name.
        let rank = zipf.sample(&mut rng);
        let id = (rank as u64).wrapping_mul(0x9e37_79b9) % 1_000_003;
        key.clear();
        write!(key, "product:{id}").unwrap();
        hot.observe(&key);
        *truth.entry(id as usize).or_default() += 1;
    }
    let mut true_top: Vec<(usize, u64)> = truth.into_iter().collect();
    true_top.sort_by_key(|e| std::cmp::Reverse(e.1));
    let true_top: HashSet<String> = true_top[..20]
        .iter()
        .map(|(id, _)| format!("product:{id}"))
        .collect();
    let found = hot.top(20);
    assert_eq!(found.len(), 20);
    assert!(
        found.windows(2).all(|w| w[0].1 >= w[1].1),
        "top() must be sorted by rate"
    );
    let hits = found
        .iter()
        .filter(|(k, _)| true_top.contains(std::str::from_utf8(k).unwrap()))
        .count();
    hits as f64 / 20.0
}

#[test]
fn finds_the_true_top_20_of_a_zipf_workload() {
    for (s, seed) in [(1.0, 1), (1.1, 2), (1.2, 3)] {
        let recall = zipf_recall(s, seed);
        println!("zipf s={s}: recall of the true top 20 = {recall}");
        assert!(recall >= 0.95, "recall {recall} < 0.95 for s={s}");
    }
}

#[test]
fn memory_does_not_grow_with_a_million_distinct_keys() {
    let hot = HotKeys::new(config(7));
    let cfg = config(7);
    let list_bound = cfg.shards.get() * cfg.top_k.get();
    // Everything the detector may still allocate after construction: listed keys.
    let key_bound = (list_bound * cfg.max_key_len) as isize;

    let mut key = Vec::with_capacity(32);
    let mut run = |from: u64| {
        let before = live();
        for i in from..from + 1_000_000 {
            key.clear();
            write!(key, "user:{i}:profile").unwrap();
            hot.observe(&key);
        }
        live() - before
    };
    let grew_first = run(0);
    let grew_second = run(1_000_000);
    println!("live bytes grown: first million {grew_first}, second million {grew_second}");
    assert!(grew_first <= key_bound, "grew {grew_first} > {key_bound}");
    assert!(grew_second <= key_bound, "grew {grew_second} > {key_bound}");
    assert!(hot.tracked_keys() <= list_bound);
    assert!(hot.memory_bytes() <= hot.memory_bound());
    assert!(
        hot.memory_bound() < 512 * 1024,
        "default footprint {}",
        hot.memory_bound()
    );
}

#[test]
fn long_keys_are_counted_but_never_listed() {
    let hot = HotKeys::new(HotKeysConfig {
        max_key_len: 8,
        ..config(3)
    });
    for _ in 0..100 {
        hot.observe(b"a-very-long-key");
        hot.observe(b"short");
    }
    let top = hot.top(10);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].0, b"short");
    assert!(hot.rate(b"a-very-long-key") > 0.0);
}

/// `observe_due` counts like `observe`, and says "due" for one access in
/// `every` of a listed key, and for every access of a key that is not
/// listed; `observe` (an `every` of 0) leaves the countdown alone.
#[test]
fn observe_due_is_one_access_in_every_of_a_listed_key() {
    let hot = HotKeys::new(HotKeysConfig {
        max_key_len: 8,
        ..config(5)
    });
    let plain = HotKeys::new(HotKeysConfig {
        max_key_len: 8,
        ..config(5)
    });
    let mut due = Vec::new();
    for _ in 0..12 {
        let seen = hot.observe_due(b"listed", 4);
        assert_eq!(seen.count, plain.observe(b"listed"));
        due.push(seen.due);
    }
    let every_fourth: Vec<bool> = (0..12).map(|i| i % 4 == 0).collect();
    assert_eq!(due, every_fourth);
    // Not listed (longer than `max_key_len`): always due.
    assert!((0..10).all(|_| hot.observe_due(b"a-very-long-key", 4).due));
    // No countdown running: `every` of 1 or 0 is always due.
    assert!((0..5).all(|_| hot.observe_due(b"listed", 1).due));
    assert!(hot.observe_due(b"listed", 0).due);
    assert!(hot.observe_due(b"listed", 3).due);
    assert!(!hot.observe_due(b"listed", 3).due);
    assert!(!hot.observe_due(b"listed", 3).due);
    assert!(hot.observe_due(b"listed", 3).due);
    // Plain observations leave the countdown alone (2 accesses to go).
    for _ in 0..5 {
        hot.observe(b"listed");
    }
    assert!(hot.observe_due(b"listed", 0).due);
    assert!(!hot.observe_due(b"listed", 3).due);
    assert!(!hot.observe_due(b"listed", 3).due);
    assert!(hot.observe_due(b"listed", 3).due);
}

#[tokio::test(start_paused = true)]
async fn counts_decay_over_time() {
    let metrics = Arc::new(MechanismMetrics::default());
    let hot = HotKeys::with_metrics(
        HotKeysConfig {
            window: Duration::from_secs(1),
            hot_rate: 50.0,
            seed: Some(9),
            ..HotKeysConfig::default()
        },
        Arc::clone(&metrics),
    );
    for _ in 0..1000 {
        hot.observe(b"old");
    }
    assert!(hot.is_hot(b"old"));
    assert_eq!(metrics.snapshot().hot_keys, 1);
    let rate = hot.top(1)[0].1;
    assert!((500.0..=1000.0).contains(&rate), "rate {rate}");
    // Half a window in, the same count reads as a lower rate, whichever
    // way the time is given.
    tokio::time::advance(Duration::from_millis(500)).await;
    let (count, now) = (1000, Instant::now());
    assert_eq!(hot.rate_of_count(count), hot.rate_of_count_at(count, now));
    assert!(
        hot.rate_of_count_at(count, now) < f64::from(count),
        "{}",
        hot.rate_of_count_at(count, now)
    );

    tokio::time::advance(Duration::from_secs(10)).await;
    // What the ticker task does; without it observations count in the last
    // epoch the detector was advanced to.
    hot.advance(Instant::now());
    for _ in 0..100 {
        hot.observe(b"new");
    }
    let top = hot.top(2);
    assert_eq!(top[0].0, b"new", "{top:?}");
    assert!(!hot.is_hot(b"old"), "old rate {}", hot.rate(b"old"));

    // The ticker task advances time on its own.
    let hot = Arc::new(hot);
    let _ticker = hot.spawn_ticker();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(hot.rate(b"new") < 1.0, "rate {}", hot.rate(b"new"));
}

#[test]
fn observations_from_many_threads() {
    let hot = Arc::new(HotKeys::new(config(11)));
    std::thread::scope(|s| {
        for t in 0..4 {
            let hot = Arc::clone(&hot);
            s.spawn(move || {
                let mut key = Vec::new();
                for i in 0..50_000u32 {
                    hot.observe(b"shared-hot-key");
                    key.clear();
                    write!(key, "t{t}:{i}").unwrap();
                    hot.observe(&key);
                }
            });
        }
    });
    let top = hot.top(1);
    assert_eq!(top[0].0, b"shared-hot-key");
}

fn hot_policy() -> HotPolicy {
    HotPolicy {
        threshold: NonZeroU64::new(100).unwrap(),
        window: Duration::from_secs(10),
        extend_by: Duration::from_secs(60),
        max_ttl: Duration::from_secs(300),
    }
}

#[tokio::test(start_paused = true)]
async fn ttl_extension_follows_the_policy() {
    let metrics = Arc::new(MechanismMetrics::default());
    let ext = TtlExtender::with_metrics(NonZeroUsize::new(2).unwrap(), Arc::clone(&metrics));
    let h = hot_policy();
    let secs = |s| Ttl::Remaining(Duration::from_secs(s));
    let hot_rate = 10.0; // 10/s * 10 s window = 100 = threshold
    let now = Instant::now;

    assert_eq!(
        ext.decide(b"k", 9.9, secs(60), &h, now()),
        TtlDecision::Skip(SkipReason::NotHot)
    );
    assert_eq!(
        ext.decide(b"k", hot_rate, Ttl::Persistent, &h, now()),
        TtlDecision::Skip(SkipReason::NoTtl)
    );
    assert_eq!(
        ext.decide(b"k", hot_rate, Ttl::Missing, &h, now()),
        TtlDecision::Skip(SkipReason::Missing)
    );
    assert_eq!(
        ext.decide(b"k", hot_rate, secs(300), &h, now()),
        TtlDecision::Skip(SkipReason::AtCeiling)
    );
    assert_eq!(
        ext.decide(b"k", hot_rate, secs(60), &h, now()),
        TtlDecision::Extend {
            new_ttl: Duration::from_secs(120)
        }
    );
    // At most once per window.
    assert_eq!(
        ext.decide(b"k", 1e6, secs(120), &h, now()),
        TtlDecision::Skip(SkipReason::RecentlyExtended)
    );
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        ext.decide(b"k", 1e6, secs(111), &h, now()),
        TtlDecision::Skip(SkipReason::RecentlyExtended)
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    // Never beyond the ceiling.
    assert_eq!(
        ext.decide(b"k", 1e6, secs(280), &h, now()),
        TtlDecision::Extend {
            new_ttl: Duration::from_secs(300)
        }
    );
    // Bounded bookkeeping: a third key while two are fresh is refused.
    assert!(matches!(
        ext.decide(b"k2", 1e6, secs(10), &h, now()),
        TtlDecision::Extend { .. }
    ));
    assert_eq!(
        ext.decide(b"k3", 1e6, secs(10), &h, now()),
        TtlDecision::Skip(SkipReason::TrackerFull)
    );
    assert_eq!(ext.len(), 2);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(
        ext.decide(b"k3", 1e6, secs(10), &h, now()),
        TtlDecision::Extend { .. }
    ));
    assert!(ext.len() <= 2);
    assert_eq!(metrics.snapshot().ttl_extensions, 4);
}
