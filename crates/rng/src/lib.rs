//! Seeded, portable random numbers for dprox.
//!
//! Every random choice in dprox (data splits, minibatches, `rand_k` indices, QSGD rounding, seeded
//! initialisation, synthetic data) comes from this crate, so that a run is a pure function of its
//! seed: on every platform, and whatever version of a third-party RNG crate is in the lock file.
//!
//! # Layout
//! - [`Rng`]: xoshiro256++ (Blackman and Vigna), seeded through SplitMix64.
//! - [`stream`]: derive an independent generator from a run seed and a list of coordinates
//!   (node id, iteration, which vector, ...). Sender and receiver of a `rand_k` message call it
//!   with the same coordinates and get the same indices.
//! - Distributions: uniform integers (Lemire's method), uniform floats, normal (Box-Muller),
//!   gamma (Marsaglia-Tsang), and in-place shuffles.
//!
//! ```
//! use dprox_rng::{stream, Rng};
//! let mut a = stream(42, &[3, 7]);
//! let mut b = stream(42, &[3, 7]);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let mut c = Rng::seed_from(1);
//! let x = c.uniform_f64();
//! assert!((0.0..1.0).contains(&x));
//! ```

/// One step of SplitMix64: advances `state` and returns a well-mixed 64-bit value.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a seed and a list of coordinates into one 64-bit key (order matters).
pub fn mix(seed: u64, coords: &[u64]) -> u64 {
    let mut s = seed;
    let mut key = splitmix64(&mut s);
    for &c in coords {
        let mut t = key ^ c.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        key = splitmix64(&mut t);
    }
    key
}

/// A generator for the stream named by `coords` under `seed` (for example
/// `[node, iteration, exchange]`). Different coordinates give independent streams.
pub fn stream(seed: u64, coords: &[u64]) -> Rng {
    Rng::seed_from(mix(seed, coords))
}

/// xoshiro256++: small, fast, and of good statistical quality for simulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose 256-bit state is expanded from `seed` by SplitMix64.
    pub fn seed_from(seed: u64) -> Rng {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Rng { s }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, 1) with 24 random bits.
    #[inline]
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform integer in [0, n), unbiased (Lemire's nearly-divisionless method). `n` must be > 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let mut m = (self.next_u64() as u128) * (n as u128);
        let mut lo = m as u64;
        if lo < n {
            let threshold = n.wrapping_neg() % n;
            while lo < threshold {
                m = (self.next_u64() as u128) * (n as u128);
                lo = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// Uniform `usize` in [0, n).
    #[inline]
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Standard normal sample (Box-Muller; one of the pair is discarded so the stream stays simple).
    pub fn normal(&mut self) -> f64 {
        loop {
            let u1 = self.uniform_f64();
            if u1 > 0.0 {
                let u2 = self.uniform_f64();
                return (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            }
        }
    }

    /// Gamma(shape, 1) sample (Marsaglia and Tsang; shape < 1 by the boost u^(1/shape)).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        assert!(shape > 0.0 && shape.is_finite(), "gamma shape must be positive");
        if shape < 1.0 {
            let u = loop {
                let u = self.uniform_f64();
                if u > 0.0 {
                    break u;
                }
            };
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform_f64();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    /// A Dirichlet(alpha, ..., alpha) sample written into `out` (sums to 1).
    pub fn dirichlet(&mut self, alpha: f64, out: &mut [f64]) {
        let mut sum = 0.0;
        for o in out.iter_mut() {
            *o = self.gamma(alpha);
            sum += *o;
        }
        if sum > 0.0 {
            out.iter_mut().for_each(|o| *o /= sum);
        } else {
            // Every draw underflowed (tiny alpha): put all mass on one uniformly chosen entry.
            let k = self.below_usize(out.len());
            out.iter_mut().enumerate().for_each(|(i, o)| *o = (i == k) as u8 as f64);
        }
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below_usize(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_matches_reference_vector() {
        // Reference: state {1, 2, 3, 4} gives 41943041, 58720359, 3588806011781223 (xoshiro256++).
        let mut r = Rng { s: [1, 2, 3, 4] };
        assert_eq!(r.next_u64(), 41943041);
        assert_eq!(r.next_u64(), 58720359);
        assert_eq!(r.next_u64(), 3588806011781223);
    }

    #[test]
    fn splitmix_matches_reference_vector() {
        let mut s = 1234567u64;
        assert_eq!(splitmix64(&mut s), 6457827717110365317);
        assert_eq!(splitmix64(&mut s), 3203168211198807973);
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        assert_eq!(stream(7, &[1, 2]).next_u64(), stream(7, &[1, 2]).next_u64());
        assert_ne!(stream(7, &[1, 2]).next_u64(), stream(7, &[2, 1]).next_u64());
        assert_ne!(stream(7, &[1]).next_u64(), stream(8, &[1]).next_u64());
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::seed_from(3);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[r.below_usize(10)] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn normal_and_gamma_moments() {
        let mut r = Rng::seed_from(11);
        let n = 200_000;
        let (mut m, mut v) = (0.0, 0.0);
        for _ in 0..n {
            let x = r.normal();
            m += x;
            v += x * x;
        }
        m /= n as f64;
        v = v / n as f64 - m * m;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "mean {m} var {v}");
        for shape in [0.3, 1.0, 4.5] {
            let mean: f64 = (0..n).map(|_| r.gamma(shape)).sum::<f64>() / n as f64;
            assert!((mean - shape).abs() < 0.03 * shape.max(1.0), "shape {shape} mean {mean}");
        }
    }

    #[test]
    fn dirichlet_sums_to_one() {
        let mut r = Rng::seed_from(5);
        let mut p = [0.0; 7];
        for alpha in [0.01, 0.5, 10.0] {
            r.dirichlet(alpha, &mut p);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(p.iter().all(|&x| x >= 0.0));
        }
    }
}
