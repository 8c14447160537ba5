//! How fast a node lets itself compute: emulating the hardware a config describes on whatever
//! machine the node runs on, so that a heterogeneous cluster (and balancing for it) can be shown
//! on one machine.

use std::time::Duration;

use dprox_prepare::Prepared;

/// A node's pacing of its gradients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as the machine computes.
    Free,
    /// `[[nodes]] speed` below the fastest node's: after each gradient the node waits this
    /// multiple of the gradient's own time (s_max / s - 1), so it takes s_max / s times as long.
    Slowdown(f64),
    /// `[cluster] shape = true`: each gradient takes at least the simulator's compute time for
    /// its samples, `samples x flops_per_sample / (gflops x speed)`. The node waits out the
    /// difference; a gradient that is slower than that takes its real time.
    Modelled {
        /// Modelled seconds per sample on this node.
        secs_per_sample: f64,
    },
}

impl Pace {
    /// Node `id`'s pace in `run`, for an objective of `flops_per_sample`.
    pub fn of(run: &Prepared, id: usize, flops_per_sample: f64) -> Pace {
        if run.config().cluster.shape {
            let secs_per_sample = run.compute_secs_per_sample(id, flops_per_sample);
            tracing::info!(
                node = id,
                speed = run.speed(id),
                "shaped: each gradient takes at least {:.3} ms per sample (the simulator's compute time)",
                secs_per_sample * 1e3
            );
            return Pace::Modelled { secs_per_sample };
        }
        let fastest = (0..run.n()).map(|i| run.speed(i)).fold(0.0, f64::max);
        let factor = fastest / run.speed(id) - 1.0;
        if factor > 0.0 {
            tracing::info!(
                node = id,
                speed = run.speed(id),
                "emulating [[nodes]] speed: {factor:.2}x extra time after each gradient"
            );
            return Pace::Slowdown(factor);
        }
        Pace::Free
    }

    /// How long to wait after a gradient of `samples` samples that took `took`.
    pub fn wait_after(&self, took: Duration, samples: usize) -> Duration {
        match *self {
            Pace::Free => Duration::ZERO,
            Pace::Slowdown(factor) => took.mul_f64(factor),
            Pace::Modelled { secs_per_sample } => {
                // Saturating: an absurdly slow model is a very long wait, not a panic.
                let model =
                    Duration::try_from_secs_f64(samples as f64 * secs_per_sample).unwrap_or(Duration::MAX);
                model.saturating_sub(took)
            }
        }
    }

    /// The gradient throughput (samples per second) the node reports, from the one it measured
    /// at full speed: what it runs at under this pace.
    pub fn rate(&self, measured: f64) -> f64 {
        match *self {
            Pace::Free => measured,
            Pace::Slowdown(factor) => measured / (1.0 + factor),
            Pace::Modelled { secs_per_sample } => measured.min(1.0 / secs_per_sample),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_modelled_pace_waits_out_the_models_time_and_never_shortens_a_slow_gradient() {
        let pace = Pace::Modelled { secs_per_sample: 0.001 };
        assert_eq!(pace.wait_after(3 * MS, 10), 7 * MS);
        assert_eq!(pace.wait_after(12 * MS, 10), Duration::ZERO);
        assert_eq!(pace.rate(5000.0), 1000.0);
        assert_eq!(pace.rate(400.0), 400.0);
        let absurd = Pace::Modelled { secs_per_sample: f64::MAX };
        assert_eq!(absurd.wait_after(MS, 2), Duration::MAX - MS);
    }

    #[test]
    fn a_slowdown_stretches_each_gradient_and_its_rate_by_the_same_factor() {
        let pace = Pace::Slowdown(3.0);
        assert_eq!(pace.wait_after(5 * MS, 32), 15 * MS);
        assert_eq!(pace.rate(800.0), 200.0);
        assert_eq!(Pace::Free.wait_after(5 * MS, 32), Duration::ZERO);
        assert_eq!(Pace::Free.rate(800.0), 800.0);
    }
}
