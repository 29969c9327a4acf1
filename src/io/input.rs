//! Network inputs: PNG/JPEG images with torchvision's evaluation transform, or `.npy` tensors
//! taken as already preprocessed.
//!
//! Images: an image whose size is the network's HxW is used as is; otherwise it is resized with
//! antialiased bilinear filtering so that it covers round(H*256/224) x round(W*256/224) (for a
//! square network: the shorter side becomes round(H*256/224), as `Resize(256)` does at 224) and
//! centre-cropped to HxW. Values are scaled to [0, 1] and normalised with the `.cnn` file's mean
//! and std. Greyscale feeds 1-channel networks directly and is replicated for 3-channel ones;
//! alpha is dropped.

use crate::ir::graph::{Input, Network};
use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView, ImageReader, Limits};
use ndarray::{Array4, ArrayD, Ix4};
use std::path::Path;

/// Why an input (image or `.npy`) cannot be used. Every variant names the file (`path`).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The input file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Not a PNG or JPEG the decoder accepts.
    #[error("{path} is not a readable PNG or JPEG image: {reason}")]
    NotImage {
        /// The input file.
        path: String,
        /// What the decoder said.
        reason: String,
    },
    /// The image's colour channels do not fit the network's input.
    #[error("{path} has {found} colour channels but the network takes {expected}{hint}")]
    Channels {
        /// The input file.
        path: String,
        /// Channels in the image.
        found: usize,
        /// Channels the network takes.
        expected: u64,
        /// How to fix it.
        hint: &'static str,
    },
    /// A `.npy` of another dtype than float32.
    #[error("{path} holds {found} values; cnnc reads float32 .npy files (save with `arr.astype(np.float32)`)")]
    NpyDtype {
        /// The input file.
        path: String,
        /// Its dtype descriptor.
        found: String,
    },
    /// A `.npy` whose shape is not [C, H, W] or [N, C, H, W] with the network's C.
    #[error("{path} has shape {found:?}; the network takes [C, H, W] or [N, C, H, W] with C = {channels}")]
    NpyShape {
        /// The input file.
        path: String,
        /// Its shape.
        found: Vec<usize>,
        /// The network's input channels.
        channels: u64,
    },
    /// A `.npy` whose header or data is broken.
    #[error("{path} is not a valid .npy file: {reason}")]
    NpyCorrupt {
        /// The input file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Inputs of one batch differ in size.
    #[error("{path} is {found_h}x{found_w} but {first} is {h}x{w}: inputs in one batch must share a size")]
    Mismatch {
        /// The input that differs.
        path: String,
        /// Its height.
        found_h: usize,
        /// Its width.
        found_w: usize,
        /// The batch's first input.
        first: String,
        /// The first input's height.
        h: usize,
        /// The first input's width.
        w: usize,
    },
}

/// Images larger than this are refused before decoding rather than risking an enormous buffer.
const MAX_IMAGE_SIDE: u32 = 16_384;

/// Loads one input as a batch (N, C, H, W): an image gives N = 1.
pub fn load_input(path: &Path, net: &Network) -> Result<Array4<f32>, InputError> {
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy { load_npy(path, net.input.c) } else { load_image(path, net) }
}

/// Loads every input and stacks them into one batch. All must share H and W.
pub fn load_batch(paths: &[&Path], net: &Network) -> Result<Array4<f32>, InputError> {
    let mut parts: Vec<Array4<f32>> = Vec::with_capacity(paths.len());
    for path in paths {
        let a = load_input(path, net)?;
        if let Some(first) = parts.first() {
            let (_, _, h, w) = first.dim();
            let (_, _, fh, fw) = a.dim();
            if (h, w) != (fh, fw) {
                return Err(InputError::Mismatch {
                    path: path.display().to_string(),
                    found_h: fh,
                    found_w: fw,
                    first: paths[0].display().to_string(),
                    h,
                    w,
                });
            }
        }
        parts.push(a);
    }
    let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
    Ok(ndarray::concatenate(ndarray::Axis(0), &views).expect("inputs share C, H and W"))
}

