//! Each node's training data and the test set, as the config describes them: read (or generated),
//! split, checked for consistent features, scaled with statistics of the training data only, and
//! dealt out to the nodes.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use dprox_config::Config;
use dprox_config::schema::{
    DataFormat, FeatureScale, LabelColumnKey, PartitionSection, SyntheticKind, SyntheticSection,
};
use dprox_data::{CsvOptions, Dataset, LabelColumn, LibsvmOptions, Partitioner, Scale, SyntheticSpec, Task};
use dprox_objective::{ModelKind, Shape};

use crate::budget::Budget;
use crate::error::{PrepareError, invalid};

/// The data as read, before scaling and partitioning.
pub(crate) struct Raw {
    /// The shared training data (file or synthetic), without the test split.
    train: Option<Dataset>,
    test: Option<Dataset>,
    /// Node i's own training file, when its `[[nodes]]` entry names one.
    own: Vec<Option<Dataset>>,
    task: Task,
}

/// What every node trains on, and the test set.
pub(crate) struct Loaded {
    pub nodes: Vec<Arc<Dataset>>,
    pub test: Option<Arc<Dataset>>,
}

/// `p` against `base` (the config's folder), absolute and without `.` or `..` components, so that
/// errors name the file wherever the command was started and a copied config still finds it.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let joined = if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        let base = if base.is_absolute() {
            base.to_path_buf()
        } else {
            std::env::current_dir().map(|d| d.join(base)).unwrap_or_else(|_| base.to_path_buf())
        };
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Reads the files (or generates the data) of `c`, with paths relative to `base`.
pub(crate) fn read(c: &Config, base: &Path, budget: &Budget) -> Result<Raw, PrepareError> {
    let d = &c.data;
    let task = match c.model.kind {
        ModelKind::LeastSquares => Task::Regression,
        // A custom objective may regress or classify: labels are classes only when counted.
        ModelKind::Custom if d.classes.is_none() => Task::Regression,
        _ => Task::Classification,
    };
    let shared = match (&d.train, &d.synthetic) {
        (Some(p), _) => Some(read_file(c, base, task, p, d.labels.as_ref(), None)?),
        (None, Some(s)) => {
            budget.check_synthetic(s)?;
            Some(synthetic(s, c.run.seed, task)?)
        }
        (None, None) => None,
    };
    let (train, mut test) = match (shared, d.test_fraction) {
        (Some(data), Some(f)) if f > 0.0 => {
            let (a, b) = dprox_data::split_test(&data, f, c.run.seed)?;
            (Some(a), Some(b))
        }
        (shared, _) => (shared, None),
    };
    let features = train.as_ref().map(Dataset::num_features);
    if let Some(t) = &d.test {
        test = Some(read_file(c, base, task, t, d.test_labels.as_ref(), features)?);
    }
    let mut own: Vec<Option<Dataset>> = (0..c.topology.nodes).map(|_| None).collect();
    for s in &c.nodes {
        if let Some(p) = &s.train {
            own[s.id] = Some(read_file(c, base, task, p, s.labels.as_ref(), features)?);
        }
    }
    let raw = Raw { train, test, own, task };
    raw.check_features(c)?;
    Ok(raw)
}

fn read_file(
    c: &Config,
    base: &Path,
    task: Task,
    path: &str,
    labels: Option<&String>,
    features: Option<usize>,
) -> Result<Dataset, PrepareError> {
    let d = &c.data;
    let classes = if task == Task::Regression { None } else { d.classes };
    let path = resolve(base, path);
    Ok(match d.format {
        DataFormat::Csv => {
            let label_column = match d.label_column {
                LabelColumnKey::First => LabelColumn::First,
                LabelColumnKey::Last => LabelColumn::Last,
            };
            dprox_data::load_csv(&path, &CsvOptions { label_column, classes, task })?
        }
        DataFormat::Libsvm => dprox_data::load_libsvm(
            &path,
            &LibsvmOptions { num_features: features.or(d.features), task, classes },
        )?,
        DataFormat::Idx => {
            let labels =
                labels.ok_or_else(|| invalid("data.labels", "format = \"idx\" needs a labels file"))?;
            dprox_data::load_idx(&path, resolve(base, labels))?
        }
    })
}

impl Raw {
    /// The global shape: features of the training data, classes from `[data] classes` or the
    /// largest number any data set has.
    pub fn shape(&self, c: &Config) -> Shape {
        let features =
            self.train.as_ref().or(self.own.iter().flatten().next()).map_or(0, Dataset::num_features);
        let classes = match self.task {
            Task::Regression => None,
            Task::Classification => {
                let seen = self.train.iter().chain(self.own.iter().flatten()).chain(self.test.iter());
                c.data.classes.or(seen.filter_map(|d| d.classes).max())
            }
        };
        Shape { features, classes }
    }

