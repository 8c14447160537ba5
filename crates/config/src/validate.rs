//! Checks that need no file access: ranges, required keys, combinations.

use dprox_core::Algorithm;

use crate::error::{ConfigError, invalid};
use dprox_objective::{Activation, ModelKind, Pool};

use crate::schema::{
    Config, FaultKind, FaultSection, InitKind, PartitionSection, ScheduleKind, TopologyKind, WeightsKind,
};

impl Config {
    /// Validates the config; returns warnings (settings that have no effect) on success.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        self.check_run()?;
        self.check_topology()?;
        self.check_data()?;
        self.check_model(&mut warnings)?;
        self.check_optimizer(&mut warnings)?;
        self.check_network()?;
        self.check_cluster()?;
        self.check_links()?;
        self.check_nodes()?;
        self.check_faults()?;
        self.check_schedule()?;
        Ok(warnings)
    }

    /// A time-varying schedule: on the graph it is defined for, with an algorithm whose sums are
    /// rebuilt at every exchange, and on a fixed membership.
    fn check_schedule(&self) -> Result<(), ConfigError> {
        let s = self.topology.schedule;
        if s == ScheduleKind::Static {
            return Ok(());
        }
        if s == ScheduleKind::OnePeerExponential && self.topology.kind != TopologyKind::Exponential {
            return Err(invalid("topology.schedule", "one_peer_exponential runs on kind = \"exponential\""));
        }
        if !self.run.algorithm.can_follow_a_schedule(&self.compression.x, &self.compression.y) {
            return Err(invalid(
                "topology.schedule",
                "a time-varying schedule needs dproxsgt, dpsgd, or cdproxsgt/choco with identity f32 \
                 compression (a compressed public estimate goes stale at the peers a round leaves out; \
                 all-reduce has no graph)",
            ));
        }
        if !self.faults.is_empty() {
            return Err(invalid(
                "faults",
                "a time-varying schedule runs on a fixed membership: no [[faults]]",
            ));
        }
        Ok(())
    }

    fn check_run(&self) -> Result<(), ConfigError> {
        let r = &self.run;
        if r.iterations == 0 {
            return Err(invalid("run.iterations", "must be at least 1"));
        }
        if r.eval_every == 0 {
            return Err(invalid("run.eval_every", "must be at least 1"));
        }
        Ok(())
    }

    fn check_topology(&self) -> Result<(), ConfigError> {
        let t = &self.topology;
        let n = t.nodes;
        if n == 0 {
            return Err(invalid("topology.nodes", "must be at least 1"));
        }
        if (t.kind == TopologyKind::Edges) != t.edges.is_some() {
            return Err(invalid("topology.edges", "is required for kind = \"edges\" and only allowed there"));
        }
        if (t.kind == TopologyKind::ErdosRenyi) != t.p.is_some() {
            return Err(invalid(
                "topology.p",
                "is required for kind = \"erdos_renyi\" and only allowed there",
            ));
        }
        if t.rows.is_some() && t.kind != TopologyKind::Torus {
            return Err(invalid("topology.rows", "only applies to kind = \"torus\""));
        }
        if (t.weights == WeightsKind::Explicit) != t.matrix.is_some() {
            return Err(invalid(
                "topology.matrix",
                "is required for weights = \"explicit\" and only allowed there",
            ));
        }
        Ok(())
    }

    fn check_data(&self) -> Result<(), ConfigError> {
        let n = self.topology.nodes;
        let d = &self.data;
        let all_nodes_have_files =
            n > 0 && (0..n).all(|i| self.nodes.iter().any(|s| s.id == i && s.train.is_some()));
        match (&d.train, &d.synthetic) {
            (Some(_), Some(_)) => {
                return Err(invalid("data", "give either `train` or `synthetic`, not both"));
            }
            (None, None) if !all_nodes_have_files => {
                return Err(invalid(
                    "data.train",
                    "missing: give a training file, `synthetic = {...}`, or a `train` file in every [[nodes]] entry",
                ));
            }
            _ => {}
        }
        if d.format == crate::schema::DataFormat::Idx && d.train.is_some() && d.labels.is_none() {
            return Err(invalid("data.labels", "format = \"idx\" needs the labels file"));
        }
        if let Some(f) = d.test_fraction {
            if !(0.0..1.0).contains(&f) {
                return Err(invalid("data.test_fraction", format!("must be in [0, 1), got {f}")));
            }
            if d.test.is_some() {
                return Err(invalid("data.test_fraction", "give either `test` or `test_fraction`, not both"));
            }
        }
        match d.partition {
            PartitionSection::LabelSkew { classes_per_node: 0 } => {
                return Err(invalid("data.partition.classes_per_node", "must be at least 1"));
            }
            PartitionSection::Dirichlet { alpha } if !(alpha.is_finite() && alpha > 0.0) => {
                return Err(invalid("data.partition.alpha", format!("must be positive, got {alpha}")));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_model(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        let m = &self.model;
        match (&m.name, m.kind) {
            (Some(name), kind) if kind != ModelKind::Custom => {
                return Err(invalid(
                    "model.name",
                    format!("names a custom objective (`{name}`): it only applies to kind = \"custom\""),
                ));
            }
            (Some(name), _) if name.is_empty() => return Err(invalid("model.name", "must not be empty")),
            _ => {}
        }
        if matches!(m.kind, ModelKind::Mlp | ModelKind::LeNet) && m.init() == InitKind::Zeros {
            return Err(invalid(
                "model.init",
                "\"zeros\" cannot train a network: every hidden unit would compute the same function \
                 and get the same gradient, so only the last bias would learn; use \"seeded\" (the \
                 default for mlp and lenet)",
            ));
        }
        if m.kind == ModelKind::LeNet {
            if let Some(image) = m.image
                && image.contains(&0)
            {
                return Err(invalid(
                    "model.image",
                    format!("must be [channels, height, width], all positive, got {image:?}"),
                ));
            }
            if !(m.channels.is_empty() || m.channels.len() == 2 && !m.channels.contains(&0)) {
                return Err(invalid(
                    "model.channels",
                    format!(
                        "must be [c1, c2], the positive channels of the two convolutions, got {:?}",
                        m.channels
                    ),
                ));
            }
        } else if m.kind == ModelKind::Custom {
            // The embedding program's objective defines the model; these keys would be ignored.
            if !m.hidden.is_empty()
                || m.activation != Activation::Relu
                || !m.bias
                || m.image.is_some()
                || !m.channels.is_empty()
                || m.pool != Pool::Max
            {
                warnings.push(
                    "model.hidden, model.activation, model.bias, model.image, model.channels and \
                     model.pool have no effect on kind = \"custom\": the objective given to \
                     Prepared::with_objective defines the model"
                        .into(),
                );
            }
        } else if m.image.is_some() || !m.channels.is_empty() || m.pool != Pool::Max {
            warnings.push(
                "model.image, model.channels and model.pool have no effect: they configure \
                 kind = \"lenet\" only"
                    .into(),
            );
        }
        Ok(())
    }

    fn check_optimizer(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(invalid("optimizer.lr", format!("must be positive, got {}", o.lr)));
        }
        for (key, g) in [("optimizer.gamma_x", o.gamma_x), ("optimizer.gamma_y", o.gamma_y)] {
            if !(g > 0.0 && g <= 1.0) {
                return Err(invalid(key, format!("must be in (0, 1], got {g}")));
            }
        }
        self.regularizer.validate().map_err(|e| invalid("regularizer", e))?;
        let c = &self.compression;
        c.x.validate().map_err(|e| invalid("compression.x", e))?;
        c.y.validate().map_err(|e| invalid("compression.y", e))?;
        if let Some(z) = c.zstd
            && !(1..=22).contains(&z)
        {
            return Err(invalid("compression.zstd", format!("level must be in 1..=22, got {z}")));
        }
        let alg = self.run.algorithm;
        let uses_x = matches!(alg, Algorithm::Cdproxsgt | Algorithm::Choco);
        if !uses_x && (!c.x.is_identity() || !c.y.is_identity()) {
            warnings.push(format!("[compression] has no effect: {alg} sends uncompressed vectors"));
        } else if alg == Algorithm::Choco && !c.y.is_identity() {
            warnings.push("compression.y has no effect: choco has no tracker".into());
        }
        if !matches!(alg, Algorithm::Cdproxsgt | Algorithm::Choco) && (o.gamma_x != 1.0 || o.gamma_y != 1.0) {
            warnings.push(format!("gamma_x/gamma_y have no effect on {alg}"));
        }
        Ok(())
    }

    fn check_network(&self) -> Result<(), ConfigError> {
        let net = &self.network;
        if !(net.latency_ms.is_finite() && net.latency_ms >= 0.0) {
            return Err(invalid("network.latency_ms", format!("must be >= 0, got {}", net.latency_ms)));
        }
        if !(net.bandwidth_mbps.is_finite() && net.bandwidth_mbps > 0.0) {
            return Err(invalid(
                "network.bandwidth_mbps",
                format!("must be positive, got {}", net.bandwidth_mbps),
            ));
        }
        if !(net.gflops.is_finite() && net.gflops > 0.0) {
            return Err(invalid("network.gflops", format!("must be positive, got {}", net.gflops)));
        }
        if !(0.0..1.0).contains(&net.loss) {
            return Err(invalid("network.loss", format!("must be in [0, 1), got {}", net.loss)));
        }
        Ok(())
    }

    fn check_cluster(&self) -> Result<(), ConfigError> {
        let cl = &self.cluster;
        for (key, v) in [
            ("cluster.timeout_s", cl.timeout_s),
            ("cluster.heartbeat_s", cl.heartbeat_s),
            ("cluster.register_timeout_s", cl.register_timeout_s),
        ] {
            // Positive, and a number of seconds a Duration can hold (ten of them, for the
            // heartbeat limit), so that no later conversion can panic.
            if !(v > 0.0 && std::time::Duration::try_from_secs_f64(10.0 * v).is_ok()) {
                return Err(invalid(key, format!("must be a positive number of seconds, got {v}")));
            }
        }
        let n = self.topology.nodes;
        if cl.min_nodes == 0 || cl.min_nodes > n {
            return Err(invalid(
                "cluster.min_nodes",
                format!("must be in 1..={n} (the topology's nodes), got {}", cl.min_nodes),
            ));
        }
        Ok(())
    }

    fn check_links(&self) -> Result<(), ConfigError> {
        let n = self.topology.nodes;
        for (k, l) in self.links.iter().enumerate() {
            let key = format!("links[{k}]");
            if l.a >= n || l.b >= n || l.a == l.b {
                return Err(invalid(
                    &key,
                    format!("{}-{} is not a link between two of the {n} nodes", l.a, l.b),
                ));
            }
            if l.latency_ms.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(invalid(&key, "latency_ms must be >= 0"));
            }
            if l.bandwidth_mbps.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(invalid(&key, "bandwidth_mbps must be positive"));
            }
            if l.loss.is_some_and(|v| !(0.0..1.0).contains(&v)) {
                return Err(invalid(&key, "loss must be in [0, 1)"));
            }
        }
        Ok(())
    }

    fn check_nodes(&self) -> Result<(), ConfigError> {
        let n = self.topology.nodes;
        let mut seen = std::collections::BTreeSet::new();
        for (k, s) in self.nodes.iter().enumerate() {
            let key = format!("nodes[{k}]");
            if s.id >= n {
                return Err(invalid(&key, format!("id {} is not a node of the {n}-node topology", s.id)));
            }
            if !seen.insert(s.id) {
                return Err(invalid(&key, format!("node {} appears twice", s.id)));
            }
            if let Some(sp) = s.speed
                && !(sp.is_finite() && sp > 0.0)
            {
                return Err(invalid(&key, format!("speed must be positive, got {sp}")));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The fault schedule: each entry's keys fit its kind, its iterations lie inside the run, and
    /// the node faults of each node follow one another (a node is not lost while it is away).
    fn check_faults(&self) -> Result<(), ConfigError> {
        let (n, total) = (self.topology.nodes, self.run.iterations);
        // By node, only for the nodes named (sized by the schedule, not by the topology).
        let mut away: std::collections::BTreeMap<usize, Vec<(u64, u64)>> = Default::default();
        for (k, f) in self.faults.iter().enumerate() {
            let key = format!("faults[{k}]");
            let bad = |reason: String| invalid(&key, reason);
            if f.at == 0 || f.at >= total {
                return Err(bad(format!(
                    "at = {} must be in 1..{total} (inside the run's iterations)",
                    f.at
                )));
            }
            match f.kind {
                FaultKind::LinkDown => check_link_fault(f, n, total).map_err(bad)?,
                kind => {
                    let node = check_node_fault(f, kind, n, total).map_err(bad)?;
                    if let Some(end) = f.rejoin.or((kind != FaultKind::Pause).then_some(total)) {
                        away.entry(node).or_default().push((f.at, end));
                    }
                }
            }
        }
        for (node, spans) in away.iter_mut() {
            spans.sort();
            if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
                return Err(invalid(
                    "faults",
                    format!(
                        "node {node} is away from {} to {} and cannot fail again at {}",
                        w[0].0, w[0].1, w[1].0
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A leave, crash or pause: the node, and the keys its kind takes. Returns the node.
fn check_node_fault(f: &FaultSection, kind: FaultKind, n: usize, total: u64) -> Result<usize, String> {
    let Some(node) = f.node else { return Err(format!("kind = \"{}\" needs `node`", kind_name(kind))) };
    if node >= n {
        return Err(format!("node {node} is not a node of the {n}-node topology"));
    }
    if f.link.is_some() || f.until.is_some() {
        return Err("`link` and `until` only apply to kind = \"link_down\"".into());
    }
    match kind {
        FaultKind::Pause => {
            if f.rejoin.is_some() {
                return Err("`rejoin` only applies to kind = \"leave\" or \"crash\"".into());
            }
            match f.seconds {
                Some(s) if s > 0.0 && s.is_finite() && s <= 3600.0 => {}
                other => return Err(format!("kind = \"pause\" needs `seconds` in (0, 3600], got {other:?}")),
            }
        }
        _ => {
            if f.seconds.is_some() {
                return Err("`seconds` only applies to kind = \"pause\"".into());
            }
            if let Some(r) = f.rejoin
                && !(r > f.at && r < total)
            {
                return Err(format!(
                    "rejoin = {r} must be after at = {} and before the last iteration {total}",
                    f.at
                ));
            }
        }
    }
    Ok(node)
}

/// A link_down: two distinct nodes and an `until` after `at`.
fn check_link_fault(f: &FaultSection, n: usize, total: u64) -> Result<(), String> {
    let Some([a, b]) = f.link else { return Err("kind = \"link_down\" needs `link = [a, b]`".into()) };
    if a >= n || b >= n || a == b {
        return Err(format!("link [{a}, {b}] is not a link between two of the {n} nodes"));
    }
    if f.node.is_some() || f.rejoin.is_some() || f.seconds.is_some() {
        return Err("`node`, `rejoin` and `seconds` do not apply to kind = \"link_down\"".into());
    }
    match f.until {
        Some(u) if u > f.at && u <= total => Ok(()),
        other => Err(format!(
            "kind = \"link_down\" needs `until` after at = {} and at most {total}, got {other:?}",
            f.at
        )),
    }
}

fn kind_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Leave => "leave",
        FaultKind::Crash => "crash",
        FaultKind::Pause => "pause",
        FaultKind::LinkDown => "link_down",
    }
}
