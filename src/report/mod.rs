//! What users read: the check table and JSON (`table`), pictures (`draw`: SVG and DOT),
//! convolution filters (`filters`), side-by-side comparisons (`compare`) and timings (`bench`).

pub(crate) mod bench;
pub(crate) mod compare;
pub(crate) mod draw;
pub(crate) mod filters;
pub(crate) mod table;
