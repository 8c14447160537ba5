//! Partitioners: coverage, sizes, the label-skew class assignment, and the empty-node errors.

use dprox_data::{
    DataError, Dataset, Features, PartitionStats, Partitioner, label_skew_classes, partition,
    partition_dirichlet, partition_iid, partition_label_skew,
};
use ndarray::Array2;

/// `per_class` samples of each of `classes` classes (sample i has class i mod classes); the
/// single feature is the sample index, so subsets can be traced.
fn balanced(classes: usize, per_class: usize) -> Dataset {
    let n = classes * per_class;
    Dataset {
        features: Features::Dense(Array2::from_shape_fn((n, 1), |(i, _)| i as f32)),
        targets: (0..n).map(|i| (i % classes) as f32).collect(),
        classes: Some(classes),
    }
}

/// Every index in `0..len` appears exactly once and every part is sorted and non-empty.
fn assert_exact_cover(parts: &[Vec<usize>], len: usize) {
    let mut seen = vec![0u32; len];
    for p in parts {
        assert!(!p.is_empty());
        assert!(p.windows(2).all(|w| w[0] < w[1]), "part not sorted: {p:?}");
        p.iter().for_each(|&i| seen[i] += 1);
    }
    assert!(seen.iter().all(|&s| s == 1), "not an exact cover");
}

#[test]
fn iid_sizes_differ_by_at_most_one_and_cover_everything() {
    let parts = partition_iid(103, 10, 1).unwrap();
    let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![11, 11, 11, 10, 10, 10, 10, 10, 10, 10]);
    assert_exact_cover(&parts, 103);
    assert_eq!(parts, partition_iid(103, 10, 1).unwrap());
    assert_ne!(parts, partition_iid(103, 10, 2).unwrap());
    assert_eq!(partition_iid(5, 5, 0).unwrap().iter().map(Vec::len).collect::<Vec<_>>(), vec![1; 5]);

    let e = partition_iid(10, 0, 1).unwrap_err();
    assert!(e.to_string().contains("0 nodes"), "{e}");
    let e = partition_iid(3, 4, 1).unwrap_err();
    assert!(e.to_string().contains("3 samples over 4 nodes"), "{e}");
}

#[test]
fn label_skew_ten_classes_five_nodes_gives_i_and_nine_minus_i() {
    let data = balanced(10, 20);
    let parts = partition_label_skew(&data, 5, 2, 3).unwrap();
    assert_exact_cover(&parts, data.len());
    let stats = PartitionStats::new(&data, &parts);
    for i in 0..5 {
        assert_eq!(stats.classes_of(i), vec![i, 9 - i], "node {i}");
        assert_eq!(stats.sizes[i], 40);
    }
    assert_eq!(parts, partition_label_skew(&data, 5, 2, 3).unwrap());
    assert_eq!(parts, partition(&data, 5, Partitioner::LabelSkew { classes_per_node: 2 }, 3).unwrap());
}

#[test]
fn label_skew_eight_nodes_shares_middle_classes() {
    assert_eq!(label_skew_classes(8, 10, 2)[2], vec![2, 7]);
    let data = balanced(10, 20);
    let parts = partition_label_skew(&data, 8, 2, 0).unwrap();
    // Shared classes are dealt out in a seeded order.
    assert_ne!(parts, partition_label_skew(&data, 8, 2, 1).unwrap());
    assert_exact_cover(&parts, data.len());
    let stats = PartitionStats::new(&data, &parts);
    for i in 0..8 {
        assert_eq!(stats.classes_of(i), vec![i.min(9 - i), i.max(9 - i)], "node {i}");
    }
    // Classes 0, 1, 8, 9 have one holder; 2..=7 have two, so their 20 samples split 10/10.
    assert_eq!(stats.class_counts[0][0], 20);
    assert_eq!(stats.class_counts[0][9], 20);
    assert_eq!(stats.class_counts[2][2], 10);
    assert_eq!(stats.class_counts[2][7], 10);
    assert_eq!(stats.class_counts[7][7], 10);
    // Four classes per node, duplicates counted once.
    assert_eq!(label_skew_classes(5, 10, 4)[0], vec![0, 4, 5, 9]);
    assert_eq!(label_skew_classes(1, 3, 3)[0], vec![0, 1, 2]);
    assert_eq!(label_skew_classes(1, 2, 2)[0], vec![0, 1]);
}

