//! `dprox deploy kubernetes`: one manifest, `dprox.yaml`: a ConfigMap with the config, a Secret
//! per identity kind (the coordinator's, the nodes'), the coordinator as a Deployment and
//! Service, the nodes as an Indexed Job (each pod's id is its completion index) behind a headless
//! Service (pod `dprox-node-I` reached at `dprox-node-I.dprox-nodes`), resource requests, and
//! probes on the metrics endpoint. Data files ship in the ConfigMap (binaryData): keep them small,
//! or mount a volume at /dprox/data instead.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Args, Bundle, MOUNT, NodeSpec, coordinator_args, flow, node_args, ports};

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() { T[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// A Secret holding the files of `dir`.
fn secret(y: &mut String, name: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let _ = writeln!(y, "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\ndata:");
    let mut files: Vec<_> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let key = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let _ = writeln!(y, "  {key}: {}", base64(&std::fs::read(&f)?));
    }
    Ok(())
}

/// The ConfigMap: the config, and the data files as binary data.
fn config_map(y: &mut String, b: &Bundle) -> anyhow::Result<()> {
    let config = std::fs::read_to_string(b.dir.join("config.toml"))?;
    let _ = writeln!(y, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dprox-config\ndata:");
    let _ = writeln!(y, "  config.toml: |");
    for line in config.lines() {
        let _ = writeln!(y, "    {line}");
    }
    let _ = writeln!(y, "binaryData:");
    let mut files: Vec<_> = std::fs::read_dir(b.dir.join("data"))?.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let key = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let _ = writeln!(y, "  {key}: {}", base64(&std::fs::read(&f)?));
    }
    Ok(())
}

/// The volumes and mounts of a pod: the config and data (from the ConfigMap), results
/// (an emptyDir), and a Secret's TLS files.
fn volumes(tls: Option<&str>) -> (String, String) {
    let mut mounts = format!(
        "        volumeMounts:\n\
         \x20         - {{name: config, mountPath: {MOUNT}/config.toml, subPath: config.toml}}\n\
         \x20         - {{name: config, mountPath: {MOUNT}/data}}\n\
         \x20         - {{name: run, mountPath: {MOUNT}/run}}\n"
    );
    let mut vols = "      volumes:\n        - {name: config, configMap: {name: dprox-config}}\n        - {name: run, emptyDir: {}}\n"
        .to_string();
    if let Some(secret) = tls {
        let _ = writeln!(mounts, "          - {{name: tls, mountPath: {MOUNT}/tls, readOnly: true}}");
        let _ = writeln!(vols, "        - {{name: tls, secret: {{secretName: {secret}}}}}");
    }
    (mounts, vols)
}

/// The container of a pod.
fn container(name: &str, image: &str, args: &[String], ports_: &[(&str, u16)], cpu: &str) -> String {
    let mut c = format!(
        "      containers:\n      - name: {name}\n        image: {image}\n        args: {}\n        ports:\n",
        flow(args)
    );
    for (n, p) in ports_ {
        let _ = writeln!(c, "          - {{name: {n}, containerPort: {p}}}");
    }
    let _ = write!(
        c,
        "        resources:\n          requests: {{cpu: \"{cpu}\", memory: 512Mi}}\n          limits: {{memory: 2Gi}}\n\
         \x20       readinessProbe:\n          httpGet: {{path: /metrics, port: {m}}}\n          periodSeconds: 5\n\
         \x20       livenessProbe:\n          httpGet: {{path: /metrics, port: {m}}}\n          periodSeconds: 10\n          failureThreshold: 6\n\
         \x20       securityContext: {{runAsNonRoot: true, runAsUser: 10001, allowPrivilegeEscalation: false}}\n",
        m = ports::METRICS
    );
    c
}

/// Writes `dprox.yaml` and `prometheus.yml`.
pub fn write(b: &Bundle, args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let n = b.run.n();
    let mut y = format!(
        "# The cluster of run `{}`, written by `dprox deploy kubernetes`.\n# kubectl apply -f dprox.yaml\n",
        b.run.name()
    );
    config_map(&mut y, b)?;
    let tls = b.tls && !args.insecure;
    if tls {
        secret(&mut y, "dprox-tls-coordinator", &b.dir.join("tls/coordinator"))?;
        secret(&mut y, "dprox-tls-nodes", &b.dir.join("tls/nodes"))?;
    }
    let (mounts, vols) = volumes(tls.then_some("dprox-tls-coordinator"));
    let mut cargs = coordinator_args(b, args.insecure);
    if tls {
        // The Secret is mounted at MOUNT/tls.
        let i = cargs.iter().position(|a| a == "--tls-dir").expect("tls args") + 1;
        cargs[i] = format!("{MOUNT}/tls");
    }
    let cports = [("grpc", ports::COORDINATOR), ("status", ports::STATUS), ("metrics", ports::METRICS)];
    let _ = write!(
        y,
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: dprox-coordinator\n  labels: {{app: dprox, role: coordinator}}\n\
         spec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: dprox, role: coordinator}}\n  template:\n    metadata:\n      labels: {{app: dprox, role: coordinator}}\n    spec:\n{}{mounts}{vols}",
        container("coordinator", &args.image, &cargs, &cports, "1")
    );
    let _ = write!(
        y,
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: dprox-coordinator\nspec:\n  selector: {{app: dprox, role: coordinator}}\n  ports:\n\
         \x20   - {{name: grpc, port: {}}}\n    - {{name: status, port: {}}}\n    - {{name: metrics, port: {}}}\n",
        ports::COORDINATOR,
        ports::STATUS,
        ports::METRICS
    );
    let _ = write!(
        y,
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: dprox-nodes\nspec:\n  clusterIP: None\n  selector: {{app: dprox, role: node}}\n  ports:\n\
         \x20   - {{name: gossip, port: {}}}\n    - {{name: metrics, port: {}}}\n",
        ports::GOSSIP,
        ports::METRICS
    );
    let coordinator = format!("dprox-coordinator:{}", ports::COORDINATOR);
    // The pod's host name is dprox-node-INDEX; the headless Service's subdomain makes
    // dprox-node-INDEX.dprox-nodes resolvable (Kubernetes expands $(JOB_COMPLETION_INDEX)).
    let advertise = format!("dprox-node-$(JOB_COMPLETION_INDEX).dprox-nodes:{}", ports::GOSSIP);
    let spec = NodeSpec {
        id: None,
        advertise: Some(advertise),
        coordinator: &coordinator,
        tls: tls.then(|| format!("{MOUNT}/tls")),
    };
    let nargs = node_args(b, spec);
    let (mounts, vols) = volumes(tls.then_some("dprox-tls-nodes"));
    let nports = [("gossip", ports::GOSSIP), ("metrics", ports::METRICS)];
    let _ = write!(
        y,
        "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: dprox-node\n  labels: {{app: dprox, role: node}}\n\
         spec:\n  completionMode: Indexed\n  completions: {n}\n  parallelism: {n}\n  backoffLimit: 0\n  template:\n    metadata:\n      labels: {{app: dprox, role: node}}\n\
         \x20   spec:\n      subdomain: dprox-nodes\n      restartPolicy: Never\n{}{mounts}{vols}",
        container("node", &args.image, &nargs, &nports, "1")
    );
    let manifest = b.dir.join("dprox.yaml");
    std::fs::write(&manifest, y)?;
    let targets: Vec<String> = std::iter::once(format!("dprox-coordinator:{}", ports::METRICS))
        .chain((0..n).map(|i| format!("dprox-node-{i}.dprox-nodes:{}", ports::METRICS)))
        .collect();
    let prom = b.dir.join("prometheus.yml");
    std::fs::write(&prom, super::compose::prometheus(&targets))?;
    Ok(vec![manifest, prom])
}
