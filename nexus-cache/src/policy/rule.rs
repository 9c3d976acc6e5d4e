//! A compiled rule and its validation.

use std::time::Duration;

use serde::Deserialize;

use super::duration::display;
use super::glob::Glob;
use super::spec::{HotPolicy, NearCachePolicy, RuleSpec, SeedPolicy, StampedePolicy};

/// One compiled rule: what the proxy does for the commands and keys it matches.
///
/// A rule with `enabled: false` still matches (and so stops later rules from
/// matching), but all its mechanisms are off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RuleSpec")]
pub struct Rule {
    /// Name from the file, or `rule-N` (1-based position).
    pub name: String,
    /// Upper-case command names this rule applies to; `None` means all.
    pub commands: Option<Vec<String>>,
    /// Keys this rule applies to.
    pub keys: Glob,
    /// Whether the rule's mechanisms are on.
    pub enabled: bool,
    /// Default TTL for writes that set none.
    pub ttl: Option<Duration>,
    /// Up to this much is added to `ttl`, drawn per write (see [`Rule::write_ttl`]).
    pub ttl_jitter: Option<Duration>,
    /// Whether concurrent identical reads share one upstream call.
    pub singleflight: bool,
    /// Hot-key TTL extension.
    pub hot: Option<HotPolicy>,
    /// Tags added to keys written under this rule.
    pub tags: Vec<String>,
    /// Stampede guard for `GET`s of the matching keys.
    pub stampede: Option<StampedePolicy>,
    /// In-process near cache of `GET` replies for the matching keys.
    pub near_cache: Option<NearCachePolicy>,
}

impl Rule {
    /// The TTL to give a write that set none: `ttl` plus a jitter in
    /// `[0, ttl_jitter]` chosen by `random` (any uniformly random `u64`; the
    /// caller owns the RNG so tests can seed it). Millisecond resolution.
    /// `None` when the rule sets no TTL or is disabled.
    pub fn write_ttl(&self, random: u64) -> Option<Duration> {
        let ttl = self.ttl.filter(|_| self.enabled)?;
        let jitter_ms = self.ttl_jitter.map_or(0, |j| j.as_millis() as u64);
        let extra = if jitter_ms == 0 {
            0
        } else {
            random % (jitter_ms + 1)
        };
        Some(ttl + Duration::from_millis(extra))
    }

    /// Whether this rule applies to every command.
    pub fn any_command(&self) -> bool {
        self.commands.is_none()
    }

    /// Names an unnamed rule after its position and switches off every
    /// mechanism of a disabled rule, so callers can read the fields directly.
    pub(crate) fn finish(mut self, n: usize) -> Self {
        if self.name.is_empty() {
            self.name = format!("rule-{n}");
        }
        if !self.enabled {
            self.ttl = None;
            self.ttl_jitter = None;
            self.singleflight = false;
            self.hot = None;
            self.tags.clear();
            self.stampede = None;
            self.near_cache = None;
        }
        self
    }

    /// The seed format's `match`/`ttl`/`enabled`, mapped onto the current model.
    pub(crate) fn from_seed(p: SeedPolicy) -> Self {
        let commands = (p.command.0 != "*").then(|| vec![p.command.0.clone()]);
        Self {
            name: format!("seed {}", p.command.0),
            commands,
            keys: Glob::any(),
            enabled: p.enabled,
            ttl: (p.ttl > 0 && p.enabled).then(|| Duration::from_secs(p.ttl)),
            ttl_jitter: None,
            singleflight: p.enabled,
            hot: None,
            tags: Vec::new(),
            stampede: None,
            near_cache: None,
        }
    }

