//! The fault plan every fake draws from: a scripted queue for writes first (`None` = answer
//! normally), then a seeded random [`FaultMix`] (reads only with `on_get`), and a count of what
//! was injected. Drawn only for requests that passed the fake's checks.

use std::collections::{BTreeMap, VecDeque};

use super::activate::{Fault, FaultKind, FaultMix};

#[derive(Debug, Default)]
pub struct Faults {
    queue: VecDeque<Option<Fault>>,
    mix: FaultMix,
    rng: u64,
    counts: BTreeMap<FaultKind, u64>,
}

impl Faults {
    /// Panics on a mix whose probabilities are negative or sum over 1.
    pub fn new(mix: FaultMix, seed: u64) -> Faults {
        check_mix(&mix);
        Faults { mix, rng: seed, ..Faults::default() }
    }

    /// Faults for the next valid writes, one each, before any random draw.
    pub fn push(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.queue.extend(faults.into_iter().map(Some));
    }

    /// `n` normal answers in the scripted queue (to place a fault later in a script).
    pub fn push_pass(&mut self, n: usize) {
        self.queue.extend(std::iter::repeat(None).take(n));
    }

    pub fn set_mix(&mut self, mix: FaultMix) {
        check_mix(&mix);
        self.mix = mix;
    }

    /// How many faults of each kind were injected (scripted and random).
    pub fn counts(&self) -> BTreeMap<FaultKind, u64> {
        self.counts.clone()
    }

    /// The fault for a request that passed every check, if any.
    pub fn draw(&mut self, is_write: bool) -> Option<Fault> {
        let scripted = if is_write { self.queue.pop_front() } else { None };
        let fault = match scripted {
            Some(f) => f,
            None if is_write || self.mix.on_get => {
                let u = (splitmix64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
                let mut acc = 0.0;
                self.mix
                    .weights
                    .iter()
                    .find(|(p, _)| {
                        acc += p;
                        u < acc
                    })
                    .map(|(_, f)| f.clone())
            }
            None => None,
        };
        if let Some(f) = &fault {
            *self.counts.entry(f.kind()).or_default() += 1;
        }
        fault
    }
}

fn check_mix(mix: &FaultMix) {
    let sum: f64 = mix.weights.iter().map(|(p, _)| *p).sum();
    assert!(
        mix.weights.iter().all(|(p, _)| p.is_finite() && *p >= 0.0) && sum <= 1.0 + 1e-9,
        "fault probabilities must be ≥ 0 and sum to ≤ 1: {mix:?}"
    );
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
