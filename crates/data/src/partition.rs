//! Dealing the samples of one data set out to `n` nodes, IID or with label skew.
//!
//! Every partitioner returns one ascending index list per node, assigns every sample to exactly
//! one node (label skew drops nothing either: a class that has samples but no holder is an
//! error), and fails rather than hand a node an empty list, since an empty local objective would
//! silently break the algorithms downstream.

use std::fmt;

use crate::dataset::Dataset;
use crate::error::DataError;

/// Stream coordinates, one per partitioner, so their random choices are independent.
const IID_STREAM: u64 = 0x5041_5254_0000_0001;
const LABEL_SKEW_STREAM: u64 = 0x5041_5254_0000_0002;
const DIRICHLET_STREAM: u64 = 0x5041_5254_0000_0003;

/// A partitioning scheme, for callers that pick one from configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Partitioner {
    /// [`partition_iid`].
    Iid,
    /// [`partition_label_skew`] with this many classes per node.
    LabelSkew {
        /// Classes each node holds.
        classes_per_node: usize,
    },
    /// [`partition_dirichlet`] with this concentration.
    Dirichlet {
        /// Dirichlet concentration: small is skewed, large is close to IID.
        alpha: f64,
    },
}

/// Partitions `data` over `n` nodes with `scheme`.
pub fn partition(
    data: &Dataset,
    n: usize,
    scheme: Partitioner,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    match scheme {
        Partitioner::Iid => partition_iid(data.len(), n, seed),
        Partitioner::LabelSkew { classes_per_node } => partition_label_skew(data, n, classes_per_node, seed),
        Partitioner::Dirichlet { alpha } => partition_dirichlet(data, n, alpha, seed),
    }
}

fn check_nodes(len: usize, n: usize) -> Result<(), DataError> {
    if n == 0 {
        return Err(DataError::InvalidArgument("cannot partition over 0 nodes".into()));
    }
    if n > len {
        return Err(DataError::InvalidArgument(format!(
            "cannot partition {len} samples over {n} nodes: some node would receive no samples"
        )));
    }
    Ok(())
}

/// Sorts every part and fails on the first empty one.
fn finish(mut parts: Vec<Vec<usize>>, scheme: String, why: &str) -> Result<Vec<Vec<usize>>, DataError> {
    parts.iter_mut().for_each(|p| p.sort_unstable());
    let empty: Vec<usize> = (0..parts.len()).filter(|&i| parts[i].is_empty()).collect();
    if let Some(&node) = empty.first() {
        return Err(DataError::EmptyNode {
            node,
            scheme,
            hint: format!("{} of {} nodes are empty ({:?}); {why}", empty.len(), parts.len(), empty),
        });
    }
    Ok(parts)
}

/// Cuts `0..len` into `n` contiguous ranges whose lengths differ by at most one (the first
/// `len % n` are the longer ones).
fn equal_shares(len: usize, n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (base, extra) = (len / n, len % n);
    (0..n).scan(0, move |start, k| {
        let end = *start + base + usize::from(k < extra);
        let r = *start..end;
        *start = end;
        Some(r)
    })
}

/// IID: a seeded permutation of `0..len` cut into `n` contiguous parts whose sizes differ by at
/// most one; each part is then sorted.
pub fn partition_iid(len: usize, n: usize, seed: u64) -> Result<Vec<Vec<usize>>, DataError> {
    check_nodes(len, n)?;
    let mut perm: Vec<usize> = (0..len).collect();
    dprox_rng::stream(seed, &[IID_STREAM]).shuffle(&mut perm);
    let parts = equal_shares(len, n).map(|r| perm[r].to_vec()).collect();
    finish(parts, "iid".into(), "there are fewer samples than nodes")
}

/// The classes node `i` of `nodes` holds under label skew, ascending and without duplicates.
///
/// Node `i`'s `r`-th class is `(r/2 * nodes + i) mod C` for even `r` and
/// `C - 1 - ((r-1)/2 * nodes + i) mod C` for odd `r`: classes are taken alternately from the low
/// and the high end, so with `C = 10` and two classes per node, node `i` gets `{i, 9 - i}`.
pub fn label_skew_classes(nodes: usize, classes: usize, classes_per_node: usize) -> Vec<Vec<usize>> {
    (0..nodes)
        .map(|i| {
            let mut held: Vec<usize> = (0..classes_per_node)
                .map(|r| {
                    if r % 2 == 0 {
                        (r / 2 * nodes + i) % classes
                    } else {
                        classes - 1 - ((r - 1) / 2 * nodes + i) % classes
                    }
                })
                .collect();
            held.sort_unstable();
            held.dedup();
            held
        })
        .collect()
}

