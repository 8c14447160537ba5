//! The bundled font. plotters' ab_glyph text rendering knows only the fonts registered with it, and
//! the machines dprox runs on may have no system fonts at all, so the figure carries its own.

use std::sync::OnceLock;

use crate::PlotError;

/// DejaVu Sans (Bitstream Vera license, `assets/DejaVuSans-LICENSE.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family every text style of the figure asks for.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the bundled font as `sans-serif`, once per process; later calls return the first
/// outcome. Without it, drawing any text fails at run time with `FontUnavailable`.
pub(crate) fn ensure_registered() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, plotters::style::FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}
