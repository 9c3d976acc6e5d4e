//! Public behaviour of `nexus_cache::policy`.
#![allow(clippy::unwrap_used)]
// The allocation counter below needs `unsafe impl GlobalAlloc`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

use std::sync::Arc;
use std::time::Duration;

use nexus_cache::policy::metrics::MechanismMetrics;
use nexus_cache::policy::{Policy, PolicyError, PolicyHandle, Reloader, ReloaderConfig};

const NEW_FORMAT: &str = r#"
version: 1
rules:
  - name: products
    commands: [GET, mget, SET]
    keys: "product:*"
    ttl: 60
    ttl_jitter: 500ms
    singleflight: true
    hot: { threshold: 100, window: 10s, extend_by: 1m, max_ttl: 1h }
    tags: [products, catalog]
    stampede: { lock_ttl: 5s, wait_timeout: 200ms, max_waiters: 1000 }
    near_cache: { ttl: 1s, max_entries: 10000 }
  - name: sessions
    keys: "session:?*"
    enabled: false
  - name: fallback
    commands: ["*"]
    singleflight: true
"#;

#[test]
fn seed_format_loads_and_maps_onto_rules() {
    let p = Policy::from_yaml_str(
        "policies:\n  - match: GET\n    ttl: 60\n    enabled: true\n  - match: SET\n    ttl: 0\n    enabled: false\n",
    )
    .unwrap();
    let get = p.match_command(b"GET", b"user:1").unwrap();
    assert_eq!(get.ttl, Some(Duration::from_secs(60)));
    assert!(get.singleflight && get.enabled);
    assert_eq!(get.keys.as_str(), "*");
    let set = p.match_command(b"set", b"user:1").unwrap();
    assert!(!set.enabled && !set.singleflight && set.ttl.is_none());
    assert!(p.match_command(b"DEL", b"user:1").is_none());
    assert_eq!(p.describe().len(), 2);
}

#[test]
fn new_format_loads_and_matches_first_rule() {
    let p = Policy::from_yaml_str(NEW_FORMAT).unwrap();
    let r = p.match_command(b"mget", b"product:42").unwrap();
    assert_eq!(r.name, "products");
    assert_eq!(r.tags, vec!["catalog".to_owned(), "products".to_owned()]);
    let hot = r.hot.unwrap();
    assert_eq!(hot.threshold.get(), 100);
    assert_eq!(hot.max_ttl, Duration::from_secs(3600));
    assert_eq!(r.stampede.unwrap().max_waiters.get(), 1000);
    assert_eq!(r.near_cache.unwrap().max_entries.get(), 10000);
    // Jitter stays within [ttl, ttl + jitter].
    for rnd in [0u64, 1, 499, 500, 501, u64::MAX] {
        let ttl = r.write_ttl(rnd).unwrap();
        assert!(
            ttl >= Duration::from_secs(60) && ttl <= Duration::from_millis(60_500),
            "{ttl:?}"
        );
    }
    assert_ne!(r.write_ttl(1), r.write_ttl(2));

    // Not product:* -> the disabled sessions rule or the fallback.
    let s = p.match_command(b"GET", b"session:abc").unwrap();
    assert_eq!(s.name, "sessions");
    assert!(!s.enabled && !s.singleflight && s.write_ttl(7).is_none());
    assert_eq!(
        p.match_command(b"GET", b"session:").unwrap().name,
        "fallback"
    );
    assert_eq!(p.match_command(b"HGETALL", b"x").unwrap().name, "fallback");
    // A command listed nowhere still reaches rules for every command; overlong names too.
    assert_eq!(
        p.match_command(&[b'X'; 100], b"x").unwrap().name,
        "fallback"
    );
    // SET on a product key matches products; DEL (not listed) skips it.
    assert_eq!(
        p.match_command(b"SET", b"product:1").unwrap().name,
        "products"
    );
    assert_eq!(
        p.match_command(b"DEL", b"product:1").unwrap().name,
        "fallback"
    );

    let lines = p.describe();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("products commands=GET,MGET,SET keys=product:* ttl=1m ttl_jitter=500ms singleflight=on hot=threshold:100/10s,extend_by:1m,max_ttl:1h tags=catalog,products"), "{}", lines[0]);
    assert!(lines[1].contains("enabled=false"));
}

fn invalid(text: &str) -> (String, Option<usize>, String) {
    match Policy::from_yaml_str(text) {
        Err(e @ PolicyError::Invalid { .. }) => {
            (e.field().unwrap().to_owned(), e.line(), e.to_string())
        }
        other => panic!("expected an invalid-policy error, got {other:?}"),
    }
}

