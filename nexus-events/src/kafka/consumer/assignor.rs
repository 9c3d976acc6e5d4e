//! Leader-side partition assignment: Kafka's `range` and `roundrobin`.

use std::collections::BTreeMap;

use super::super::config::Assignor;

/// member id -> topic -> partitions
pub(crate) type Assignment = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// Assigns partitions of `partitions` (topic -> count) to `members`
/// (member id -> subscribed topics). Members are ordered by id, as in Java.
pub(crate) fn assign(
    strategy: Assignor,
    members: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, usize>,
) -> Assignment {
    let mut out: Assignment = members
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    match strategy {
        Assignor::Range => {
            for (topic, &count) in partitions {
                let subs: Vec<&String> = members
                    .iter()
                    .filter(|(_, t)| t.contains(topic))
                    .map(|(m, _)| m)
                    .collect();
                if subs.is_empty() {
                    continue;
                }
                let per = count / subs.len();
                let extra = count % subs.len();
                let mut next = 0usize;
                for (i, m) in subs.iter().enumerate() {
                    let n = per + usize::from(i < extra);
                    let parts: Vec<i32> = (next..next + n).map(|p| p as i32).collect();
                    next += n;
                    if !parts.is_empty()
                        && let Some(slot) = out.get_mut(*m)
                    {
                        slot.insert(topic.clone(), parts);
                    }
                }
            }
        }
        Assignor::RoundRobin => {
            let ids: Vec<&String> = members.keys().collect();
            let mut turn = 0usize;
            for (topic, &count) in partitions {
                for p in 0..count {
                    // Next member (in circular order) subscribed to this topic.
                    for _ in 0..ids.len() {
                        let m = ids[turn % ids.len()];
                        turn += 1;
                        if members[m].contains(topic) {
                            if let Some(slot) = out.get_mut(m) {
                                slot.entry(topic.clone()).or_default().push(p as i32);
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn members(ids: &[&str], topics: &[&str]) -> BTreeMap<String, Vec<String>> {
        ids.iter()
            .map(|m| {
                (
                    m.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_to_first_members() {
        let parts = BTreeMap::from([("t".to_string(), 7usize)]);
        let a = assign(Assignor::Range, &members(&["b", "a", "c"], &["t"]), &parts);
        assert_eq!(a["a"]["t"], vec![0, 1, 2]);
        assert_eq!(a["b"]["t"], vec![3, 4]);
        assert_eq!(a["c"]["t"], vec![5, 6]);
    }

    #[test]
    fn every_partition_assigned_exactly_once() {
        let parts = BTreeMap::from([("x".to_string(), 5usize), ("y".to_string(), 3usize)]);
        for strategy in [Assignor::Range, Assignor::RoundRobin] {
            for n in 1..6 {
                let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let a = assign(strategy, &members(&refs, &["x", "y"]), &parts);
                let mut seen: Vec<(String, i32)> = a
                    .values()
                    .flat_map(|t| {
                        t.iter()
                            .flat_map(|(k, v)| v.iter().map(move |p| (k.clone(), *p)))
                    })
                    .collect();
                seen.sort();
                let want: Vec<(String, i32)> = (0..5)
                    .map(|p| ("x".to_string(), p))
                    .chain((0..3).map(|p| ("y".to_string(), p)))
                    .collect();
                assert_eq!(seen, want, "{strategy:?} with {n} members");
            }
        }
    }

    #[test]
    fn round_robin_deals_in_turn_and_skips_unsubscribed() {
        let parts = BTreeMap::from([("x".to_string(), 4usize)]);
        let mut m = members(&["a", "b"], &["x"]);
        m.insert("c".into(), vec!["other".into()]);
        let a = assign(Assignor::RoundRobin, &m, &parts);
        assert_eq!(a["a"]["x"], vec![0, 2]);
        assert_eq!(a["b"]["x"], vec![1, 3]);
        assert!(a["c"].is_empty());
    }
}
