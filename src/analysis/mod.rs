//! The analyses of a layer graph: shapes (`infer`), costs, the weight list (`params`), fusion
//! groups and the memory plan, design lints, and the checker pipeline that runs them (`check`);
//! with the diagnostics they report (`diag`, `codes`).

pub(crate) mod check;
pub(crate) mod codes;
pub(crate) mod cost;
pub(crate) mod diag;
pub(crate) mod fusion;
pub(crate) mod infer;
pub(crate) mod lint;
pub(crate) mod memplan;
pub(crate) mod params;
