//! Holding out a test set.

use crate::dataset::Dataset;
use crate::error::DataError;

/// Stream coordinate of the train/test shuffle, so it never coincides with a partitioner's.
const SPLIT_STREAM: u64 = 0x5350_4c49_5400_0001;

/// Splits `data` into `(train, test)` with a seeded shuffle: the test set gets
/// `round(fraction * len)` samples. Both sides keep the original sample order (the shuffle only
/// decides membership), so a data set sorted by class stays sorted; partitioners and minibatch
/// samplers shuffle on their own.
///
/// `fraction = 0` gives an empty test set. Errors when `fraction` is not in `[0, 1)`, or when
/// `fraction > 0` would leave either side empty.
pub fn split_test(data: &Dataset, fraction: f64, seed: u64) -> Result<(Dataset, Dataset), DataError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(DataError::InvalidArgument(format!("test fraction {fraction} is not in [0, 1)")));
    }
    let len = data.len();
    let n_test = (fraction * len as f64).round() as usize;
    if fraction > 0.0 && (n_test == 0 || n_test >= len) {
        return Err(DataError::InvalidArgument(format!(
            "test fraction {fraction} of {len} samples gives {n_test} test and {} training samples; \
             both sides must be non-empty",
            len - n_test.min(len)
        )));
    }
    let mut perm: Vec<usize> = (0..len).collect();
    dprox_rng::stream(seed, &[SPLIT_STREAM]).shuffle(&mut perm);
    let (test, train) = perm.split_at_mut(n_test);
    test.sort_unstable();
    train.sort_unstable();
    Ok((data.subset(train), data.subset(test)))
}
