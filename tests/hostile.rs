//! The hostile inputs of the robustness issue, each made small and on the fly: every command
//! ends with exit 0 or 1, a clear message, within an address-space limit of 2 GiB (so a command
//! that tried to allocate its way through would fail here) and a 60-second watchdog (so one
//! that hung would too). Timing itself is not asserted: these are not benchmarks.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnnc-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with every needle in stderr, and no panic.
fn refused(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!e.contains("panicked") && !e.contains("memory allocation"), "{e}");
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in {e}");
    }
}

fn succeeded(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn a_wide_image_is_resized_only_where_the_crop_needs_it() {
    let dir = scratch("wide");
    let png = dir.join("wide.png");
    image::GrayImage::from_pixel(16384, 1, image::Luma([128])).save(&png).unwrap();
    let model = write(&dir, "m.cnn", "input 3x224x224\nconv 3x3 4\ngap\nflatten\nfc 2\n");
    succeeded(&confined(&["run", &model, png.to_str().unwrap()], TWO_GIB));
    // A network whose input is 1 x 100000: the crop is one row of 100,000 columns.
    let model = write(&dir, "wide.cnn", "input 1x1x100000\nconv 1x99999 8 pad valid\ngap\nflatten\nfc 2\n");
    let small = dir.join("small.png");
    image::GrayImage::from_pixel(32, 32, image::Luma([100])).save(&small).unwrap();
    succeeded(&confined(&["run", &model, small.to_str().unwrap()], TWO_GIB));
}

#[test]
fn images_beyond_the_pixel_limit_are_refused_before_decoding() {
    let dir = scratch("pixels");
    let png = dir.join("big.png");
    image::GrayImage::from_pixel(1000, 1000, image::Luma([7])).save(&png).unwrap();
    let args = ["run", "examples/digits.cnn", png.to_str().unwrap(), "--max-pixels", "999999"];
    refused(&confined(&args, TWO_GIB), &["E0302", "1000x1000", "--max-pixels"]);
}

#[test]
fn weights_beyond_the_memory_limit_are_refused_by_every_command() {
    let dir = scratch("weights");
    let model = write(&dir, "huge.cnn", "input 1x1x1\nstage s { conv 1x1 1048576; conv 1x1 1048576 }\n");
    let out = dir.join("k.png");
    for args in [
        vec!["run", &model, "examples/images/digit_3.png"],
        vec!["bench", &model, "--iters", "1"],
        vec!["kernels", &model, "-o", out.to_str().unwrap()],
        vec!["compile", &model],
        vec!["init", &model, "-o", out.to_str().unwrap()],
    ] {
        refused(&confined(&args, TWO_GIB), &["E0301", "s.2.weight", "TiB", "--max-memory"]);
    }
    let fc = write(&dir, "fc.cnn", "input 3x224x224\nstage a { flatten; fc 2147483647 }\n");
    refused(&confined(&["run", &fc, "examples/images/digit_3.png"], TWO_GIB), &["E0301", "a.2.weight"]);
    // --max-memory lowers the limit as well as raising it.
    let digits = ["run", "examples/digits.cnn", "examples/images/digit_3.png", "--max-memory", "64K"];
    refused(&confined(&digits, TWO_GIB), &["E0301", "64.0 KiB memory limit"]);
}

#[test]
fn thirty_thousand_layers_compile_in_little_memory() {
    let dir = scratch("layers");
    let body: String = ["a", "b", "c"].iter().map(|s| format!("stage {s} {{ conv 3x3 8 relu x9999 }}\n")).collect();
    let model = write(&dir, "many.cnn", &format!("input 1x8x8\n{body}"));
    let small = dir.join("small.png");
    image::GrayImage::from_pixel(8, 8, image::Luma([3])).save(&small).unwrap();
    succeeded(&confined(&["run", &model, small.to_str().unwrap()], TWO_GIB));
}

#[test]
fn pooling_work_follows_the_output_not_the_window() {
    let dir = scratch("pool");
    let small = dir.join("small.png");
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y) as u8])).save(&small).unwrap();
    for kind in ["maxpool", "avgpool"] {
        let model =
            write(&dir, &format!("{kind}.cnn"), &format!("input 1x8x8\n{kind} 100001 stride 100000 pad 50000\n"));
        let jit = confined(&["run", &model, small.to_str().unwrap(), "--json"], TWO_GIB);
        let interp = confined(&["run", &model, small.to_str().unwrap(), "--json", "--backend", "interp"], TWO_GIB);
        succeeded(&jit);
        assert_eq!(jit.stdout, interp.stdout, "{kind}: both backends agree");
    }
}

