//! Membership epochs and the fault schedule: the graph induced on the members, repaired with the
//! fewest edges, weights by the configured rule; and the schedule's checks.

use dprox_config::parse;
use dprox_prepare::{ChangeKind, PrepareError, Prepared};

fn run(topology: &str, faults: &str) -> Result<Prepared, PrepareError> {
    let text = format!(
        r#"
        [run]
        algorithm = "dproxsgt"
        iterations = 300
        [topology]
        {topology}
        [data]
        synthetic = {{ kind = "least_squares", samples = 400, features = 5 }}
        [model]
        kind = "least_squares"
        [optimizer]
        lr = 0.1
        {faults}
        "#
    );
    Prepared::new(parse(&text, "m.toml".as_ref())?, ".".as_ref(), "m".into())
}

#[test]
fn a_ring_losing_two_nodes_is_reconnected_through_a_lost_nodes_neighbours() {
    let r = run("kind = \"ring\"\nnodes = 8", "").unwrap();
    // One node gone: a path, still connected, nothing added.
    let e = r.plan_epoch(1, 100, &[0, 1, 2, 4, 5, 6, 7], &[]).unwrap();
    assert_eq!(e.added, []);
    assert_eq!(e.edges, [(0, 1), (0, 7), (1, 2), (4, 5), (5, 6), (6, 7)]);
    assert_eq!(e.peers(2), [1]);
    // Two gone: {0, 1, 2, 7} and {4, 5}; the neighbours of node 3 (2 and 4) are joined.
    let e = r.plan_epoch(2, 150, &[7, 0, 1, 2, 4, 5], &[]).unwrap();
    assert_eq!(e.members, [0, 1, 2, 4, 5, 7]);
    assert_eq!(e.added, [(2, 4)]);
    assert_eq!(e.peers(4), [2, 5]);
    // Metropolis on the repaired path 5-4-2-1-0-7: rows sum to 1; an end keeps 2/3 itself.
    for (k, row) in e.rows.iter().enumerate() {
        let sum: f64 = row.iter().map(|r| r.1).sum();
        assert!((sum - 1.0).abs() < 1e-12, "row of {}: {row:?}", e.members[k]);
    }
    assert_eq!(e.row(5).unwrap(), &[(4, 1.0 / 3.0), (5, 1.0 - 1.0 / 3.0)]);
    assert!(e.spectral_gap > 0.0 && e.spectral_gap < 0.2, "{}", e.spectral_gap);
    assert!(!e.has(3) && e.row(3).is_none() && e.peers(3).is_empty());
}

#[test]
fn a_link_down_removes_the_edge_and_never_adds_it_back() {
    let r = run("kind = \"ring\"\nnodes = 4", "").unwrap();
    let e = r.plan_epoch(1, 50, &[0, 1, 2, 3], &[(1, 0)]).unwrap();
    assert_eq!(e.edges, [(0, 3), (1, 2), (2, 3)]);
    assert_eq!(e.added, []);
    // Two links down cut the ring in two: a repair edge that is not one of the down links.
    let e = r.plan_epoch(1, 50, &[0, 1, 2, 3], &[(0, 1), (2, 3)]).unwrap();
    assert_eq!(e.added.len(), 1);
    assert!(!e.added.contains(&(0, 1)) && !e.added.contains(&(2, 3)), "{:?}", e.added);
}

#[test]
fn the_schedule_lists_its_changes_in_order() {
    let faults = r#"
        [[faults]]
        node = 3
        at = 100
        kind = "leave"
        rejoin = 200
        [[faults]]
        node = 5
        at = 150
        kind = "crash"
        [[faults]]
        link = [1, 0]
        at = 50
        until = 80
        kind = "link_down"
        [[faults]]
        node = 2
        at = 60
        kind = "pause"
        seconds = 2.5
    "#;
    let r = run("kind = \"torus\"\nnodes = 8", faults).unwrap();
    let s: Vec<(u64, usize, ChangeKind)> =
        r.schedule().iter().map(|c| (c.iteration, c.node, c.kind)).collect();
    assert_eq!(
        s,
        [
            (50, 0, ChangeKind::LinkDown),
            (60, 2, ChangeKind::Pause(2.5)),
            (80, 0, ChangeKind::LinkUp),
            (100, 3, ChangeKind::Leave),
            (150, 5, ChangeKind::Crash),
            (200, 3, ChangeKind::Rejoin),
        ]
    );
    assert!(r.schedule().iter().filter(|c| c.kind == ChangeKind::LinkDown).all(|c| c.peer == Some(1)));
}

