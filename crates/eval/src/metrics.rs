//! The metrics of docs/algorithms.md ("Metrics"), computed from the nodes' iterates.

use dprox_core::Prox;
use dprox_objective::{Batch, Objective};
use rayon::prelude::*;

/// The metrics of the average model xbar at one point of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// phi(xbar) = (1/n) sum_i f_i(xbar) + r(xbar), f_i the mean loss over node i's local data.
    #[serde(deserialize_with = "crate::output::f64_or_nan")]
    pub objective: f64,
    /// (1/n) sum_i f_i(xbar), the smooth part alone.
    #[serde(deserialize_with = "crate::output::f64_or_nan")]
    pub loss: f64,
    /// (1/n) sum_i ||x_i - xbar||^2.
    #[serde(deserialize_with = "crate::output::f64_or_nan")]
    pub consensus_error: f64,
    /// ||xbar - prox_{eta r}(xbar - eta grad f(xbar))|| / eta: the norm of the proximal gradient
    /// mapping, zero exactly at a stationary point of the global composite problem.
    pub grad_mapping: f64,
    /// Accuracy of xbar on the test set (classifiers with a test set).
    pub test_accuracy: Option<f64>,
    /// Fraction of the coordinates of xbar that are nonzero.
    pub density: f64,
}

/// Computes [`Evaluation`]s, reusing its buffers between calls.
#[derive(Debug)]
pub struct Evaluator {
    prox: Prox,
    lr: f32,
    xbar64: Vec<f64>,
    xbar: Vec<f32>,
    grad_sum: Vec<f64>,
    /// One gradient buffer per node evaluated concurrently.
    bufs: Vec<Vec<f32>>,

    /// ||x_i - xbar||^2 of the last evaluation, node order.
    contributions: Vec<f64>,
}

impl Evaluator {
    /// An evaluator for models of dimension `dim` regularised by `prox`, with step size `lr`
    /// (which the gradient mapping is defined with).
    pub fn new(dim: usize, prox: Prox, lr: f32) -> Evaluator {
        Evaluator {
            prox,
            lr,
            xbar64: vec![0.0; dim],
            xbar: vec![0.0; dim],
            grad_sum: vec![0.0; dim],
            bufs: Vec::new(),
            contributions: Vec::new(),
        }
    }

    /// Each node's share of the last consensus error, ||x_i - xbar||^2 / n (they sum to it):
    /// which node is furthest from the others.
    pub fn consensus_contributions(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        let n = self.contributions.len() as f64;
        self.contributions.iter().map(move |d| d / n)
    }

    /// The average model of the last evaluation.
    pub fn xbar(&self) -> &[f32] {
        &self.xbar
    }

    /// ||xbar - prox_{eta r}(xbar - eta grad f(xbar))|| / eta, in f64 throughout: in f32 a step
    /// eta g below half an ulp of xbar would vanish and the mapping read 0 away from stationarity.
    fn grad_mapping(&self, n: usize) -> f64 {
        let eta = self.lr as f64;
        let squares: f64 = self
            .xbar
            .iter()
            .zip(&self.grad_sum)
            .map(|(&x, &g)| {
                let x = x as f64;
                (x - self.prox.scalar_f64(eta, x - eta * (g / n as f64))).powi(2)
            })
            .sum();
        squares.sqrt() / eta
    }

    /// Evaluates the nodes' iterates `xs` (node order): xbar and the consensus error over `xs`,
    /// f(xbar) and its gradient as the mean over every objective of `objectives` (node i's f_i;
    /// when nodes are away, `xs` holds the live nodes' iterates only).
    /// Sums run in node order whatever the thread schedule, so the result is reproducible.
    pub fn evaluate(
        &mut self,
        xs: &[&[f32]],
        objectives: &mut [Box<dyn Objective>],
        test: Option<&mut Box<dyn Objective>>,
    ) -> Evaluation {
        let n = xs.len();
        let d = self.xbar.len();
        self.xbar64.fill(0.0);
        for x in xs {
            for (a, &b) in self.xbar64.iter_mut().zip(x.iter()) {
                *a += b as f64;
            }
        }
        for (a, b) in self.xbar64.iter_mut().zip(self.xbar.iter_mut()) {
            *a /= n as f64;
            *b = *a as f32;
        }
        self.contributions.clear();
        self.contributions.extend(
            xs.iter().map(|x| x.iter().zip(&self.xbar64).map(|(&a, &b)| (a as f64 - b).powi(2)).sum::<f64>()),
        );
        let consensus_error = self.contributions.iter().sum::<f64>() / n as f64;

        // f_i(xbar) and grad f_i(xbar): a chunk of nodes at a time in parallel, summed in order.
        let chunk = rayon::current_num_threads().max(1) * 2;
        if self.bufs.len() < chunk.min(objectives.len()) {
            self.bufs.resize_with(chunk.min(objectives.len()), || vec![0.0; d]);
        }
        self.grad_sum.fill(0.0);
        let mut loss = 0.0;
        let xbar = &self.xbar;
        for objs in objectives.chunks_mut(chunk) {
            let losses: Vec<f64> = objs
                .par_iter_mut()
                .zip(self.bufs.par_iter_mut())
                .map(|(o, g)| o.loss_grad(xbar, Batch::Full, g))
                .collect();
            for (l, g) in losses.iter().zip(&self.bufs) {
                loss += l;
                for (s, &v) in self.grad_sum.iter_mut().zip(g.iter()) {
                    *s += v as f64;
                }
            }
        }
        // f averages over every objective: when some nodes are away (a membership change), x̄
        // is the live nodes' average but the problem is still the whole run's.
        let m = objectives.len();
        loss /= m as f64;
        let grad_mapping = self.grad_mapping(m);
        Evaluation {
            objective: loss + self.prox.value(&self.xbar),
            loss,
            consensus_error,
            grad_mapping,
            test_accuracy: test.and_then(|t| t.accuracy(&self.xbar)),
            density: self.xbar.iter().filter(|&&v| v != 0.0).count() as f64 / d.max(1) as f64,
        }
    }
}
