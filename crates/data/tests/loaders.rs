//! Loaders: exact parsed values for small files written to a temp dir, and every error message.

use std::io::Write;
use std::path::{Path, PathBuf};

use dprox_data::{
    CsvOptions, DataError, Features, LabelColumn, LibsvmOptions, Task, load_csv, load_idx, load_libsvm,
};
use flate2::Compression;
use flate2::write::GzEncoder;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn dense(f: &Features) -> Vec<Vec<f32>> {
    match f {
        Features::Dense(m) => m.rows().into_iter().map(|r| r.to_vec()).collect(),
        Features::Sparse(_) => panic!("expected dense features"),
    }
}

/// The error's message, which must contain every one of `parts`.
fn assert_err_contains(err: DataError, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

fn opts(label_column: LabelColumn, classes: Option<usize>, task: Task) -> CsvOptions {
    CsvOptions { label_column, classes, task }
}

#[test]
fn csv_header_label_last_whitespace_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.csv", b"x1, x2 ,label\n1,2,0\n 3.5 , -4 , 2 \n\n5,6e-1,1\n");
    let d = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(dense(&d.features), vec![vec![1.0, 2.0], vec![3.5, -4.0], vec![5.0, 0.6]]);
    assert_eq!(d.targets, vec![0.0, 2.0, 1.0]);
    assert_eq!(d.classes, Some(3));
    assert_eq!(d.class_counts(), vec![1, 1, 1]);
}

#[test]
fn csv_gzip_detected_by_content_label_first_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"1,10,11\r\n0,20,21\r\n";
    // Gzipped but named .csv, and plain but named .gz: the magic bytes decide.
    let gz = write(dir.path(), "b.csv", &gzip(text));
    let plain = write(dir.path(), "c.csv.gz", text);
    let o = opts(LabelColumn::First, Some(4), Task::Classification);
    for p in [gz, plain] {
        let d = load_csv(&p, &o).unwrap();
        assert_eq!(dense(&d.features), vec![vec![10.0, 11.0], vec![20.0, 21.0]]);
        assert_eq!(d.targets, vec![1.0, 0.0]);
        assert_eq!(d.classes, Some(4));
    }
}

/// Integer fields are read as they are scanned; every other field goes through the standard
/// parser. Both must give the standard library's value, at every boundary of the fast path.
#[test]
fn csv_integer_fields_read_while_scanning_equal_the_standard_parse() {
    let dir = tempfile::tempdir().unwrap();
    let fields = ["0012", "1234567", "12345678", " 7", "8 ", "3.5", "1e2", "+4", "9999999", "0", "1"];
    let text = format!("{}\n{}\n", fields.join(","), ["5"; 11].join(","));
    let p = write(dir.path(), "ints.csv", text.as_bytes());
    let d = load_csv(&p, &CsvOptions::default()).unwrap();
    let want: Vec<f32> = fields[..10].iter().map(|f| f.trim().parse().unwrap()).collect();
    assert_eq!(dense(&d.features)[0], want);
    assert_eq!(d.targets, vec![1.0, 5.0]);
    for (name, text, column) in
        [("empty.csv", "1,2,0\n1,,0\n", "column 2"), ("end.csv", "1,2,0\n1,2,\n", "column 3")]
    {
        let p = write(dir.path(), name, text.as_bytes());
        let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
        assert_err_contains(e, &[name, &format!("line 2, {column}"), "``"]);
    }
}

#[test]
fn csv_regression_keeps_real_targets() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "r.csv", b"0.25,1\n-3.5,2\n");
    let d = load_csv(&p, &opts(LabelColumn::First, None, Task::Regression)).unwrap();
    assert_eq!(d.targets, vec![0.25, -3.5]);
    assert_eq!(d.classes, None);
    assert_eq!(dense(&d.features), vec![vec![1.0], vec![2.0]]);
    // An integer label written as 2.0 is a class index too.
    let p = write(dir.path(), "c.csv", b"1,2.0\n");
    assert_eq!(load_csv(&p, &CsvOptions::default()).unwrap().targets, vec![2.0]);
}

