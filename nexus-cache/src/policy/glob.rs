//! Key globs, compiled once.
//!
//! Supported syntax (a subset of Redis `KEYS`/`SCAN MATCH` patterns): `*` any
//! run of bytes, `?` any one byte, `\x` the byte `x` literally. Character
//! classes (`[...]`) are rejected at load rather than silently matched as
//! literals. Common shapes (`*`, `prefix*`, `*suffix`, no wildcard) compile to
//! a plain comparison; others to a token list matched without allocation.

use std::fmt;

/// A compiled key glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: Box<str>,
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Any,
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    General(Box<[Tok]>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    One,
    Star,
}

/// Why a glob was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern uses `[` (character classes are not supported).
    #[error(
        "character classes `[...]` are not supported in key globs; write `\\[` to match `[` literally"
    )]
    CharacterClass,
    /// The pattern ends with a lone `\`.
    #[error("key glob ends with a lone escape `\\`")]
    TrailingEscape,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let mut toks = Vec::with_capacity(pattern.len());
        let mut bytes = pattern.bytes();
        while let Some(b) = bytes.next() {
            toks.push(match b {
                b'*' => {
                    if toks.last() == Some(&Tok::Star) {
                        continue;
                    }
                    Tok::Star
                }
                b'?' => Tok::One,
                b'[' => return Err(GlobError::CharacterClass),
                b'\\' => Tok::Byte(bytes.next().ok_or(GlobError::TrailingEscape)?),
                b => Tok::Byte(b),
            });
        }
        Ok(Self {
            source: pattern.into(),
            kind: classify(toks),
        })
    }

    /// The glob matching every key.
    pub fn any() -> Self {
        Self {
            source: "*".into(),
            kind: Kind::Any,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal bytes every matching key starts with (empty when the glob
    /// starts with a wildcard). The near cache subscribes to invalidations of
    /// these prefixes.
    pub fn literal_prefix(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Any | Kind::Suffix(_) => Vec::new(),
            Kind::Exact(lit) | Kind::Prefix(lit) => lit.to_vec(),
            Kind::General(toks) => toks
                .iter()
                .map_while(|t| match t {
                    Tok::Byte(b) => Some(*b),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Whether `key` matches. Never allocates.
    #[inline]
    pub fn matches(&self, key: &[u8]) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Exact(lit) => key.len() == lit.len() && same(key, lit),
            Kind::Prefix(p) => key.get(..p.len()).is_some_and(|k| same(k, p)),
            Kind::Suffix(s) => key
                .len()
                .checked_sub(s.len())
                .is_some_and(|start| same(&key[start..], s)),
            Kind::General(toks) => general_match(toks, key),
        }
    }
}

/// `a == b` for slices of equal length. Glob literals are usually a few
/// bytes (`product:`), for which an inline loop beats a call to `memcmp`.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() <= 16 {
        a.iter().zip(b).all(|(x, y)| x == y)
    } else {
        a == b
    }
}

fn literal(toks: &[Tok]) -> Option<Box<[u8]>> {
    toks.iter()
        .map(|t| match t {
            Tok::Byte(b) => Some(*b),
            _ => None,
        })
        .collect()
}

fn classify(toks: Vec<Tok>) -> Kind {
    match toks.as_slice() {
        [Tok::Star] => Kind::Any,
        [rest @ .., Tok::Star] if literal(rest).is_some() => {
            Kind::Prefix(literal(rest).unwrap_or_default())
        }
        [Tok::Star, rest @ ..] if literal(rest).is_some() => {
            Kind::Suffix(literal(rest).unwrap_or_default())
        }
        all if literal(all).is_some() => Kind::Exact(literal(all).unwrap_or_default()),
        _ => Kind::General(toks.into_boxed_slice()),
    }
}

/// Greedy match with backtracking to the last `*`: O(len(key) * len(pattern))
/// in the worst case, linear for the usual patterns.
fn general_match(toks: &[Tok], key: &[u8]) -> bool {
    let (mut t, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, k));
                t += 1;
            }
            Some(Tok::One) => {
                t += 1;
                k += 1;
            }
            Some(Tok::Byte(b)) if *b == key[k] => {
                t += 1;
                k += 1;
            }
            _ => match star {
                Some((st, sk)) => {
                    t = st + 1;
                    k = sk + 1;
                    star = Some((st, sk + 1));
                }
                None => return false,
            },
        }
    }
    toks[t..].iter().all(|tok| *tok == Tok::Star)
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.source).finish()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn m(p: &str, k: &str) -> bool {
        Glob::new(p).unwrap().matches(k.as_bytes())
    }

    #[test]
    fn shapes() {
        assert!(m("*", "anything"));
        assert!(m("product:*", "product:1"));
        assert!(!m("product:*", "produc"));
        assert!(m("*:views", "page:views"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact2"));
        assert!(m("user:?:name", "user:7:name"));
        assert!(!m("user:?:name", "user:77:name"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("a**b", "ab"));
        assert!(m("lit\\*", "lit*"));
        assert!(!m("lit\\*", "litx"));
        assert!(m("*a*", "bab"));
        // Keys shorter than the literal, and literals past the inline compare.
        assert!(!m("*:views", "ws"));
        assert!(!m("exact", "exac"));
        assert!(!m("product:*", ""));
        assert!(m("a-rather-long-prefix:*", "a-rather-long-prefix:1"));
        assert!(!m("a-rather-long-prefix:*", "a-rather-long-prefiX:1"));
        assert!(m("*:a-rather-long-suffix", "k:a-rather-long-suffix"));
        assert!(!m("a-rather-long-exact-key", "a-rather-long-exact-kez"));
    }

    #[test]
    fn literal_prefixes() {
        let p = |g: &str| Glob::new(g).unwrap().literal_prefix();
        assert_eq!(p("*"), b"");
        assert_eq!(p("product:*"), b"product:");
        assert_eq!(p("exact"), b"exact");
        assert_eq!(p("*:views"), b"");
        assert_eq!(p("user:?:name"), b"user:");
        assert_eq!(p("a\\*b*"), b"a*b");
    }

    #[test]
    fn rejects() {
        assert_eq!(Glob::new("k[ab]"), Err(GlobError::CharacterClass));
        assert_eq!(Glob::new("k\\"), Err(GlobError::TrailingEscape));
        assert!(m("k\\[ab]", "k[ab]"));
    }
}