/// Label skew: each node holds `classes_per_node` classes (see [`label_skew_classes`]); the
/// samples of each class, in a seeded shuffled order, are split into equal contiguous shares
/// (sizes differ by at most one) among the nodes that hold it.
///
/// Errors: regression data, `n == 0` or `n > len`, `classes_per_node` of 0 or more than the
/// number of classes, a class with samples that no node holds, a node left without samples.
pub fn partition_label_skew(
    data: &Dataset,
    n: usize,
    classes_per_node: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    let classes = data.classes.ok_or(DataError::NotClassification { what: "label-skew partitioning" })?;
    check_nodes(data.len(), n)?;
    if classes_per_node == 0 || classes_per_node > classes {
        return Err(DataError::InvalidArgument(format!(
            "classes_per_node = {classes_per_node} must be in 1..={classes} (the number of classes)"
        )));
    }
    let held = label_skew_classes(n, classes, classes_per_node);
    let mut holders = vec![Vec::new(); classes];
    for (node, cs) in held.iter().enumerate() {
        cs.iter().for_each(|&c| holders[c].push(node));
    }
    let by_class = data.indices_by_class();
    let uncovered: Vec<usize> =
        (0..classes).filter(|&c| holders[c].is_empty() && !by_class[c].is_empty()).collect();
    if !uncovered.is_empty() {
        return Err(DataError::UncoveredClasses { classes: uncovered, nodes: n, per_node: classes_per_node });
    }
    let mut parts = vec![Vec::new(); n];
    for (c, mut samples) in by_class.into_iter().enumerate() {
        if holders[c].is_empty() {
            continue; // a class without samples
        }
        dprox_rng::stream(seed, &[LABEL_SKEW_STREAM, c as u64]).shuffle(&mut samples);
        for (range, &node) in equal_shares(samples.len(), holders[c].len()).zip(&holders[c]) {
            parts[node].extend_from_slice(&samples[range]);
        }
    }
    finish(
        parts,
        format!("label skew, classes_per_node = {classes_per_node}"),
        "their classes have fewer samples than holders: use fewer nodes or more classes per node",
    )
}

/// Dirichlet label skew: for each class `c`, in ascending order, draw node proportions
/// `p ~ Dirichlet(alpha)` from a seeded stream, shuffle the class's samples, and cut them at
/// `floor(cumsum(p) * count)`, so every sample is assigned exactly once.
///
/// As in the usual federated-learning benchmark code (NIID-Bench), the floors hand the rounding
/// remainder of every class to the last node: it typically gets one sample of classes whose
/// proportion for it is tiny, and is rarely the empty one.
///
/// Errors: regression data, `n == 0` or `n > len`, `alpha` not positive and finite, and a node
/// left without samples (likely with a small `alpha` and many nodes).
pub fn partition_dirichlet(
    data: &Dataset,
    n: usize,
    alpha: f64,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    data.classes.ok_or(DataError::NotClassification { what: "Dirichlet partitioning" })?;
    check_nodes(data.len(), n)?;
    if !(alpha > 0.0 && alpha.is_finite()) {
        return Err(DataError::InvalidArgument(format!(
            "dirichlet alpha = {alpha} must be positive and finite"
        )));
    }
    let mut parts = vec![Vec::new(); n];
    let mut p = vec![0.0; n];
    for (c, mut samples) in data.indices_by_class().into_iter().enumerate() {
        let mut rng = dprox_rng::stream(seed, &[DIRICHLET_STREAM, c as u64]);
        rng.dirichlet(alpha, &mut p);
        rng.shuffle(&mut samples);
        let count = samples.len();
        let (mut cum, mut start) = (0.0, 0);
        for (node, &pk) in p.iter().enumerate() {
            cum += pk;
            // The last cut is exactly `count` whatever rounding did to the running sum.
            let end = if node + 1 == n {
                count
            } else {
                ((cum * count as f64).floor() as usize).clamp(start, count)
            };
            parts[node].extend_from_slice(&samples[start..end]);
            start = end;
        }
    }
    finish(
        parts,
        format!("dirichlet alpha = {alpha}"),
        "a small alpha concentrates each class on few nodes: use a larger alpha, fewer nodes or another seed",
    )
}

/// Per-node sample and class counts of a partition, for printing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionStats {
    /// Samples per node.
    pub sizes: Vec<usize>,
    /// `class_counts[node][class]`: samples of each class per node (empty lists for regression).
    pub class_counts: Vec<Vec<usize>>,
}

impl PartitionStats {
    /// Counts the partition `parts` of `data`.
    pub fn new(data: &Dataset, parts: &[Vec<usize>]) -> PartitionStats {
        let classes = data.classes.unwrap_or(0);
        let class_counts = parts
            .iter()
            .map(|p| {
                let mut counts = vec![0; classes];
                if classes > 0 {
                    p.iter().for_each(|&i| counts[data.class_of(i)] += 1);
                }
                counts
            })
            .collect();
        PartitionStats { sizes: parts.iter().map(Vec::len).collect(), class_counts }
    }

    /// The classes node `node` has at least one sample of, ascending.
    pub fn classes_of(&self, node: usize) -> Vec<usize> {
        (0..self.class_counts[node].len()).filter(|&c| self.class_counts[node][c] > 0).collect()
    }
}

impl fmt::Display for PartitionStats {
    /// One line per node: `node 3: 1000 samples; classes 3:500 6:500`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (node, size) in self.sizes.iter().enumerate() {
            write!(f, "node {node}: {size} samples")?;
            if !self.class_counts[node].is_empty() {
                write!(f, "; classes")?;
                for c in self.classes_of(node) {
                    write!(f, " {c}:{}", self.class_counts[node][c])?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