#[test]
fn label_skew_errors() {
    let data = balanced(10, 20);
    let e = partition_label_skew(&data, 5, 1, 0).unwrap_err();
    assert!(
        matches!(&e, DataError::UncoveredClasses { classes, .. } if *classes == vec![5, 6, 7, 8, 9]),
        "{e}"
    );
    assert!(e.to_string().contains("[5, 6, 7, 8, 9]"), "{e}");
    for k in [0, 11] {
        let e = partition_label_skew(&data, 5, k, 0).unwrap_err();
        assert!(e.to_string().contains(&format!("classes_per_node = {k}")), "{e}");
    }
    let mut reg = data.clone();
    reg.classes = None;
    assert!(matches!(partition_label_skew(&reg, 5, 2, 0).unwrap_err(), DataError::NotClassification { .. }));

    // Class 1 is declared but has no samples: its only holder, node 1, ends up empty.
    let sparse = Dataset { classes: Some(2), targets: vec![0.0; 6], ..balanced(1, 6) };
    let e = partition_label_skew(&sparse, 3, 1, 0).unwrap_err();
    assert!(matches!(e, DataError::EmptyNode { node: 1, .. }));
    assert!(e.to_string().contains("node 1 received no samples (label skew, classes_per_node = 1)"), "{e}");
}

#[test]
fn dirichlet_covers_every_sample_once_and_is_seeded() {
    let data = balanced(10, 100);
    let parts = partition_dirichlet(&data, 10, 0.5, 9).unwrap();
    assert_exact_cover(&parts, data.len());
    assert_eq!(parts, partition_dirichlet(&data, 10, 0.5, 9).unwrap());
    assert_ne!(parts, partition_dirichlet(&data, 10, 0.5, 10).unwrap());
    assert_eq!(parts, partition(&data, 10, Partitioner::Dirichlet { alpha: 0.5 }, 9).unwrap());

    // A large alpha is close to IID: every node gets roughly a tenth of every class.
    let parts = partition_dirichlet(&data, 10, 1000.0, 9).unwrap();
    assert_exact_cover(&parts, data.len());
    let stats = PartitionStats::new(&data, &parts);
    for counts in &stats.class_counts {
        assert!(counts.iter().all(|&c| (3..=17).contains(&c)), "{counts:?}");
    }
    // A small alpha concentrates classes: most (node, class) cells are (nearly) empty. The floor
    // cuts hand the last node the rounding remainder, often one sample of a class.
    let parts = partition_dirichlet(&data, 5, 0.05, 1).unwrap();
    let stats = PartitionStats::new(&data, &parts);
    let tiny_cells = stats.class_counts.iter().flatten().filter(|&&c| c <= 1).count();
    assert!(tiny_cells > 25, "{tiny_cells} of 50 cells hold at most one sample");
}

#[test]
fn dirichlet_errors() {
    let data = balanced(10, 50);
    let e = partition_dirichlet(&data, 50, 0.01, 3).unwrap_err();
    assert!(matches!(e, DataError::EmptyNode { .. }));
    let msg = e.to_string();
    assert!(msg.contains("received no samples (dirichlet alpha = 0.01)"), "{msg}");
    assert!(msg.contains("larger alpha"), "{msg}");
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = partition_dirichlet(&data, 5, alpha, 3).unwrap_err();
        assert!(e.to_string().contains("alpha"), "{e}");
    }
    assert!(partition_dirichlet(&data, 0, 1.0, 3).is_err());
    assert!(partition_dirichlet(&data, 501, 1.0, 3).is_err());
    let mut reg = data;
    reg.classes = None;
    assert!(matches!(partition_dirichlet(&reg, 5, 1.0, 0).unwrap_err(), DataError::NotClassification { .. }));
}

#[test]
fn stats_print_one_line_per_node() {
    let data = balanced(10, 20);
    let parts = partition_label_skew(&data, 5, 2, 3).unwrap();
    let text = PartitionStats::new(&data, &parts).to_string();
    assert_eq!(text.lines().count(), 5);
    assert_eq!(text.lines().next().unwrap(), "node 0: 40 samples; classes 0:20 9:20");
    let mut reg = data;
    reg.classes = None;
    let text = PartitionStats::new(&reg, &partition_iid(200, 2, 0).unwrap()).to_string();
    assert_eq!(text, "node 0: 100 samples\nnode 1: 100 samples\n");
}
