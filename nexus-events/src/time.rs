//! RFC 3339 timestamps for the wire format.

/// Serde adapter: `SystemTime` as an RFC 3339 string with milliseconds, UTC.
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        // `weak` accepts any fraction length and a `+00:00` offset as well as `Z`.
        humantime::parse_rfc3339_weak(&raw).map_err(D::Error::custom)
    }
}