#[test]
fn unknown_field_names_line_and_field() {
    let (field, line, msg) = invalid("rules:\n  - keys: 'a:*'\n    tll: 60\n");
    assert_eq!(line, Some(3), "{msg}");
    assert!(field.starts_with("rules[0]"), "{field}");
    assert!(msg.contains("tll"), "{msg}");
}

#[test]
fn wrong_type_names_line_and_field() {
    let (field, line, msg) = invalid("rules:\n  - keys: 'a:*'\n  - singleflight: maybe\n");
    assert_eq!(field, "rules[1].singleflight", "{msg}");
    assert_eq!(line, Some(3), "{msg}");
}

#[test]
fn bad_duration_names_line_and_field() {
    let (field, line, msg) = invalid("rules:\n  - ttl: 10 parsecs\n");
    assert_eq!(field, "rules[0].ttl", "{msg}");
    assert_eq!(line, Some(2), "{msg}");
    assert!(msg.contains("10 parsecs"), "{msg}");
}

#[test]
fn semantic_errors_name_line_and_field() {
    let (field, line, msg) = invalid(
        "rules:\n  - name: p\n    ttl: 60\n    hot:\n      threshold: 5\n      window: 1s\n      extend_by: 2m\n      max_ttl: 1m\n",
    );
    assert!(field.starts_with("rules[0].hot"), "{field}: {msg}");
    // Checks across fields are reported at the enclosing rule.
    assert!(line.is_some_and(|l| (2..=8).contains(&l)), "{msg}");
    assert!(msg.contains("max_ttl"), "{msg}");

    let (field, line, msg) = invalid("rules:\n  - name: g\n    keys: 'user:[0-9]'\n");
    assert!(field.starts_with("rules[0]"), "{field}");
    assert!(line.is_some(), "{msg}");
    assert!(
        msg.contains("keys") && msg.contains("character classes"),
        "{msg}"
    );

    let (_, _, msg) = invalid("rules:\n  - ttl_jitter: 5s\n");
    assert!(msg.contains("ttl_jitter"), "{msg}");
    let (_, _, msg) = invalid("rules:\n  - commands: ['GET key']\n");
    assert!(msg.contains("invalid command name"), "{msg}");
    let (_, _, msg) =
        invalid("rules:\n  - hot: { threshold: 0, window: 1s, extend_by: 1s, max_ttl: 1s }\n");
    assert!(msg.contains("threshold") || msg.contains("zero"), "{msg}");
    let (_, _, msg) = invalid("rules:\n  - stampede: { lock_ttl: 1s, wait_timeout: 1s }\n");
    assert!(msg.contains("max_waiters"), "{msg}");
    let (field, _, msg) = invalid("policies:\n  - match: GET\n    ttl: -5\n");
    assert_eq!(field, "policies[0].ttl", "{msg}");
    let (field, _, _) = invalid("rulez: []\n");
    assert_eq!(field, "rulez");
    let (field, _, _) = invalid("version: 2\n");
    assert_eq!(field, "version");
}

#[tokio::test]
async fn reload_swaps_good_files_and_keeps_the_old_policy_on_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "rules:\n  - keys: 'a:*'\n    ttl: 10\n").unwrap();

    let handle = PolicyHandle::new(PolicyHandle::load_file(&path).await.unwrap());
    let metrics = Arc::new(MechanismMetrics::default());
    let config = ReloaderConfig {
        path: path.clone(),
        interval: Duration::from_millis(20),
    };
    let reloader = Reloader::spawn(config, handle.clone(), Arc::clone(&metrics));
    let ttl = |h: &PolicyHandle| h.load().match_command(b"GET", b"a:1").and_then(|r| r.ttl);
    assert_eq!(ttl(&handle), Some(Duration::from_secs(10)));

    // A valid change is picked up.
    std::fs::write(&path, "rules:\n  - keys: 'a:*'\n    ttl: 20\n").unwrap();
    wait_for(|| metrics.snapshot().policy_reloads_ok == 1).await;
    assert_eq!(ttl(&handle), Some(Duration::from_secs(20)));

    // An invalid one is rejected and counted once; the old policy stays.
    std::fs::write(&path, "rules:\n  - keys: 'a:*'\n    ttl: twenty\n").unwrap();
    wait_for(|| metrics.snapshot().policy_reloads_failed == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        metrics.snapshot().policy_reloads_failed,
        1,
        "same bad content is reported once"
    );
    assert_eq!(ttl(&handle), Some(Duration::from_secs(20)));

    // Fixing the file recovers.
    std::fs::write(&path, "policies:\n  - match: GET\n    ttl: 30\n").unwrap();
    wait_for(|| metrics.snapshot().policy_reloads_ok == 2).await;
    assert_eq!(ttl(&handle), Some(Duration::from_secs(30)));
    reloader.shutdown().await;
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition not reached in 10 s");
}