#[test]
fn fmt_ends_comments_at_a_bare_carriage_return() {
    let dir = scratch("cr");
    let model = write(&dir, "cr.cnn", "input 1x8x8\nstage s { relu }  # note\rrelu\n");
    let layers = |p: &str| check_json(&[p]).0["layers"].as_array().map(Vec::len);
    let before = layers(&model);
    for _ in 0..2 {
        succeeded(&confined(&["fmt", "--write", &model], TWO_GIB));
        assert_eq!(layers(&model), before, "fmt --write keeps the layers");
    }
    // A file with CR-only line endings checks before and after formatting.
    let cr = write(&dir, "cr_only.cnn", "input 1x8x8\rstage s { relu }\r# a comment\rstage t { relu }\r");
    assert_eq!(check_json(&[&cr]).1, 0);
    succeeded(&confined(&["fmt", "--write", &cr], TWO_GIB));
    assert_eq!(check_json(&[&cr]).1, 0);
    assert_eq!(layers(&cr), Some(3));
}

#[test]
fn fmt_is_idempotent_with_comments_in_empty_bodies_and_argument_lists() {
    for source in [
        "input 1x8x8\nstage s { residual { # c\n}\n}\n",
        "input 3x8x8\nblock b(c, # channels\n  k = 3) { conv k c }\nstage s { b(4, # four\n 3) }\n",
        "input 3x8x8\nblock b(\n  # leading\n  c,\n) { conv 1x1 c }\nstage s { b(2 # trailing\n) }\n",
    ] {
        let once = cnnc::format_source(source).unwrap();
        assert_eq!(cnnc::format_source(&once).unwrap(), once, "{source:?}");
        // Every comment stays inside the statement it was written in, not at the end.
        for c in ["# c", "# channels", "# four", "# leading", "# trailing"] {
            if source.contains(c) {
                assert!(!once.trim_end().ends_with(c) || source.trim_end().ends_with(c), "{c} moved:\n{once}");
            }
        }
        let (a, b) = (check_source_names(source), check_source_names(&once));
        assert_eq!(a, b, "same layers");
    }
}

fn check_source_names(s: &str) -> Vec<String> {
    cnnc::check_source(s, "x", None).checked.expect("checks").network.nodes.iter().map(|n| n.name.clone()).collect()
}

#[test]
fn fmt_write_on_a_full_disk_leaves_the_file_whole() {
    let dir = scratch("full");
    let source = std::fs::read_to_string(example("googlenet.cnn")).unwrap() + "\n\n\n";
    let model = write(&dir, "g.cnn", &source);
    let out = confined(&["fmt", "--write", &model], Confine { file_size: Some(1024), ..TWO_GIB });
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("cannot write"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&model).unwrap(), source, "untouched");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "no temporary file left behind: {left:?}");
}

#[test]
fn truncated_or_corrupt_jpegs_are_errors() {
    let dir = scratch("jpeg");
    let img = image::RgbImage::from_fn(96, 80, |x, y| image::Rgb([(x * 2) as u8, (y * 3) as u8, 77]));
    let good = dir.join("good.jpg");
    img.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    succeeded(&confined(&["run", "examples/googlenet.cnn", good.to_str().unwrap()], TWO_GIB));
    for percent in [1, 10, 30, 50, 70, 90, 99] {
        let cut = dir.join(format!("cut{percent}.jpg"));
        std::fs::write(&cut, &bytes[..bytes.len() * percent / 100]).unwrap();
        refused(
            &confined(&["run", "examples/googlenet.cnn", cut.to_str().unwrap()], TWO_GIB),
            &[cut.to_str().unwrap()],
        );
    }
    // A marker byte flipped in the entropy-coded data: an invalid code under strict decoding.
    let mut flipped = bytes.clone();
    let sos = flipped.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let at = sos + (flipped.len() - sos) / 2;
    flipped[at..at + 2].copy_from_slice(&[0xFF, 0xD0]);
    let bad = dir.join("flipped.jpg");
    std::fs::write(&bad, &flipped).unwrap();
    refused(&confined(&["run", "examples/googlenet.cnn", bad.to_str().unwrap()], TWO_GIB), &["flipped.jpg"]);
}

#[test]
fn outputs_are_written_safely_and_never_replaced_unasked() {
    let dir = scratch("writes");
    let weights = dir.join("w.safetensors");
    std::fs::write(&weights, "precious").unwrap();
    let w = weights.to_str().unwrap();
    refused(&confined(&["init", "examples/digits.cnn", "-o", w], TWO_GIB), &["already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&weights).unwrap(), "precious");
    succeeded(&confined(&["init", "examples/digits.cnn", "-o", w, "--force"], TWO_GIB));
    // Never over a model source, even with --force.
    let model = dir.join("digits.cnn");
    std::fs::copy(example("digits.cnn"), &model).unwrap();
    let m = model.to_str().unwrap();
    refused(&confined(&["init", m, "-o", m, "--force"], TWO_GIB), &[".cnn model source"]);
    assert_eq!(std::fs::read(&model).unwrap(), std::fs::read(example("digits.cnn")).unwrap());
    // A new file's mode follows the umask; through a symlink the target is written.
    let fresh = dir.join("fresh.safetensors");
    let out = confined(
        &["init", "examples/digits.cnn", "-o", fresh.to_str().unwrap()],
        Confine { umask: Some(0o027), ..TWO_GIB },
    );
    succeeded(&out);
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o640);
    let link = dir.join("link.svg");
    let target = dir.join("target.svg");
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let l = link.to_str().unwrap();
    succeeded(&confined(&["graph", "examples/digits.cnn", "-o", l, "--force"], TWO_GIB));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("<svg"), "its target was written");
    // A missing directory is named as such.
    let nowhere = dir.join("missing_dir").join("g.svg");
    refused(
        &confined(&["graph", "examples/digits.cnn", "-o", nowhere.to_str().unwrap()], TWO_GIB),
        &["does not exist"],
    );
}

