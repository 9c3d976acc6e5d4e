//! The cache policy: YAML rules matched by command and key glob.
//!
//! A policy file lists rules; the first rule whose commands and key glob
//! match a command decides what the proxy does with it:
//!
//! ```yaml
//! rules:
//!   - name: products
//!     commands: [GET, MGET, SET]   # omit for every command
//!     keys: "product:*"            # omit for every key; `*`, `?`, `\` escapes
//!     ttl: 60                      # default TTL for writes that set none (seconds, or 500ms/10s/5m/1h)
//!     ttl_jitter: 10s              # adds 0..=10s per write so keys written together expire apart
//!     singleflight: true           # concurrent identical reads share one upstream call
//!     hot: { threshold: 100, window: 10s, extend_by: 60s, max_ttl: 1h }
//!     tags: [products]             # writes are tagged atomically with the write
//!     stampede: { lock_ttl: 5s, wait_timeout: 5s, max_waiters: 1000, early_refresh: 1.0, serve_stale_for: 10s }
//!     # in-process cache of GET replies, kept coherent with Redis:
//!     near_cache: { ttl: 1s, max_entries: 10000, max_bytes: 16MiB, admit: hot }
//! ```
//!
//! The seed's format still loads; each entry becomes a rule for one command
//! and every key, with `ttl` as its TTL (`0` = none) and `enabled` switching
//! the rule and its singleflight on or off:
//!
//! ```yaml
//! policies:
//!   - match: GET
//!     ttl: 60
//!     enabled: true
//! ```
//!
//! Errors name the YAML line and column and the field path (`rules[1].hot.max_ttl`);
//! unknown fields are rejected. A file is compiled once into a [`Policy`]:
//! command lookups bisect a table of the listed names ordered by length,
//! comparing bytes case-insensitively in place, and key globs are
//! precompiled, so [`Policy::match_command`] neither parses, copies, hashes
//! nor allocates.
//! [`Reloader`] watches the file and swaps new policies in atomically.
//!
//! ```
//! use nexus_cache::policy::Policy;
//!
//! let p = Policy::from_yaml_str("policies:\n  - match: GET\n    ttl: 60\n    enabled: true\n").unwrap();
//! let rule = p.match_command(b"get", b"any-key").unwrap();
//! assert_eq!(rule.ttl, Some(std::time::Duration::from_secs(60)));
//! assert!(p.match_command(b"SET", b"k").is_none());
//! ```

mod duration;
mod error;
mod glob;
pub mod metrics;
mod reload;
mod rule;
mod size;
mod spec;

pub use error::{Location, PolicyError};
pub use glob::{Glob, GlobError};
pub use reload::{MAX_POLICY_FILE, PolicyHandle, Reloader, ReloaderConfig};
pub use rule::Rule;
pub use spec::{HotPolicy, NearAdmission, NearCachePolicy, StampedePolicy};

use spec::{FileSpec, MAX_COMMAND_LEN};

/// An upper-case command and the indices of the rules that may match it.
type CommandRules = (Box<[u8]>, Box<[usize]>);

