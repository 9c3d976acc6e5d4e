//! The immutable endpoint set a pick reads: built by writers (discovery,
//! health changes) and published with one atomic pointer swap, so readers
//! take no lock (pingora's `Backends` design).

use std::sync::Arc;

use crate::endpoint::Endpoint;
use crate::strategy::Strategy;
use crate::wrr::Wrr;

/// One published version of the endpoint set.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Every configured endpoint, in configuration order (for stats).
    pub(crate) all: Box<[Arc<Endpoint>]>,
    /// The endpoints in rotation: available when the snapshot was built.
    pub(crate) ready: Box<[Arc<Endpoint>]>,
    /// Smooth WRR schedule over `ready` (only for that strategy).
    pub(crate) wrr: Wrr,
}

impl Snapshot {
    pub(crate) fn empty() -> Self {
        Self {
            all: Box::new([]),
            ready: Box::new([]),
            wrr: Wrr::Empty,
        }
    }

    pub(crate) fn build(all: Vec<Arc<Endpoint>>, strategy: Strategy) -> Self {
        let ready: Box<[Arc<Endpoint>]> =
            all.iter().filter(|e| e.is_available()).cloned().collect();
        let wrr = if strategy == Strategy::WeightedRoundRobin {
            let weights: Vec<u32> = ready
                .iter()
                .map(|e| e.weight.load(std::sync::atomic::Ordering::Relaxed))
                .collect();
            Wrr::build(&weights)
        } else {
            Wrr::Empty
        };
        Self {
            all: all.into_boxed_slice(),
            ready,
            wrr,
        }
    }
}