fn load_npy(path: &Path, channels: u64) -> Result<Array4<f32>, InputError> {
    let shown = path.display().to_string();
    let io = |source| InputError::Io { path: shown.clone(), source };
    let file_len = std::fs::metadata(path).map_err(io)?.len();
    let mut file = std::fs::File::open(path).map_err(io)?;
    // Read the header first: a crafted header must not make us allocate more than the file holds.
    let header = ndarray_npy::npy::header::Header::from_reader(&mut file)
        .map_err(|e| InputError::NpyCorrupt { path: shown.clone(), reason: e.to_string() })?;
    let descr = header.type_descriptor.to_string();
    if !matches!(descr.as_str(), "'<f4'" | "'=f4'" | "'|f4'") {
        return Err(InputError::NpyDtype { path: shown, found: descr.trim_matches('\'').to_string() });
    }
    let count = header.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    if count.is_none_or(|n| n.saturating_mul(4) > file_len) {
        return Err(InputError::NpyCorrupt {
            path: shown,
            reason: format!("the header promises {:?} values but the file is {file_len} bytes", header.shape),
        });
    }
    let shape_ok = match header.shape.as_slice() {
        [c, h, w] | [_, c, h, w] => *c as u64 == channels && *h > 0 && *w > 0,
        _ => false,
    };
    if !shape_ok {
        return Err(InputError::NpyShape { path: shown, found: header.shape, channels });
    }
    let data: ArrayD<f32> = ndarray_npy::read_npy(path)
        .map_err(|e| InputError::NpyCorrupt { path: shown.clone(), reason: e.to_string() })?;
    let data = if data.ndim() == 3 { data.insert_axis(ndarray::Axis(0)) } else { data };
    let data =
        data.into_dimensionality::<Ix4>().map_err(|e| InputError::NpyCorrupt { path: shown, reason: e.to_string() })?;
    Ok(data.as_standard_layout().into_owned())
}

fn load_image(path: &Path, net: &Network) -> Result<Array4<f32>, InputError> {
    let shown = path.display().to_string();
    let not_image = |reason: String| InputError::NotImage { path: shown.clone(), reason };
    let mut reader = ImageReader::open(path)
        .map_err(|source| InputError::Io { path: shown.clone(), source })?
        .with_guessed_format()
        .map_err(|source| InputError::Io { path: shown.clone(), source })?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    if reader.format().is_none() {
        return Err(not_image("unrecognised format".into()));
    }
    let img = reader.decode().map_err(|e| not_image(e.to_string()))?;
    let Input { c, h, w } = net.input;
    let grey = !img.color().has_color();
    let planes = match (c, grey) {
        (3, _) => 3,
        (1, true) => 1,
        (1, false) if is_effectively_grey(&img) => 1,
        (1, false) => {
            return Err(InputError::Channels {
                path: shown,
                found: 3,
                expected: 1,
                hint: " (convert the image to greyscale)",
            });
        }
        _ => {
            let found = if grey { 1 } else { 3 };
            return Err(InputError::Channels {
                path: shown,
                found,
                expected: c,
                hint: " (pass a .npy tensor instead)",
            });
        }
    };
    let rgb = img.to_rgb32f();
    let (iw, ih) = rgb.dimensions();
    let (h, w) = (h as u32, w as u32);
    let cropped = if (iw, ih) == (w, h) {
        rgb
    } else {
        // torchvision's Resize(round(H*256/224)) + CenterCrop(H), generalised to HxW.
        let (th, tw) = ((h as f64 * 256.0 / 224.0).round(), (w as f64 * 256.0 / 224.0).round());
        let scale = (th / ih as f64).max(tw / iw as f64);
        // Truncate like torchvision's int(); the epsilon keeps the shorter side at exactly S.
        let side = |len: u32| ((len as f64 * scale + 1e-6).floor() as u32).max(1);
        let (rw, rh) = (side(iw).max(w), side(ih).max(h));
        let resized = image::imageops::resize(&rgb, rw, rh, FilterType::Triangle);
        // torchvision centres with Python's round(), which rounds half to even (50.5 -> 50).
        let (left, top) =
            (((rw - w) as f64 / 2.0).round_ties_even() as u32, ((rh - h) as f64 / 2.0).round_ties_even() as u32);
        image::imageops::crop_imm(&resized, left, top, w, h).to_image()
    };
    let mut out = Array4::<f32>::zeros((1, planes, h as usize, w as usize));
    for (x, y, px) in cropped.enumerate_pixels() {
        for ch in 0..planes {
            let v = if planes == 1 { px.0[0] } else { px.0[ch] };
            let (mean, std) = net.normalisation(ch);
            out[[0, ch, y as usize, x as usize]] = ((v as f64 - mean) / std) as f32;
        }
    }
    Ok(out)
}

/// A colour image whose three channels are equal everywhere (a greyscale picture saved as RGB).
fn is_effectively_grey(img: &DynamicImage) -> bool {
    img.pixels().all(|(_, _, p)| p.0[0] == p.0[1] && p.0[1] == p.0[2])
}
