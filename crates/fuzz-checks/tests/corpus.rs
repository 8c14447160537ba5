//! Runs each fuzz target's property on its committed corpus (`fuzz/corpus/TARGET/`): the seeds,
//! and every input a fuzzing run found worth keeping. A fuzz-found bug stays fixed.

use std::path::Path;

#[test]
fn every_corpus_input_holds_its_property() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, check) in dprox_fuzz_checks::TARGETS {
        let dir = root.join(name);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            check(&data);
            n += 1;
        }
        assert!(n >= 5, "{name}: only {n} corpus inputs in {}", dir.display());
    }
}
