//! The properties the fuzz targets in `fuzz/` check, as plain functions over any bytes, so that
//! each crash input can become a regression test (`tests/fuzz_regressions.rs`). Each returns
//! normally or panics naming the property that failed. Not part of the supported API.

use crate::analysis::check::{CheckReport, check_source};
use crate::analysis::params::{ParamSpec, param_specs};
use crate::front::fmt::format_source;
use crate::io::budget::Limits;
use crate::io::input::{decode_image_bytes, npy_from_bytes, resize_and_crop};
use crate::io::weights::load_safetensors_bytes;
use std::sync::OnceLock;

/// `cnnc check` on any text: no panic, whatever the input.
pub fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check_source(text, "fuzz", None);
    }
}

/// What a check says, in a form that does not depend on layout: layer names, totals, and each
/// diagnostic's code and message.
fn meaning(r: &CheckReport) -> (Option<(Vec<String>, u64, u64)>, Vec<(String, String)>) {
    let checked = r
        .checked
        .as_ref()
        .map(|c| (c.network.nodes.iter().map(|n| n.name.clone()).collect(), c.totals.params, c.totals.macs));
    (checked, r.diagnostics.iter().map(|d| (d.code.to_string(), d.message.clone())).collect())
}

/// `cnnc fmt`'s properties: what it formats parses again, formatting twice changes nothing,
/// and the formatted file has the same layers, names, costs and diagnostics.
pub fn fmt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(once) = format_source(text) else { return };
    let twice = format_source(&once).unwrap_or_else(|_| panic!("formatted output does not parse:\n{once}"));
    assert_eq!(once, twice, "fmt is not idempotent");
    let (a, b) = (check_source(text, "fuzz", None), check_source(&once, "fuzz", None));
    assert_eq!(meaning(&a), meaning(&b), "fmt changed the meaning:\n{text}\n---\n{once}");
}

/// The tensors of a small network with conv, batch norm and fc weights.
fn specs() -> &'static [ParamSpec] {
    static SPECS: OnceLock<Vec<ParamSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let source = "input 3x8x8\nstage a { conv 3x3 4 nobias; bn; relu; gap; flatten; fc 5 }\n";
        let c = check_source(source, "fuzz", None).checked.expect("the fuzz network checks");
        param_specs(&c.network, &c.shapes)
    })
}

/// Loading a safetensors file against a network: an error or validated weights, no panic.
pub fn safetensors(data: &[u8]) {
    if let Ok(loaded) = load_safetensors_bytes(data, "fuzz.safetensors", specs()) {
        for s in specs() {
            assert_eq!(loaded.weights.get(&s.name).len(), s.elements(), "{} has its shape's size", s.name);
        }
    }
}

/// Parsing a `.npy` input: an error or a batch of the network's channels, no panic.
pub fn npy(data: &[u8]) {
    if let Ok(batch) = npy_from_bytes(data, "fuzz.npy", 3) {
        assert_eq!(batch.dim().1, 3, "the channels asked for");
    }
}

/// Decoding and preprocessing an image: an error, or pixels in [0, 1].
pub fn image(data: &[u8]) {
    let limits = Limits { max_pixels: 1 << 20, ..Limits::default() };
    if let Ok(img) = decode_image_bytes(data, "fuzz.img", &limits) {
        for px in resize_and_crop(&img, 12, 16) {
            assert!(px.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v)), "pixel {px:?} out of [0, 1]");
        }
    }
}