    /// One line describing the rule, as `NEXUS.POLICY` shows it.
    pub fn describe(&self) -> String {
        let mut s = format!("{} commands=", self.name);
        match &self.commands {
            None => s.push('*'),
            Some(c) => s.push_str(&c.join(",")),
        }
        s.push_str(&format!(" keys={}", self.keys));
        if !self.enabled {
            s.push_str(" enabled=false");
            return s;
        }
        if let Some(ttl) = self.ttl {
            s.push_str(&format!(" ttl={}", display(ttl)));
        }
        if let Some(j) = self.ttl_jitter {
            s.push_str(&format!(" ttl_jitter={}", display(j)));
        }
        s.push_str(if self.singleflight {
            " singleflight=on"
        } else {
            " singleflight=off"
        });
        if let Some(h) = &self.hot {
            s.push_str(&format!(
                " hot=threshold:{}/{},extend_by:{},max_ttl:{}",
                h.threshold,
                display(h.window),
                display(h.extend_by),
                display(h.max_ttl)
            ));
        }
        if !self.tags.is_empty() {
            s.push_str(&format!(" tags={}", self.tags.join(",")));
        }
        if let Some(st) = &self.stampede {
            s.push_str(&format!(
                " stampede=lock_ttl:{},wait_timeout:{},max_waiters:{}",
                display(st.lock_ttl),
                display(st.wait_timeout),
                st.max_waiters
            ));
            if let Some(b) = st.early_refresh {
                s.push_str(&format!(",early_refresh:{b}"));
            }
            if let Some(d) = st.serve_stale_for {
                s.push_str(&format!(",serve_stale_for:{}", display(d)));
            }
        }
        if let Some(n) = &self.near_cache {
            s.push_str(&format!(
                " near_cache=ttl:{},max_entries:{},max_bytes:{},max_value_bytes:{}",
                display(n.ttl),
                n.max_entries,
                super::size::display(n.max_bytes.get()),
                super::size::display(n.max_value_bytes.get()),
            ));
            if n.admit == super::NearAdmission::Hot {
                s.push_str(&format!(",admit:hot/{}", n.hot_rate));
            }
        }
        s
    }
}

impl TryFrom<RuleSpec> for Rule {
    type Error = String;

    fn try_from(r: RuleSpec) -> Result<Self, String> {
        let label = r.name.as_deref().unwrap_or("(unnamed)");
        let fail = |field: &str, msg: String| Err(format!("rule {label}: {field}: {msg}"));
        if r.name.as_deref().is_some_and(str::is_empty) {
            return fail("name", "must not be empty".into());
        }
        let keys = match r.keys.as_deref() {
            None => Glob::any(),
            Some(p) => match Glob::new(p) {
                Ok(g) => g,
                Err(e) => return fail("keys", e.to_string()),
            },
        };
        let commands = match r.commands {
            None => None,
            Some(c) if c.is_empty() => {
                return fail(
                    "commands",
                    "must not be empty (omit it to match every command)".into(),
                );
            }
            Some(c) if c.iter().any(|c| c.0 == "*") => None,
            Some(c) => Some(c.into_iter().map(|c| c.0).collect()),
        };
        if r.ttl.is_some_and(|t| t.is_zero()) {
            return fail(
                "ttl",
                "must be positive (omit it for no default TTL)".into(),
            );
        }
        if r.ttl_jitter.is_some() && r.ttl.is_none() {
            return fail("ttl_jitter", "needs a ttl to add to".into());
        }
        if let (Some(h), Some(t)) = (&r.hot, r.ttl)
            && h.max_ttl < t
        {
            return fail(
                "hot.max_ttl",
                format!(
                    "({}) is below the rule's ttl ({}): extensions could never apply",
                    display(h.max_ttl),
                    display(t)
                ),
            );
        }
        let mut tags: Vec<String> = r.tags.into_iter().map(|t| t.0).collect();
        let before = tags.len();
        tags.sort();
        tags.dedup();
        if tags.len() != before {
            return fail("tags", "lists a tag twice".into());
        }
        Ok(Self {
            name: r.name.unwrap_or_default(),
            commands,
            keys,
            enabled: r.enabled,
            ttl: r.ttl,
            ttl_jitter: r.ttl_jitter,
            singleflight: r.singleflight,
            hot: r.hot,
            tags,
            stampede: r.stampede,
            near_cache: r.near_cache,
        })
    }
}
