//! The long operand of the convolution products: the patch matrix, whose row r holds the k input
//! values under the kernel at output position r. Either stored ([`Stored`], im2col's `cols`) or
//! read in place from the zero-bordered input maps through two offset tables ([`Gathered`]), so
//! that a convolution with a small patch (LeNet's first: 25 values per position, a 25-fold copy
//! of its input) never writes the matrix.

/// Row `r`, value `kk` of a patch matrix, for the kernels.
pub(crate) trait Patches: Copy {
    /// Values per row (the patch).
    fn k(&self) -> usize;

    /// Rows (output positions).
    fn rows(&self) -> usize;

    /// Where row `r` starts: its value `kk` is at `row(r).add(off(kk))`.
    ///
    /// # Safety
    ///
    /// `r < self.rows()`.
    unsafe fn row(&self, r: usize) -> *const f32;

    /// Offset of value `kk < k` from the start of its row.
    fn off(&self, kk: usize) -> usize;

    /// Row `r`'s value `kk` (the portable kernels).
    fn get(&self, r: usize, kk: usize) -> f32;
}

/// A patch matrix stored row after row (rows x k).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stored<'a> {
    cols: &'a [f32],
    k: usize,
}

impl<'a> Stored<'a> {
    /// `cols`, whole rows of `k` values.
    pub(crate) fn new(cols: &'a [f32], k: usize) -> Self {
        assert!(k > 0 && cols.len().is_multiple_of(k), "a patch matrix of rows of {k} values");
        Stored { cols, k }
    }
}

impl Patches for Stored<'_> {
    #[inline]
    fn k(&self) -> usize {
        self.k
    }

    #[inline]
    fn rows(&self) -> usize {
        self.cols.len() / self.k
    }

    #[inline]
    unsafe fn row(&self, r: usize) -> *const f32 {
        // SAFETY (caller): r < rows, so the row lies inside cols.
        unsafe { self.cols.as_ptr().add(r * self.k) }
    }

    #[inline]
    fn off(&self, kk: usize) -> usize {
        kk
    }

    #[inline]
    fn get(&self, r: usize, kk: usize) -> f32 {
        self.cols[r * self.k + kk]
    }
}

/// A patch matrix read in place: row `r`, value `kk` is `data[rows[r] + offs[kk]]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gathered<'a> {
    data: &'a [f32],
    rows: &'a [u32],
    offs: &'a [u32],
}

impl<'a> Gathered<'a> {
    /// The matrix of `rows.len()` rows of `offs.len()` values read from `data`. Panics unless
    /// both tables ascend and the last of each, added, stays inside `data`: then every read of
    /// the kernels does.
    pub(crate) fn new(data: &'a [f32], rows: &'a [u32], offs: &'a [u32]) -> Self {
        let ascending = |t: &[u32]| t.windows(2).all(|w| w[0] <= w[1]);
        assert!(!offs.is_empty() && ascending(rows) && ascending(offs), "offset tables ascend");
        if let Some(&last) = rows.last() {
            let end = last as usize + *offs.last().expect("not empty") as usize;
            assert!(end < data.len(), "the patches lie inside the maps ({end} of {})", data.len());
        }
        Gathered { data, rows, offs }
    }
}

impl Patches for Gathered<'_> {
    #[inline]
    fn k(&self) -> usize {
        self.offs.len()
    }

    #[inline]
    fn rows(&self) -> usize {
        self.rows.len()
    }

    #[inline]
    unsafe fn row(&self, r: usize) -> *const f32 {
        // SAFETY (caller): r < rows; every row start is inside data (checked in `new`).
        unsafe { self.data.as_ptr().add(*self.rows.get_unchecked(r) as usize) }
    }

    #[inline]
    fn off(&self, kk: usize) -> usize {
        self.offs[kk] as usize
    }

    #[inline]
    fn get(&self, r: usize, kk: usize) -> f32 {
        self.data[self.rows[r] as usize + self.offs[kk] as usize]
    }
}
