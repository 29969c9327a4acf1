//! Golden files for the JIT's passes: the loop IR of small networks after lowering and after
//! scheduling, as `cnnc compile --dump` prints it, pinned by insta snapshots. Each input in
//! `tests/fixtures/jit/` exercises a family of kernels (see its first line). A change to what the
//! JIT generates shows up here as a reviewable diff; bless it with `INSTA_UPDATE=always`.

mod common;
use common::*;

#[test]
fn lowered_and_scheduled_ir_match_their_snapshots() {
    let files = cnn_files("tests/fixtures/jit");
    assert!(files.len() >= 3, "golden inputs exist");
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let path = f.to_string_lossy().into_owned();
        for pass in ["lowered", "scheduled"] {
            let out = cnnc(&["compile", &path, "--dump", pass]);
            assert_eq!(out.status.code(), Some(0), "{path} {pass}: {}", String::from_utf8_lossy(&out.stderr));
            insta::assert_snapshot!(format!("{stem}_{pass}"), String::from_utf8_lossy(&out.stdout));
        }
    }
}

#[test]
fn the_clif_dump_has_fused_multiply_adds() {
    let out = cnnc(&["compile", "examples/digits.cnn", "--dump", "clif"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fma") && text.contains("conv1.1"), "{}", &text[..text.len().min(400)]);
}