/// The order of the command table: by length, then by bytes, with `command`
/// upper-cased byte by byte as it is compared (`name` is upper-case). Names
/// are short, so an inline loop beats copying, upper-casing and calling
/// `memcmp`; most lookups are decided by the length alone.
#[inline]
fn command_order(name: &[u8], command: &[u8]) -> std::cmp::Ordering {
    name.len().cmp(&command.len()).then_with(|| {
        name.iter()
            .zip(command)
            .map(|(n, c)| n.cmp(&c.to_ascii_uppercase()))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// A compiled policy. Immutable; replaced whole on reload.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Upper-case command -> indices of the rules that may match it, in file
    /// order (rules for every command are merged in at their position).
    /// Sorted by [`command_order`], searched by bisection (a handful of
    /// entries: no hashing per lookup).
    by_command: Box<[CommandRules]>,
    /// Indices of the rules for every command, for commands not listed anywhere.
    any_command: Box<[usize]>,
    /// The entries of `by_command` (or `any_command`) for `GET` and `SET`,
    /// the commands of nearly every workload, found once here: their
    /// lookups skip the bisection.
    get: Box<[usize]>,
    set: Box<[usize]>,
    /// Whether any rule has a stampede guard (writes then check their keys).
    stampede: bool,
}

impl Policy {
    /// Parses, validates and compiles a policy file's text.
    pub fn from_yaml_str(text: &str) -> Result<Self, PolicyError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let spec: FileSpec =
            serde_path_to_error::deserialize(de).map_err(PolicyError::from_yaml)?;
        if let Some(v) = spec.version.filter(|v| *v != 1) {
            return Err(PolicyError::invalid(
                "version",
                format!("unsupported version {v}; expected 1"),
            ));
        }
        let mut rules: Vec<Rule> = spec.rules;
        rules.extend(spec.policies.into_iter().map(Rule::from_seed));
        Ok(Self::compile(rules))
    }

    /// Compiles already validated rules (first match wins, in this order).
    pub fn from_rules(rules: Vec<Rule>) -> Self {
        Self::compile(rules)
    }

    fn compile(rules: Vec<Rule>) -> Self {
        let rules: Vec<Rule> = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.finish(i + 1))
            .collect();
        let mut names: Vec<&str> = rules
            .iter()
            .flat_map(|r| r.commands.iter().flatten().map(String::as_str))
            .collect();
        names.sort_unstable_by(|a, b| command_order(a.as_bytes(), b.as_bytes()));
        names.dedup();
        let by_command = names
            .into_iter()
            .map(|name| {
                let idx: Box<[usize]> = rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.commands
                            .as_ref()
                            .is_none_or(|c| c.iter().any(|c| c == name))
                    })
                    .map(|(i, _)| i)
                    .collect();
                (Box::from(name.as_bytes()), idx)
            })
            .collect();
        let any_command = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.any_command())
            .map(|(i, _)| i)
            .collect();
        let stampede = rules.iter().any(|r| r.stampede.is_some());
        let mut policy = Self {
            rules,
            by_command,
            any_command,
            get: Box::default(),
            set: Box::default(),
            stampede,
        };
        policy.get = policy.candidates(b"GET").into();
        policy.set = policy.candidates(b"SET").into();
        policy
    }

    /// Indices of the rules that may match `command` (any case), in order.
    fn candidates(&self, command: &[u8]) -> &[usize] {
        if command.len() > MAX_COMMAND_LEN {
            return &self.any_command;
        }
        match self
            .by_command
            .binary_search_by(|(name, _)| command_order(name, command))
        {
            Ok(i) => &self.by_command[i].1,
            Err(_) => &self.any_command,
        }
    }

    /// The first rule matching `command` (any case) and `key`. Keyless
    /// commands pass an empty key. Does not allocate.
    #[inline]
    pub fn match_command(&self, command: &[u8], key: &[u8]) -> Option<&Rule> {
        let candidates = match command {
            [g, e, t] if [g, e, t].map(u8::to_ascii_uppercase) == *b"GET" => &self.get,
            [s, e, t] if [s, e, t].map(u8::to_ascii_uppercase) == *b"SET" => &self.set,
            _ => self.candidates(command),
        };
        candidates
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .find(|r| r.keys.matches(key))
    }

    /// Whether any rule has a stampede guard.
    pub fn has_stampede(&self) -> bool {
        self.stampede
    }

    /// The stampede guard of `GET key`, if its rule has one.
    pub fn stampede_for(&self, key: &[u8]) -> Option<&StampedePolicy> {
        if !self.stampede {
            return None;
        }
        self.match_command(b"GET", key)?.stampede.as_ref()
    }

    /// The rules in match order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// One line per rule, in match order (what `NEXUS.POLICY` answers).
    pub fn describe(&self) -> Vec<String> {
        self.rules.iter().map(Rule::describe).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn command_table_matches_any_case_and_length() {
        let names = ["GET", "SET", "DEL", "MGET", "HGETALL", "ZRANGEBYSCORE", "X"];
        let yaml: String = std::iter::once("rules:\n".to_owned())
            .chain(
                names
                    .iter()
                    .map(|n| format!("  - name: r-{n}\n    commands: [{n}]\n")),
            )
            .collect();
        let p = Policy::from_yaml_str(&yaml).unwrap();
        for n in names {
            let lower = n.to_ascii_lowercase();
            for candidate in [
                n.to_owned(),
                lower.clone(),
                format!("{}{}", &lower[..1], &n[1..]),
            ] {
                let r = p.match_command(candidate.as_bytes(), b"k").unwrap();
                assert_eq!(r.name, format!("r-{n}"), "{candidate}");
            }
        }
        for other in ["GE", "GETX", "SETT", "HGETAL", "", "Y", "ZRANGEBYSCOR"] {
            assert!(p.match_command(other.as_bytes(), b"k").is_none(), "{other}");
        }
    }

    /// `GET` and `SET` take a shortcut past the table: the same answers,
    /// whether they are listed, covered by a rule for every command, or not.
    #[test]
    fn get_and_set_shortcut_matches_the_table() {
        let yaml = "rules:\n  - name: any-a\n    keys: 'a:*'\n  - name: get-b\n    commands: [GET, MGET]\n    keys: 'b:*'\n  - name: any\n";
        let p = Policy::from_yaml_str(yaml).unwrap();
        let name = |c: &str, k: &str| {
            p.match_command(c.as_bytes(), k.as_bytes())
                .map(|r| r.name.clone())
        };
        for get in ["GET", "get", "gEt"] {
            assert_eq!(name(get, "a:1").as_deref(), Some("any-a"));
            assert_eq!(name(get, "b:1").as_deref(), Some("get-b"));
            assert_eq!(name(get, "c:1").as_deref(), Some("any"));
        }
        for set in ["SET", "set", "sEt"] {
            assert_eq!(name(set, "a:1").as_deref(), Some("any-a"));
            assert_eq!(name(set, "b:1").as_deref(), Some("any"));
        }
        let only_get =
            Policy::from_yaml_str("rules:\n  - commands: [GET]\n    keys: 'k'\n").unwrap();
        assert!(only_get.match_command(b"get", b"k").is_some());
        assert!(only_get.match_command(b"SET", b"k").is_none());
        assert!(only_get.match_command(b"GET", b"k2").is_none());
    }
}
