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
            // Intel's tiles, whatever the host: the snapshots must not depend on it.
            let out = cnnc_env(&["compile", &path, "--dump", pass], &[("CNNC_CORES", "intel")]);
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

/// `CNNC_CORES` picks the 1x1 tiles of either profile (`schedule::pointwise_tile`): 2 x 2
/// pixels by 2 blocks (8 accumulators) for Zen, 1 x 3 by 3 blocks (9) for Intel, on a 48-channel
/// layer at 14x14.
#[test]
fn the_core_profile_picks_the_one_by_one_tile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pointwise.cnn");
    std::fs::write(&path, "network pointwise\ninput 16x14x14\nconv 1x1 48\n").unwrap();
    let accumulators = |cores: &str| {
        let out = cnnc_env(&["compile", path.to_str().unwrap(), "--dump", "scheduled"], &[("CNNC_CORES", cores)]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The full tile's accumulators, set to the bias before its reduction loop.
        let kernel = &text[text.find("kernel conv1").expect("the conv kernel")..];
        let tile = &kernel[..kernel.find("for icb").expect("a reduction loop")];
        tile.matches(": f32x4 = bias").count()
    };
    assert_eq!(accumulators("zen"), 8);
    assert_eq!(accumulators("intel"), 9);
}

/// A memory-bound pass runs on every thread from about 12,500 values (`schedule::streamed`: a
/// streamed value counts as 8 multiply-accumulates): DenseNet's pre-activation over 1024x7x7
/// values, 50,176, ran on one thread in 23 us.
#[test]
fn a_small_memory_bound_pass_is_split_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preact.cnn");
    let src =
        "network preact\ninput 1024x7x7\nconv 1x1 1024 nobias\nbranch { }\nbranch { bn; relu; conv 1x1 32 nobias }\n";
    std::fs::write(&path, src).unwrap();
    let out = cnnc(&["compile", path.to_str().unwrap(), "--dump", "scheduled"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let step = text.lines().find(|l| l.starts_with("# step") && l.contains("(bn + relu)")).expect("a bn + relu step");
    assert!(step.ends_with(", parallel"), "{step}");
}

/// A 1x1 convolution followed by an average pool, with nothing but an affine epilogue between
/// them (DenseNet's transition), pools its input first in a step of its own and convolves the
/// pooled map: a quarter of the multiply-accumulates. An activation in between keeps the order,
/// and so does a pooled map too large for the workspace's allowance.
#[test]
fn a_one_by_one_convolution_before_an_average_pool_pools_first() {
    let dir = tempfile::tempdir().unwrap();
    let steps = |src: &str| {
        let path = dir.path().join("transition.cnn");
        std::fs::write(&path, src).unwrap();
        let out = cnnc(&["compile", path.to_str().unwrap(), "--dump", "scheduled"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().filter(|l| l.starts_with("kernel ")).map(str::to_string).collect::<Vec<_>>()
    };
    // 64 -> 32 channels over 8x8: 131,072 multiply-accumulates, 32,768 on the pooled 4x4 map.
    let pooled = steps("network t\ninput 64x8x8\nbn\nrelu\nconv 1x1 32 nobias\nbn\navgpool 2 stride 2\n");
    let at = pooled.iter().position(|k| k.contains("/pool (")).unwrap_or_else(|| panic!("a pool step: {pooled:?}"));
    assert!(pooled[at + 1].ends_with(", 32768 MACs)"), "{pooled:?}");
    let kept = steps("network t\ninput 64x8x8\nconv 1x1 32 nobias\nrelu\navgpool 2 stride 2\n");
    assert!(!kept.iter().any(|k| k.contains("/pool (")), "{kept:?}");
    assert!(kept.iter().any(|k| k.ends_with(", 131072 MACs)")), "{kept:?}");
    // A pooled map over 8 MiB (64 x 256 x 256 floats: 16 MiB) is not written to the workspace.
    let large = steps("network t\ninput 64x512x512\nconv 1x1 8 nobias\navgpool 2 stride 2\n");
    assert!(!large.iter().any(|k| k.contains("/pool (")), "{large:?}");
}

/// A 1x1 convolution whose maps have no halo and whose register tile does not divide them reads
/// and writes them as one row (`conv::group::flatten_pointwise`): 17x17 becomes 1x289. A map
/// with a halo (read by a padded 3x3) keeps its rows, and so does one the tile divides.
#[test]
fn a_one_by_one_convolution_on_an_odd_map_runs_on_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let layouts = |src: &str, kernel: &str| {
        let path = dir.path().join("rows.cnn");
        std::fs::write(&path, src).unwrap();
        let out = cnnc(&["compile", path.to_str().unwrap(), "--dump", "scheduled"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = text.find(&format!("kernel {kernel} ")).unwrap_or_else(|| panic!("kernel {kernel}"));
        text[at..].lines().skip(1).take_while(|l| l.starts_with("  buf")).map(str::to_string).collect::<Vec<_>>()
    };
    let flat = layouts("network t\ninput 64x17x17\nconv 1x1 32\nconv 1x1 16\n", "conv1");
    assert!(flat[0].contains("64x1x289") && flat[3].contains("32x1x289"), "{flat:?}");
    let halo = layouts("network t\ninput 64x17x17\nconv 1x1 32\nconv 3x3 16\n", "conv1");
    assert!(halo[3].contains("32x17x17"), "{halo:?}");
    let even = layouts("network t\ninput 64x16x16\nconv 1x1 32\nconv 1x1 16\n", "conv1");
    assert!(even[0].contains("64x16x16"), "{even:?}");
}

/// On Zen the Winograd products loop over register tiles outside channel tiles; on Intel the
/// channel tiles are outside.
#[test]
fn the_core_profile_orders_the_winograd_products() {
    let dir = tempfile::tempdir().unwrap();
    let order = |size: u32, cores: &str| {
        let path = dir.path().join(format!("wino{size}.cnn"));
        std::fs::write(&path, format!("network wino\ninput 128x{size}x{size}\nconv 3x3 128 pad 1\n")).unwrap();
        let out = cnnc_env(&["compile", path.to_str().unwrap(), "--dump", "scheduled"], &[("CNNC_CORES", cores)]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("winograd F(4x4,3x3)"), "{size}: not Winograd F(4x4)");
        text.contains("register tiles outside channel tiles")
    };
    assert!(order(14, "zen"));
    assert!(!order(14, "intel"));
    assert!(order(56, "zen"));
    assert!(!order(56, "intel"));
}

/// On Zen the input values of 1x1 tiles and of the Winograd products, each feeding two FMAs,
/// are `broadcast` statements (one `vbroadcastss` from memory each); direct tiles and Intel's
/// keep `splat`s of loads.
#[test]
fn the_core_profile_broadcasts_one_by_one_and_winograd_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let broadcasts = |name: &str, layer: &str, cores: &str| {
        let path = dir.path().join(format!("{name}.cnn"));
        std::fs::write(&path, format!("network {name}\ninput 128x28x28\n{layer}\n")).unwrap();
        let out = cnnc_env(&["compile", path.to_str().unwrap(), "--dump", "scheduled"], &[("CNNC_CORES", cores)]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (folded, splats) = (text.matches("= broadcast(").count(), text.matches("= splat(in[").count());
        assert!(folded == 0 || splats == 0, "{name} {cores}: both forms");
        folded
    };
    assert!(broadcasts("pointwise", "conv 1x1 128", "zen") > 0);
    assert!(broadcasts("winograd", "conv 3x3 128 pad 1", "zen") > 0);
    assert_eq!(broadcasts("direct", "conv 7x7 128 pad 3", "zen"), 0);
    assert_eq!(broadcasts("pointwise", "conv 1x1 128", "intel"), 0);
    assert_eq!(broadcasts("winograd", "conv 3x3 128 pad 1", "intel"), 0);
}