#[test]
fn bad_fault_entries_are_refused_naming_the_entry() {
    let bad = |f: &str| {
        run("kind = \"ring\"\nnodes = 4", &format!("[[faults]]\n{f}")).map(|_| ()).unwrap_err().to_string()
    };
    assert_eq!(
        bad("node = 9\nat = 10\nkind = \"leave\""),
        "faults[0]: node 9 is not a node of the 4-node topology"
    );
    assert_eq!(
        bad("node = 1\nat = 300\nkind = \"crash\""),
        "faults[0]: at = 300 must be in 1..300 (inside the run's iterations)"
    );
    assert_eq!(bad("at = 10\nkind = \"leave\""), "faults[0]: kind = \"leave\" needs `node`");
    assert_eq!(
        bad("node = 1\nat = 10\nkind = \"leave\"\nrejoin = 5"),
        "faults[0]: rejoin = 5 must be after at = 10 and before the last iteration 300"
    );
    assert_eq!(
        bad("node = 1\nat = 10\nkind = \"pause\""),
        "faults[0]: kind = \"pause\" needs `seconds` in (0, 3600], got None"
    );
    assert_eq!(
        bad("link = [1, 1]\nat = 10\nuntil = 20\nkind = \"link_down\""),
        "faults[0]: link [1, 1] is not a link between two of the 4 nodes"
    );
    assert!(bad("link = [0, 1]\nat = 10\nkind = \"link_down\"").contains("needs `until` after at = 10"));
    assert!(bad("node = 1\nat = 10\nkind = \"lave\"").contains("unknown variant `lave`"));
    let twice = "node = 1\nat = 10\nkind = \"crash\"\n[[faults]]\nnode = 1\nat = 20\nkind = \"leave\"";
    assert_eq!(bad(twice), "faults: node 1 is away from 10 to 300 and cannot fail again at 20");
    let min =
        run("kind = \"ring\"\nnodes = 4", "[cluster]\nmin_nodes = 5").map(|_| ()).unwrap_err().to_string();
    assert_eq!(min, "cluster.min_nodes: must be in 1..=4 (the topology's nodes), got 5");
}

/// `balance`: "speed" splits the total batch by the configured speeds; "throughput" does the same
/// in the simulator (its compute model is the speed), and `balanced_batches` splits it by any
/// weights (the coordinator passes the measured throughputs); full-batch nodes stay out.
#[test]
fn balanced_batches_split_the_total_by_speed_or_by_given_weights() {
    use dprox_core::BatchSize::{Full, Samples};
    let nodes = "[[nodes]]\nid = 3\nspeed = 0.25\n[[nodes]]\nid = 4\nbatch_size = \"full\"";
    let text = |balance: &str| {
        format!(
            r#"
            [run]
            algorithm = "dproxsgt"
            iterations = 10
            balance = "{balance}"
            [topology]
            kind = "ring"
            nodes = 5
            [data]
            synthetic = {{ kind = "least_squares", samples = 400, features = 5 }}
            [model]
            kind = "least_squares"
            [optimizer]
            lr = 0.1
            batch_size = 16
            {nodes}
            "#
        )
    };
    let prepared = |b: &str| {
        Prepared::new(parse(&text(b), "b.toml".as_ref()).unwrap(), ".".as_ref(), "b".into()).unwrap()
    };
    let sizes = |r: &Prepared| (0..5).map(|i| r.batch_size(i)).collect::<Vec<_>>();
    // 4 x 16 = 64 over speeds 1, 1, 1, 0.25: 64 x (1, 1, 1, 0.25) / 3.25 = 19.7 x 3, 4.9.
    let by_speed = vec![Samples(20), Samples(20), Samples(19), Samples(5), Full];
    assert_eq!(sizes(&prepared("speed")), by_speed);
    assert_eq!(sizes(&prepared("throughput")), by_speed, "the simulator balances throughput by speed");
    assert_eq!(sizes(&prepared("none")), vec![Samples(16), Samples(16), Samples(16), Samples(16), Full]);
    let measured = prepared("throughput").balanced_batches(&[100.0, 300.0, 100.0, 100.0, 1.0]);
    assert_eq!(measured, vec![Samples(11), Samples(32), Samples(11), Samples(10), Full]);
}