    /// Every file must have as many features as the shared training data (else node 0's file).
    /// Checked before scaling, which would otherwise fail first with a message naming no file.
    fn check_features(&self, c: &Config) -> Result<(), PrepareError> {
        let d = &c.data;
        let reference = match (&self.train, &self.own[0]) {
            (Some(t), _) => (
                t.num_features(),
                match &d.train {
                    Some(p) => format!("the shared data (data.train = {p:?})"),
                    None => "the synthetic data".to_string(),
                },
            ),
            (None, Some(o)) => {
                let p =
                    c.nodes.iter().find(|s| s.id == 0).and_then(|s| s.train.as_deref()).unwrap_or_default();
                (o.num_features(), format!("node 0's file {p:?}"))
            }
            (None, None) => return Ok(()),
        };
        let (features, reference) = reference;
        for (k, s) in c.nodes.iter().enumerate() {
            if let (Some(p), Some(ds)) = (&s.train, &self.own[s.id])
                && ds.num_features() != features
            {
                let got = ds.num_features();
                return Err(invalid(
                    &format!("nodes[{k}].train"),
                    format!("node {}'s file {p:?} has {got} features, {reference} has {features}", s.id),
                ));
            }
        }
        if let (Some(p), Some(t)) = (&d.test, &self.test)
            && t.num_features() != features
        {
            return Err(invalid(
                "data.test",
                format!("the test file {p:?} has {} features, {reference} has {features}", t.num_features()),
            ));
        }
        Ok(())
    }

    /// Scales (statistics of the shared training data, else of node 0's file) and deals the
    /// shared data out to the nodes that have no file of their own.
    pub fn finish(mut self, c: &Config) -> Result<Loaded, PrepareError> {
        let scale = match c.data.feature_scale {
            None | Some(FeatureScale::None) => Scale::None,
            Some(FeatureScale::Factor(f)) => Scale::Factor(f as f32),
            Some(FeatureScale::Standardize) => Scale::Standardize,
            Some(FeatureScale::MaxAbs) => Scale::MaxAbs,
        };
        if scale != Scale::None {
            let fit_on = self
                .train
                .as_ref()
                .or(self.own.iter().flatten().next())
                .expect("validated: some training data");
            let scaler = dprox_data::fit_scaler(fit_on, scale)?;
            for ds in self.train.iter_mut().chain(self.test.iter_mut()).chain(self.own.iter_mut().flatten()) {
                scaler.apply(ds)?;
            }
        }
        let n = c.topology.nodes;
        let parts = match &self.train {
            Some(t) => {
                let scheme = match c.data.partition {
                    PartitionSection::Iid => Partitioner::Iid,
                    PartitionSection::LabelSkew { classes_per_node } => {
                        Partitioner::LabelSkew { classes_per_node }
                    }
                    PartitionSection::Dirichlet { alpha } => Partitioner::Dirichlet { alpha },
                };
                Some(dprox_data::partition(t, n, scheme, c.run.seed)?)
            }
            None => None,
        };
        let mut nodes = Vec::with_capacity(n);
        for (i, own) in self.own.into_iter().enumerate() {
            let data = match (own, &parts, &self.train) {
                (Some(ds), _, _) => ds,
                (None, Some(p), Some(t)) => t.subset(&p[i]),
                _ => return Err(invalid(&format!("nodes[{i}]"), "has no training data")),
            };
            if data.is_empty() {
                return Err(invalid(&format!("nodes[{i}]"), format!("node {i} received no samples")));
            }
            nodes.push(Arc::new(data));
        }
        Ok(Loaded { nodes, test: self.test.map(Arc::new) })
    }
}

fn synthetic(s: &SyntheticSection, seed: u64, task: Task) -> Result<Dataset, PrepareError> {
    let spec = SyntheticSpec {
        samples: s.samples,
        features: s.features,
        density: s.density,
        support: s.support.unwrap_or((s.features / 10).max(1)),
        noise: s.noise.unwrap_or(0.1),
        seed,
    };
    let data = match s.kind {
        SyntheticKind::SparseLogistic => dprox_data::sparse_logistic(&spec)?.data,
        SyntheticKind::LeastSquares => dprox_data::least_squares(&spec)?.data,
        SyntheticKind::GaussianMixture => {
            let (classes, separation) = (s.classes.unwrap_or(2), s.separation.unwrap_or(3.0));
            dprox_data::gaussian_mixture(s.samples, s.features, classes, separation, seed)?.data
        }
    };
    if task == Task::Regression && data.classes.is_some() {
        // least_squares on class labels is allowed: treat the labels as real targets.
        return Ok(Dataset { classes: None, ..data });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_absolute_normal_forms() {
        assert_eq!(resolve(Path::new("/a/b"), "../c/d.csv"), PathBuf::from("/a/c/d.csv"));
        assert_eq!(resolve(Path::new("/a/b"), "./d.csv"), PathBuf::from("/a/b/d.csv"));
        assert_eq!(resolve(Path::new("/a/b"), "/x/y.csv"), PathBuf::from("/x/y.csv"));
        let here = std::env::current_dir().unwrap();
        assert_eq!(resolve(Path::new("deploy"), "../data/x.csv"), here.join("data/x.csv"));
    }
}
