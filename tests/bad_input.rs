//! Bad inputs to `cnnc run` exit 1 with a message that names the file and the problem; none
//! panics. Broken files are made on the fly from good ones.

mod common;
use common::*;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnnc-bad-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs cnnc, expects exit 1 and a stderr mentioning every needle.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = cnnc(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: expected {n:?} in {stderr}");
    }
}

#[test]
fn missing_input_file() {
    fails_with(&["run", "examples/digits.cnn", "no/such/image.png"], &["no/such/image.png", "No such file"]);
}

#[test]
fn missing_model_and_weights_files() {
    fails_with(&["run", "no/such/model.cnn", "examples/images/digit_3.png"], &["no/such/model.cnn"]);
    fails_with(
        &["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", "no/such.safetensors"],
        &["no/such.safetensors"],
    );
}

#[test]
fn a_text_file_is_not_an_image() {
    let p = scratch("text").join("notes.png");
    std::fs::write(&p, "this is not a picture\n").unwrap();
    fails_with(
        &["run", "examples/digits.cnn", p.to_str().unwrap()],
        &[p.to_str().unwrap(), "not a readable PNG or JPEG"],
    );
}

#[test]
fn truncated_png() {
    let bytes = std::fs::read(example("images/digit_3.png")).unwrap();
    let p = scratch("trunc").join("digit_3_truncated.png");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&["run", "examples/digits.cnn", p.to_str().unwrap()], &[p.to_str().unwrap()]);
}

#[test]
fn colour_image_for_a_greyscale_network() {
    let p = scratch("colour").join("colour.png");
    let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 128]));
    img.save(&p).unwrap();
    fails_with(
        &["run", "examples/digits.cnn", p.to_str().unwrap()],
        &[p.to_str().unwrap(), "3 colour channels but the network takes 1"],
    );
}

#[test]
fn npy_of_wrong_channels_shape_or_dtype() {
    let dir = scratch("npy");
    let three = dir.join("three_channels.npy");
    ndarray_npy::write_npy(&three, &ndarray::Array3::<f32>::zeros((3, 32, 32))).unwrap();
    fails_with(&["run", "examples/digits.cnn", three.to_str().unwrap()], &["three_channels.npy", "[3, 32, 32]"]);
    let flat = dir.join("flat.npy");
    ndarray_npy::write_npy(&flat, &ndarray::Array1::<f32>::zeros(1024)).unwrap();
    fails_with(&["run", "examples/digits.cnn", flat.to_str().unwrap()], &["flat.npy", "[1024]"]);
    let double = dir.join("double.npy");
    ndarray_npy::write_npy(&double, &ndarray::Array3::<f64>::zeros((1, 32, 32))).unwrap();
    fails_with(&["run", "examples/digits.cnn", double.to_str().unwrap()], &["double.npy", "float32"]);
    let corrupt = dir.join("corrupt.npy");
    std::fs::write(&corrupt, b"\x93NUMPY\x01\x00garbage").unwrap();
    fails_with(&["run", "examples/digits.cnn", corrupt.to_str().unwrap()], &["corrupt.npy", "not a valid .npy"]);
}

#[test]
fn npy_header_that_promises_more_than_the_file_holds() {
    let p = scratch("liar").join("liar.npy");
    let mut bytes = Vec::new();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4000, 1, 32, 32), }";
    let padded = format!("{header:<117}\n");
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    bytes.extend_from_slice(padded.as_bytes());
    std::fs::write(&p, bytes).unwrap();
    fails_with(&["run", "examples/digits.cnn", p.to_str().unwrap()], &["liar.npy", "promises"]);
}

#[test]
fn weights_for_another_network() {
    fails_with(
        &[
            "run",
            "examples/digits.cnn",
            "examples/images/digit_3.png",
            "--weights",
            "tests/fixtures/ops/net_resnet.safetensors",
        ],
        &["net_resnet.safetensors", "lacks", "conv1.1.1.weight"],
    );
}

#[test]
fn weights_of_the_wrong_shape_point_at_the_layer() {
    // The digits network with a wider first stage: conv1's weights no longer fit.
    let dir = scratch("shape");
    let model = dir.join("wide.cnn");
    let text = std::fs::read_to_string(example("digits.cnn")).unwrap().replace("conv_bn(16) x2", "conv_bn(24) x2");
    std::fs::write(&model, text).unwrap();
    fails_with(
        &[
            "run",
            model.to_str().unwrap(),
            "examples/images/digit_3.png",
            "--weights",
            "examples/digits.safetensors",
            "--color",
            "never",
        ],
        // The conv is inside `conv_bn` (line 11); its instance in stage conv1 (line 13) is shown too.
        &["conv1.1.1.weight", "[16, 1, 3, 3]", "[24, 1, 3, 3]", "wide.cnn:11:", "13 │ stage conv1"],
    );
}

#[test]
fn corrupt_and_unsupported_weights() {
    let dir = scratch("weights");
    let bytes = std::fs::read(example("digits.safetensors")).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    fails_with(
        &["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", truncated.to_str().unwrap()],
        &["truncated.safetensors", "not a valid safetensors"],
    );
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"\xff\xff\xff\xff\xff\xff\xff\xffjunk").unwrap();
    fails_with(
        &["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", junk.to_str().unwrap()],
        &["junk.safetensors"],
    );
    // An int32 tensor where a float one is needed.
    let ints = dir.join("ints.safetensors");
    let data = vec![0u8; 16 * 9 * 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![16, 1, 3, 3], &data).unwrap();
    safetensors::serialize_to_file([("conv1.1.1.weight", view)], None, &ints).unwrap();
    let out = cnnc(&["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", ints.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("I32") && stderr.contains("ints.safetensors"), "{stderr}");
}