#[test]
fn csv_errors_name_path_line_column_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let def = CsvOptions::default();

    let missing = d.join("nope.csv");
    let e = load_csv(&missing, &def).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }));
    assert_err_contains(e, &[&missing.display().to_string(), "not found"]);

    let p = write(d, "fields.csv", b"h1,h2,h3\n1,2,0\n3,0\n");
    let e = load_csv(&p, &def).unwrap_err();
    assert_err_contains(e, &["fields.csv", "line 3", "has 2 fields, expected 3", "line 2"]);

    let p = write(d, "num.csv", b"1,2,0\n3,x1y,0\n");
    assert_err_contains(load_csv(&p, &def).unwrap_err(), &["num.csv", "line 2, column 2", "`x1y`"]);

    let p = write(d, "nan.csv", b"1,2,0\nNaN,2,0\n");
    assert_err_contains(
        load_csv(&p, &def).unwrap_err(),
        &["nan.csv", "line 2, column 1", "NaN", "not finite"],
    );
    let p = write(d, "inf.csv", b"1,-inf,0\n");
    assert_err_contains(load_csv(&p, &def).unwrap_err(), &["line 1, column 2", "-inf"]);

    let mut rows = String::from("f,label\n");
    for label in [0, 1, 2, 9, 3] {
        rows.push_str(&format!("0.5,{label}\n"));
    }
    rows.push_str("0.5,11\n"); // line 7
    let p = write(d, "range.csv", rows.as_bytes());
    let e = load_csv(&p, &opts(LabelColumn::Last, Some(10), Task::Classification)).unwrap_err();
    assert_err_contains(e, &["range.csv", "label 11 at line 7 is outside the class range 0..10"]);
    // Without `classes` the same file is fine and has max + 1 = 12 classes.
    assert_eq!(load_csv(&p, &def).unwrap().classes, Some(12));

    let p = write(d, "frac.csv", b"1,0\n1,1.5\n");
    assert_err_contains(
        load_csv(&p, &def).unwrap_err(),
        &["frac.csv", "label `1.5` at line 2", "non-negative integer"],
    );
    let p = write(d, "neg.csv", b"1,-1\n");
    assert_err_contains(load_csv(&p, &def).unwrap_err(), &["label `-1` at line 1"]);

    let p = write(d, "empty.csv", b"");
    assert_err_contains(load_csv(&p, &def).unwrap_err(), &["empty.csv", "no data rows"]);
    let p = write(d, "header_only.csv", b"a,b\n\n");
    assert!(matches!(load_csv(&p, &def).unwrap_err(), DataError::Empty { .. }));

    let p = write(d, "reg.csv", b"1,2\n");
    let e = load_csv(&p, &opts(LabelColumn::Last, Some(3), Task::Regression)).unwrap_err();
    assert_err_contains(e, &["reg.csv", "regression"]);

    let p = write(d, "corrupt.csv", &gzip(b"1,2\n")[..12]);
    assert!(matches!(load_csv(&p, &def).unwrap_err(), DataError::Io { .. }));
}

#[test]
fn libsvm_sparse_values_and_pm1_labels() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"# a comment line\n+1 1:0.5 3:2\n-1 2:-1.5 # trailing comment\n\n+1\n";
    let p = write(dir.path(), "a.svm", text);
    let d = load_libsvm(&p, &LibsvmOptions::default()).unwrap();
    let Features::Sparse(c) = &d.features else { panic!("expected sparse") };
    assert_eq!((c.rows, c.cols), (3, 3));
    assert_eq!(c.indptr, vec![0, 2, 3, 3]);
    assert_eq!(c.indices, vec![0, 2, 1]);
    assert_eq!(c.values, vec![0.5, 2.0, -1.5]);
    assert_eq!(d.targets, vec![1.0, 0.0, 1.0]);
    assert_eq!(d.classes, Some(2));

    // Gzip, num_features wider than the file, qid tokens skipped.
    let p = write(dir.path(), "b.svm", &gzip(b"-1 qid:3 2:1 5:1\n1 1:1\n"));
    let o = LibsvmOptions { num_features: Some(10), ..Default::default() };
    let d = load_libsvm(&p, &o).unwrap();
    let Features::Sparse(c) = &d.features else { panic!("expected sparse") };
    assert_eq!((c.rows, c.cols), (2, 10));
    assert_eq!(c.indices, vec![1, 4, 0]);
    assert_eq!(d.targets, vec![0.0, 1.0]);
}

#[test]
fn libsvm_multiclass_mapping_and_regression() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.svm", b"3 1:1\n1 1:2\n2 1:3\n3 1:4\n");
    let d = load_libsvm(&p, &LibsvmOptions::default()).unwrap();
    assert_eq!(d.targets, vec![2.0, 0.0, 1.0, 2.0]);
    assert_eq!(d.classes, Some(3));
    let o = LibsvmOptions { classes: Some(5), ..Default::default() };
    assert_eq!(load_libsvm(&p, &o).unwrap().classes, Some(5));
    let o = LibsvmOptions { classes: Some(2), ..Default::default() };
    assert_err_contains(
        load_libsvm(&p, &o).unwrap_err(),
        &["m.svm", "3 distinct labels", "1, 2, 3", "classes = 2"],
    );

    let o = LibsvmOptions { task: Task::Regression, ..Default::default() };
    let p = write(dir.path(), "r.svm", b"0.25 1:1\n-7.5 2:1\n");
    let d = load_libsvm(&p, &o).unwrap();
    assert_eq!(d.targets, vec![0.25, -7.5]);
    assert_eq!(d.classes, None);
    assert_err_contains(
        load_libsvm(&p, &LibsvmOptions::default()).unwrap_err(),
        &["r.svm", "label `0.25` at line 1"],
    );
}

