//! Image preprocessing against torchvision's evaluation transform (Resize, CenterCrop, ToTensor,
//! Normalize), on the pictures in tests/fixtures/images/ (made by
//! tools/make_image_fixtures.py, which also wrote torchvision's results).
//!
//! Tolerance: PIL resizes in 8 bits and rounds; cnnc resizes in f32 with the image crate's
//! triangle filter, and the two JPEG decoders differ slightly. Measured: max |diff| 0.017 for the
//! PNGs (one 8-bit step: 1/255 divided by ImageNet's std) and 0.055 for the JPEG; mean |diff|
//! 0.005 and 0.008. The test allows mean 0.01 and max 0.1. A crop offset off by one row (found
//! this way: torchvision centres with round-half-to-even) moved the max to 2.0.

use cnnc::check_source;
use cnnc::load_input;
use ndarray::ArrayD;

fn network() -> cnnc::Network {
    check_source("input 3x112x112\nstage a { conv 3x3 4 }\n", "pre", None).checked.expect("checks").network
}

#[test]
fn images_are_preprocessed_as_torchvision_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let net = network();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".npy") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected: ArrayD<f32> = ndarray_npy::read_npy(dir.join(format!("{stem}.expected.npy"))).unwrap();
        let got = load_input(&path, &net).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.shape(), &[1, 3, 112, 112], "{name}");
        let (g, e): (Vec<f32>, Vec<f32>) = (got.iter().copied().collect(), expected.iter().copied().collect());
        let diffs: Vec<f32> = g.iter().zip(&e).map(|(a, b)| (a - b).abs()).collect();
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let max = diffs.iter().copied().fold(0.0, f32::max);
        assert!(mean <= 0.01 && max <= 0.1, "{name}: mean |diff| {mean}, max {max}");
        seen += 1;
    }
    assert_eq!(seen, 5, "RGB, portrait, grey, RGBA and JPEG cases");
}

#[test]
fn an_image_of_the_network_size_is_used_as_is() {
    // A 112x112 crop of the expected tensor, saved as an image, comes back exactly (up to 8 bits).
    let net = network();
    let dir = std::env::temp_dir().join(format!("cnnc-pre-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = image::RgbImage::from_fn(112, 112, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, 200]));
    let path = dir.join("exact.png");
    img.save(&path).unwrap();
    let got = load_input(&path, &net).unwrap();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    for (c, value) in [(0usize, 2.0f32 * 7.0), (1, 2.0 * 9.0), (2, 200.0)] {
        let expected = (value / 255.0 - mean[c]) / std[c];
        let at = got[[0, c, 9, 7]];
        assert!((at - expected).abs() < 1e-5, "channel {c}: {at} vs {expected}");
    }
}