#[test]
fn half_precision_weights_are_converted() {
    let dir = scratch("half");
    let specs = {
        let (model, _) = cnnc::load_model(&example("digits.cnn"), None).unwrap();
        model.params()
    };
    let loaded = cnnc::load_safetensors(&example("digits.safetensors"), &specs).unwrap().weights;
    for (dtype, name) in
        [(safetensors::Dtype::F16, "f16"), (safetensors::Dtype::BF16, "bf16"), (safetensors::Dtype::F64, "f64")]
    {
        let buffers: Vec<Vec<u8>> = specs
            .iter()
            .map(|s| {
                loaded
                    .get(&s.name)
                    .iter()
                    .flat_map(|&v| match dtype {
                        safetensors::Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
                        safetensors::Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
                        _ => (v as f64).to_le_bytes().to_vec(),
                    })
                    .collect()
            })
            .collect();
        let views: Vec<_> = specs
            .iter()
            .zip(&buffers)
            .map(|(s, b)| (s.name.clone(), safetensors::tensor::TensorView::new(dtype, s.shape.clone(), b).unwrap()))
            .collect();
        let path = dir.join(format!("{name}.safetensors"));
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let out = cnnc(&[
            "run",
            "examples/digits.cnn",
            "examples/images/digit_3.png",
            "--weights",
            path.to_str().unwrap(),
            "--top",
            "1",
        ]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1.     3"), "{name}");
    }
}

#[test]
fn absurd_activation_memory_is_refused_up_front() {
    let dir = scratch("huge");
    let model = dir.join("huge.cnn");
    std::fs::write(&model, "input 3x30000x30000\nstage a { conv 3x3 64 relu }\nstage b { gap; flatten; fc 10 }\n")
        .unwrap();
    // The plan says 206 GiB per image: refused before the image is even decoded.
    fails_with(&["run", model.to_str().unwrap(), "examples/images/digit_3.png"], &["activations", "limit"]);
}

#[test]
fn unused_weights_are_a_warning() {
    let (model, _) = cnnc::load_model(&example("digits.cnn"), None).unwrap();
    let specs = model.params();
    let loaded = cnnc::load_safetensors(&example("digits.safetensors"), &specs).unwrap().weights;
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = specs
        .iter()
        .map(|s| (s.name.clone(), loaded.get(&s.name).iter().flat_map(|v| v.to_le_bytes()).collect(), s.shape.clone()))
        .chain(std::iter::once(("extra.tensor".to_string(), vec![0u8; 4], vec![1])))
        .collect();
    let views: Vec<_> = bytes
        .iter()
        .map(|(n, b, s)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    let path = scratch("extra").join("extra.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let out = cnnc(&["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning") && stderr.contains("extra.tensor"), "{stderr}");
}

/// An `.npy` of another height and width runs the network at that size (the weights allow it)
/// but says so, naming both sizes; another channel count stays an error.
#[test]
fn npy_of_another_size_is_noted_and_of_other_channels_refused() {
    let dir = scratch("npy-size");
    let bigger = dir.join("bigger.npy");
    ndarray_npy::write_npy(&bigger, &ndarray::Array3::<f32>::zeros((1, 40, 40))).unwrap();
    let out = cnnc(&["run", "examples/digits.cnn", bigger.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("note:") && stderr.contains("40x40") && stderr.contains("32x32"), "{stderr}");
    assert!(stderr.contains("bigger.npy"), "{stderr}");
    let same = dir.join("same.npy");
    ndarray_npy::write_npy(&same, &ndarray::Array3::<f32>::zeros((1, 32, 32))).unwrap();
    let out = cnnc(&["run", "examples/digits.cnn", same.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("note:"), "no note at the declared size");
    let rgb = dir.join("rgb.npy");
    ndarray_npy::write_npy(&rgb, &ndarray::Array3::<f32>::zeros((3, 40, 40))).unwrap();
    fails_with(&["run", "examples/digits.cnn", rgb.to_str().unwrap()], &["rgb.npy", "[3, 40, 40]"]);
}

/// Each batch element is named by its path, with `[k]` for the images of an `.npy` that holds
/// several.
#[test]
fn batched_npy_inputs_are_named_by_path_and_index() {
    let dir = scratch("npy-names");
    let two = dir.join("two.npy");
    ndarray_npy::write_npy(&two, &ndarray::Array4::<f32>::zeros((2, 1, 32, 32))).unwrap();
    let one = dir.join("one.npy");
    ndarray_npy::write_npy(&one, &ndarray::Array3::<f32>::zeros((1, 32, 32))).unwrap();
    let out = cnnc(&["run", "examples/digits.cnn", two.to_str().unwrap(), one.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|p| p["input"].as_str().unwrap()).collect();
    let (t, o) = (two.display().to_string(), one.display().to_string());
    assert_eq!(names, vec![format!("{t}[0]"), format!("{t}[1]"), o]);
}
