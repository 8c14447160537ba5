//! Proximal operators prox_{eta r} and the regulariser values r(x).

use serde::{Deserialize, Serialize};

/// The nonsmooth part r of the composite objective f + r (docs/algorithms.md, "Proximal operators").
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Prox {
    /// r = 0.
    #[default]
    None,
    /// r = mu ||x||_1 (every coordinate, bias included).
    L1 {
        /// Weight mu >= 0.
        mu: f32,
    },
    /// r = lambda / 2 ||x||^2.
    L2 {
        /// Weight lambda >= 0.
        lambda: f32,
    },
    /// r = mu ||x||_1 + lambda / 2 ||x||^2.
    ElasticNet {
        /// l1 weight.
        mu: f32,
        /// l2 weight.
        lambda: f32,
    },
    /// r = indicator of [lo, hi]^d.
    Box {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// r = indicator of the nonnegative orthant.
    Nonneg,
}

impl Prox {
    /// Checks the parameters (finite, nonnegative weights, lo <= hi).
    pub fn validate(&self) -> Result<(), String> {
        let bad = |v: f32| !(v.is_finite() && v >= 0.0);
        match *self {
            Prox::L1 { mu } if bad(mu) => Err(format!("l1: mu must be finite and >= 0, got {mu}")),
            Prox::L2 { lambda } if bad(lambda) => {
                Err(format!("l2: lambda must be finite and >= 0, got {lambda}"))
            }
            Prox::ElasticNet { mu, lambda } if bad(mu) || bad(lambda) => {
                Err(format!("elastic_net: mu and lambda must be finite and >= 0, got {mu}, {lambda}"))
            }
            Prox::Box { lo, hi } if lo.is_nan() || hi.is_nan() || lo > hi => {
                Err(format!("box: need lo <= hi, got lo = {lo}, hi = {hi}"))
            }
            _ => Ok(()),
        }
    }

    /// prox_{eta r}(v) for one coordinate.
    #[inline(always)]
    pub fn scalar(&self, eta: f32, v: f32) -> f32 {
        match *self {
            Prox::None => v,
            Prox::L1 { mu } => soft(v, eta * mu),
            Prox::L2 { lambda } => v / (1.0 + eta * lambda),
            Prox::ElasticNet { mu, lambda } => soft(v, eta * mu) / (1.0 + eta * lambda),
            Prox::Box { lo, hi } => v.clamp(lo, hi),
            Prox::Nonneg => v.max(0.0),
        }
    }

    /// [`Prox::scalar`] in f64 (for metrics, where the step may be below f32's resolution).
    pub fn scalar_f64(&self, eta: f64, v: f64) -> f64 {
        let soft = |v: f64, t: f64| {
            if v > t {
                v - t
            } else if v < -t {
                v + t
            } else {
                0.0
            }
        };
        match *self {
            Prox::None => v,
            Prox::L1 { mu } => soft(v, eta * mu as f64),
            Prox::L2 { lambda } => v / (1.0 + eta * lambda as f64),
            Prox::ElasticNet { mu, lambda } => soft(v, eta * mu as f64) / (1.0 + eta * lambda as f64),
            Prox::Box { lo, hi } => v.clamp(lo as f64, hi as f64),
            Prox::Nonneg => v.max(0.0),
        }
    }

    /// v <- prox_{eta r}(v).
    pub fn apply(&self, eta: f32, v: &mut [f32]) {
        for x in v {
            *x = self.scalar(eta, *x);
        }
    }

    /// x <- prox_{eta r}(x - eta * dir), fused in one pass (the step every algorithm takes).
    pub fn step(&self, eta: f32, x: &mut [f32], dir: &[f32]) {
        debug_assert_eq!(x.len(), dir.len());
        // One monomorphised loop per operator so the match is not inside the hot loop.
        macro_rules! run {
            ($f:expr) => {
                for (xi, &di) in x.iter_mut().zip(dir) {
                    *xi = $f(*xi - eta * di);
                }
            };
        }
        match *self {
            Prox::None => run!(|v: f32| v),
            Prox::L1 { mu } => run!(|v| soft(v, eta * mu)),
            Prox::L2 { lambda } => {
                let s = 1.0 + eta * lambda;
                run!(|v: f32| v / s)
            }
            Prox::ElasticNet { mu, lambda } => {
                let s = 1.0 + eta * lambda;
                run!(|v| soft(v, eta * mu) / s)
            }
            Prox::Box { lo, hi } => run!(|v: f32| v.clamp(lo, hi)),
            Prox::Nonneg => run!(|v: f32| v.max(0.0)),
        }
    }

    /// r(x), in f64. Indicator functions give 0 inside the set and +infinity outside.
    pub fn value(&self, x: &[f32]) -> f64 {
        let l1 = || x.iter().map(|&v| v.abs() as f64).sum::<f64>();
        let l2 = || x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
        match *self {
            Prox::None => 0.0,
            Prox::L1 { mu } => mu as f64 * l1(),
            Prox::L2 { lambda } => 0.5 * lambda as f64 * l2(),
            Prox::ElasticNet { mu, lambda } => mu as f64 * l1() + 0.5 * lambda as f64 * l2(),
            Prox::Box { lo, hi } => {
                if x.iter().all(|&v| v >= lo && v <= hi) {
                    0.0
                } else {
                    f64::INFINITY
                }
            }
            Prox::Nonneg => {
                if x.iter().all(|&v| v >= 0.0) {
                    0.0
                } else {
                    f64::INFINITY
                }
            }
        }
    }
}

/// Soft thresholding sign(v) max(|v| - t, 0).
#[inline(always)]
fn soft(v: f32, t: f32) -> f32 {
    if v > t {
        v - t
    } else if v < -t {
        v + t
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_match_the_contract() {
        // Dyadic values: every result below is exact in f32.
        let v = [-2.0f32, -0.0625, 0.0, 0.375, 1.5];
        let eta = 0.5;
        let mut a = v;
        Prox::L1 { mu: 0.25 }.apply(eta, &mut a);
        assert_eq!(a, [-1.875, 0.0, 0.0, 0.25, 1.375]);
        let mut a = v;
        Prox::L2 { lambda: 2.0 }.apply(eta, &mut a);
        assert_eq!(a, [-1.0, -0.03125, 0.0, 0.1875, 0.75]);
        let mut a = v;
        Prox::ElasticNet { mu: 0.25, lambda: 2.0 }.apply(eta, &mut a);
        assert_eq!(a, [-0.9375, 0.0, 0.0, 0.125, 0.6875]);
        let mut a = v;
        Prox::Box { lo: -0.125, hi: 1.0 }.apply(eta, &mut a);
        assert_eq!(a, [-0.125, -0.0625, 0.0, 0.375, 1.0]);
        let mut a = v;
        Prox::Nonneg.apply(eta, &mut a);
        assert_eq!(a, [0.0, 0.0, 0.0, 0.375, 1.5]);
    }

    #[test]
    fn fused_step_equals_gradient_step_then_prox() {
        for p in [
            Prox::None,
            Prox::L1 { mu: 0.3 },
            Prox::L2 { lambda: 0.7 },
            Prox::ElasticNet { mu: 0.1, lambda: 0.2 },
            Prox::Box { lo: -0.5, hi: 0.25 },
            Prox::Nonneg,
        ] {
            let mut x: Vec<f32> = (0..50).map(|i| (i as f32 * 0.77).sin()).collect();
            let d: Vec<f32> = (0..50).map(|i| (i as f32 * 1.3).cos()).collect();
            let mut y: Vec<f32> = x.iter().zip(&d).map(|(a, b)| a - 0.1 * b).collect();
            p.apply(0.1, &mut y);
            p.step(0.1, &mut x, &d);
            assert_eq!(x, y, "{p:?}");
        }
    }

    #[test]
    fn prox_is_the_minimiser_of_the_prox_problem() {
        // prox(v) = argmin_u r(u) + ||u - v||^2 / (2 eta): check against a grid search.
        let eta = 0.4;
        for p in [Prox::L1 { mu: 0.5 }, Prox::ElasticNet { mu: 0.3, lambda: 1.0 }, Prox::L2 { lambda: 2.0 }] {
            for v in [-1.3f32, -0.1, 0.0, 0.15, 2.0] {
                let obj = |u: f32| p.value(&[u]) + ((u - v) as f64).powi(2) / (2.0 * eta as f64);
                let best =
                    (-40000..=40000).map(|i| i as f32 * 1e-4).min_by(|a, b| obj(*a).total_cmp(&obj(*b)));
                assert!((best.unwrap() - p.scalar(eta, v)).abs() < 2e-4, "{p:?} v={v}");
            }
        }
    }

    #[test]
    fn values_and_validation() {
        assert_eq!(Prox::L1 { mu: 2.0 }.value(&[1.0, -3.0]), 8.0);
        assert_eq!(Prox::L2 { lambda: 2.0 }.value(&[1.0, -3.0]), 10.0);
        assert_eq!(Prox::Nonneg.value(&[1.0, -3.0]), f64::INFINITY);
        assert_eq!(Prox::Box { lo: -3.0, hi: 1.0 }.value(&[1.0, -3.0]), 0.0);
        assert!(Prox::L1 { mu: -1.0 }.validate().unwrap_err().contains("mu must be"));
        assert!(Prox::Box { lo: 1.0, hi: 0.0 }.validate().unwrap_err().contains("lo <= hi"));
        assert!(Prox::L2 { lambda: f32::NAN }.validate().is_err());
    }
}