#[test]
fn non_finite_weights_and_inputs_warn_and_negative_variance_is_an_error() {
    let dir = scratch("finite");
    let (model, _) = cnnc::load_model(&example("digits.cnn"), None).unwrap();
    let specs = model.params();
    let mut weights = cnnc::load_safetensors(&example("digits.safetensors"), &specs).unwrap().weights;
    let mut w = weights.get("conv2.1.1.weight").to_vec();
    w[3] = f32::NAN;
    weights.insert("conv2.1.1.weight".into(), w);
    let nan = dir.join("nan.safetensors");
    cnnc::save_safetensors(&nan, &specs, &weights, Default::default()).unwrap();
    let out = confined(
        &["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", nan.to_str().unwrap()],
        TWO_GIB,
    );
    succeeded(&out);
    assert!(stderr(&out).contains("warning") && stderr(&out).contains("conv2.1.1.weight"), "{}", stderr(&out));

    let mut var = weights.get("conv1.1.2.running_var").to_vec();
    var[0] = -1.0;
    weights.insert("conv1.1.2.running_var".into(), var);
    let negative = dir.join("negative.safetensors");
    cnnc::save_safetensors(&negative, &specs, &weights, Default::default()).unwrap();
    let args = ["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", negative.to_str().unwrap()];
    refused(&confined(&args, TWO_GIB), &["conv1.1.2.running_var", "negative"]);

    // An all-NaN input.
    let npy = dir.join("nan.npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 32, 32), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<117}\n");
    bytes.extend((padded.len() as u16).to_le_bytes());
    bytes.extend(padded.as_bytes());
    bytes.extend(std::iter::repeat_n(f32::NAN.to_le_bytes(), 32 * 32).flatten());
    std::fs::write(&npy, bytes).unwrap();
    let out = confined(&["run", "examples/digits.cnn", npy.to_str().unwrap()], TWO_GIB);
    succeeded(&out);
    assert!(stderr(&out).contains("NaN or infinite") && stderr(&out).contains("nan.npy"), "{}", stderr(&out));
}

#[test]
fn a_safetensors_header_naming_a_tensor_twice_is_refused() {
    let dir = scratch("duplicate");
    let header = r#"{"conv1.1.1.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"conv1.1.1.weight":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 8]);
    let p = dir.join("dup.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let args = ["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", p.to_str().unwrap()];
    refused(&confined(&args, TWO_GIB), &["dup.safetensors", "twice", "conv1.1.1.weight"]);
}

#[test]
fn endless_devices_are_not_read() {
    let check = confined(&["check", "/dev/zero"], TWO_GIB);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(stderr(&check).contains("E0001"));
    let base = ["run", "examples/digits.cnn", "examples/images/digit_3.png"];
    let weights = confined(&[&base[..], &["--weights", "/dev/zero"]].concat(), TWO_GIB);
    refused(&weights, &["/dev/zero", "not a regular file"]);
    let labels = confined(&[&base[..], &["--labels", "/dev/zero"]].concat(), TWO_GIB);
    refused(&labels, &["E0303", "/dev/zero"]);
    refused(&confined(&["run", "/dev/zero", "examples/images/digit_3.png"], TWO_GIB), &["E0303", "/dev/zero"]);
}

/// An fc layer over 4 million values of a map with a halo (not contiguous) runs: the gemv
/// kernel would gather them into its stack frame, 16 MB on a 2 MiB stack, and crash.
#[test]
fn an_fc_over_a_large_map_does_not_overflow_the_stack() {
    let dir = scratch("bigfc");
    let model = write(&dir, "m.cnn", "input 3x1000x1000\nconv 3x3 4\nflatten\nfc 2\n");
    succeeded(&confined(&["bench", &model, "--iters", "1"], TWO_GIB));
}

/// Absurd `bench` counts are usage errors (clap's exit code 2, with the allowed range), and
/// threads the process cannot start are an error (exit 1), never an abort.
#[test]
fn absurd_thread_and_iteration_counts_are_refused() {
    for (flag, value) in [("--threads", "50000"), ("--threads", "0"), ("--iters", "100000000000")] {
        let out = confined(&["bench", "examples/digits.cnn", flag, value], TWO_GIB);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(e.contains("is not in 1..=") && !e.contains("panicked"), "{e}");
    }
    // 256 threads' stacks do not fit in 400 MB of address space.
    let small = Confine { address_space: 400 << 20, ..TWO_GIB };
    let out = confined(&["bench", "examples/digits.cnn", "--iters", "1", "--threads", "256"], small);
    refused(&out, &["cannot start 256 threads"]);
}