#[test]
fn libsvm_errors_name_line_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let def = LibsvmOptions::default();
    let cases: [(&[u8], &[&str]); 8] = [
        (b"1 1:1\n0 0:1\n", &["line 2", "`0:1`", "1-based"]),
        (b"1 3:1 2:1\n", &["line 1", "`2:1`", "index 2 does not follow 3"]),
        (b"1 1:1 1:2\n", &["`1:2`", "index 1 does not follow 1"]),
        (b"# c\n1 a:1\n", &["line 2", "`a:1`", "index `a`"]),
        (b"1 2:nan\n", &["line 1", "`2:nan`", "not finite"]),
        (b"1 2:zz\n", &["`2:zz`", "value `zz` is not a number"]),
        (b"1 2\n", &["`2`", "index:value"]),
        (b"nan 1:1\n", &["`nan`", "label"]),
    ];
    for (i, (text, parts)) in cases.iter().enumerate() {
        let p = write(dir.path(), &format!("e{i}.svm"), text);
        let mut all = vec![format!("e{i}.svm")];
        all.extend(parts.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_err_contains(load_libsvm(&p, &def).unwrap_err(), &all);
    }
    let p = write(dir.path(), "wide.svm", b"1 1:1\n1 30:1\n");
    let o = LibsvmOptions { num_features: Some(20), ..Default::default() };
    assert_err_contains(
        load_libsvm(&p, &o).unwrap_err(),
        &["wide.svm", "line 2", "`30:1`", "num_features = 20"],
    );
    let p = write(dir.path(), "empty.svm", b"# only a comment\n\n");
    assert_err_contains(load_libsvm(&p, &def).unwrap_err(), &["empty.svm", "no data rows"]);
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0803, n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = 0x0801u32.to_be_bytes().to_vec();
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

#[test]
fn idx_reads_pixels_and_labels_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = vec![0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 128];
    let img = idx_images(3, 2, 2, &pixels);
    let lab = idx_labels(&[7, 0, 9]);
    let ip = write(dir.path(), "img", &img);
    let lp = write(dir.path(), "lab", &lab);
    let igz = write(dir.path(), "img.gz", &gzip(&img));
    for images in [&ip, &igz] {
        let d = load_idx(images, &lp).unwrap();
        assert_eq!(
            dense(&d.features),
            vec![vec![0.0, 255.0, 1.0, 2.0], vec![3.0, 4.0, 5.0, 6.0], vec![7.0, 8.0, 9.0, 128.0]]
        );
        assert_eq!(d.targets, vec![7.0, 0.0, 9.0]);
        assert_eq!(d.classes, Some(10));
    }
}

#[test]
fn idx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = idx_images(3, 2, 2, &[0; 12]);
    let ip = write(dir.path(), "img", &img);
    let lp = write(dir.path(), "lab", &idx_labels(&[1, 2, 3]));

    // Files swapped: the labels magic is printed in hex.
    let e = load_idx(&lp, &ip).unwrap_err();
    assert_err_contains(e, &["lab", "0x00000801", "expected 0x00000803"]);

    let short = write(dir.path(), "lab2", &idx_labels(&[1, 2]));
    let e = load_idx(&ip, &short).unwrap_err();
    assert_err_contains(e, &["img holds 3 images", "lab2 holds 2 labels"]);

    let cut = write(dir.path(), "cut", &img[..20]);
    assert_err_contains(load_idx(&cut, &lp).unwrap_err(), &["cut", "truncated", "needs 28 bytes", "has 20"]);
    let tiny = write(dir.path(), "tiny", &img[..6]);
    assert_err_contains(load_idx(&tiny, &lp).unwrap_err(), &["tiny", "truncated"]);

    let bad = write(dir.path(), "bad", &idx_labels(&[1, 12, 3]));
    assert_err_contains(load_idx(&ip, &bad).unwrap_err(), &["bad", "label 12", "0..10"]);
    assert!(matches!(load_idx(dir.path().join("none"), &lp).unwrap_err(), DataError::NotFound { .. }));
}

#[test]
fn mnist_subset_loads() {
    // The bundled data set, committed in the repository (so this runs on every clone).
    let path = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist_5k.csv.gz");
    let start = std::time::Instant::now();
    let d = load_csv(path, &CsvOptions::default()).unwrap();
    println!("parsed {} in {:?}", path.display(), start.elapsed());
    assert_eq!(d.len(), 5000);
    assert_eq!(d.num_features(), 784);
    assert_eq!(d.classes, Some(10));
    assert_eq!(d.class_counts(), vec![500; 10]);
    let Features::Dense(m) = &d.features else { panic!("expected dense") };
    assert!(m.iter().all(|&x| (0.0..=255.0).contains(&x) && x.fract() == 0.0));
}
