//! What the kill-and-fault tests share: a seeded die (xorshift, repeatable per proptest case) and
//! a panic hook that keeps simulated kills (`panic!("agent killed …")`) out of the test output.

use std::sync::atomic::{AtomicU64, Ordering};

/// A seeded die: `roll()` gives 0..1000 (per mille), the same sequence for the same seed. Atomic,
/// as a sender is `Sync`; the engine rolls it from one thread at a concurrency of 1.
pub struct Dice(AtomicU64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed.max(1)))
    }

    pub fn roll(&self) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % 1000
    }
}

/// Keeps the simulated kills out of the test output; real panics still print.
pub fn quiet_kills() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().downcast_ref::<&str>().is_some_and(|m| m.starts_with("agent killed")) {
                default(info);
            }
        }));
    });
}