#[test]
fn stampede_section_parses_validates_and_describes() {
    let p = Policy::from_yaml_str(
        "rules:\n  - commands: [GET]\n    keys: 'hot:*'\n    stampede: { lock_ttl: 2s, wait_timeout: 1500ms, max_waiters: 500, early_refresh: 1.5, serve_stale_for: 10s }\n",
    )
    .unwrap();
    assert!(p.has_stampede());
    let st = p.stampede_for(b"hot:1").unwrap();
    assert_eq!(st.lock_ttl, Duration::from_secs(2));
    assert_eq!(st.wait_timeout, Duration::from_millis(1500));
    assert_eq!(st.max_waiters.get(), 500);
    assert_eq!(st.early_refresh, Some(1.5));
    assert_eq!(st.serve_stale_for, Some(Duration::from_secs(10)));
    // Guarded keys are found through the GET rule, whatever command asks.
    assert!(p.stampede_for(b"cold:1").is_none());
    assert!(p.describe()[0].contains(
        "stampede=lock_ttl:2s,wait_timeout:1500ms,max_waiters:500,early_refresh:1.5,serve_stale_for:10s"
    ));
    // Optional fields stay off; no rule, no guard.
    let p = Policy::from_yaml_str(
        "rules:\n  - stampede: { lock_ttl: 1s, wait_timeout: 1s, max_waiters: 1 }\n",
    )
    .unwrap();
    let st = p.stampede_for(b"k").unwrap();
    assert!(st.early_refresh.is_none() && st.serve_stale_for.is_none());
    assert!(
        !Policy::from_yaml_str("rules:\n  - ttl: 5\n")
            .unwrap()
            .has_stampede()
    );
    // A disabled rule guards nothing.
    let p = Policy::from_yaml_str(
        "rules:\n  - enabled: false\n    stampede: { lock_ttl: 1s, wait_timeout: 1s, max_waiters: 1 }\n",
    )
    .unwrap();
    assert!(p.stampede_for(b"k").is_none());

    let base = "rules:\n  - stampede: { lock_ttl: 1s, wait_timeout: 1s, max_waiters: 10";
    for (extra, needle) in [
        (", early_refresh: 0 }", "early_refresh"),
        (", early_refresh: -1.0 }", "early_refresh"),
        (", early_refresh: 1000 }", "early_refresh"),
        (", serve_stale_for: 0 }", "serve_stale_for"),
        (", serve_stale_for: soon }", "duration"),
        (", hold: 1s }", "unknown field"),
    ] {
        let (field, line, msg) = invalid(&format!("{base}{extra}\n"));
        assert!(field.starts_with("rules[0].stampede"), "{field}: {msg}");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains(needle), "{extra}: {msg}");
    }
    let (_, _, msg) =
        invalid("rules:\n  - stampede: { lock_ttl: 0ms, wait_timeout: 1s, max_waiters: 1 }\n");
    assert!(msg.contains("at least 1ms"), "{msg}");
    let (_, _, msg) =
        invalid("rules:\n  - stampede: { lock_ttl: 1s, wait_timeout: 1s, max_waiters: 0 }\n");
    assert!(msg.contains("max_waiters"), "{msg}");
}

#[test]
fn error_messages_read_well() {
    let cases = [
        "rules:\n  - keys: 'a:*'\n    tll: 60\n",
        "rules:\n  - ttl: 10 parsecs\n",
        "rules:\n  - name: g\n    keys: 'user:[0-9]'\n",
        "rules:\n  - name: p\n    ttl: 60\n    hot: { threshold: 1, window: 1s, extend_by: 2m, max_ttl: 1m }\n",
    ];
    for text in cases {
        let msg = Policy::from_yaml_str(text).unwrap_err().to_string();
        println!("{msg}");
        assert!(msg.starts_with("invalid policy: line "), "{msg}");
        assert!(msg.contains("field `"), "{msg}");
    }
}

#[test]
fn matching_does_not_allocate() {
    let p = Policy::from_yaml_str(NEW_FORMAT).unwrap();
    let lookups: [(&[u8], &[u8]); 6] = [
        (b"get", b"product:1"),
        (b"MGET", b"product:2"),
        (b"hgetall", b"session:x"),
        (b"GET", b"other"),
        (b"NOT-A-COMMAND", b""),
        (&[b'x'; 64], b"k"),
    ];
    let before = ALLOCS.with(Cell::get);
    let mut matched = 0;
    for _ in 0..1000 {
        for (cmd, key) in lookups {
            matched += usize::from(p.match_command(cmd, key).is_some());
        }
    }
    assert_eq!(
        ALLOCS.with(Cell::get) - before,
        0,
        "match_command allocated"
    );
    assert_eq!(matched, 6000);
}
