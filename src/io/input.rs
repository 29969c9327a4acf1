//! Network inputs: PNG/JPEG images with torchvision's evaluation transform, or `.npy` tensors
//! taken as already preprocessed.
//!
//! Images: an image whose size is the network's HxW is used as is; otherwise it is resized with
//! antialiased bilinear filtering so that it covers round(H*256/224) x round(W*256/224) (for a
//! square network: the shorter side becomes round(H*256/224), as `Resize(256)` does at 224) and
//! centre-cropped to HxW. Values are scaled to [0, 1] and normalised with the `.cnn` file's mean
//! and std. Greyscale feeds 1-channel networks directly and is replicated for 3-channel ones;
//! alpha is dropped.

use crate::io::budget::Limits;
use crate::io::files::read_limited;
use crate::ir::graph::{Input, Network};
use image::{DynamicImage, GenericImageView, ImageFormat, ImageReader};
use ndarray::{Array4, ArrayD, Ix4};
use ndarray_npy::ReadNpyExt;
use std::io::{Read, Seek, SeekFrom};
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
    /// An image with more pixels than the limit, refused before decoding (E0302).
    #[error("{path} is {width}x{height}, more than the limit of {limit} pixels; raise it with --max-pixels")]
    TooManyPixels {
        /// The input file.
        path: String,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The limit.
        limit: u64,
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

/// Loads one input as a batch (N, C, H, W) under the default limits: an image gives N = 1.
pub fn load_input(path: &Path, net: &Network) -> Result<Array4<f32>, InputError> {
    load_input_limited(path, net, &Limits::default())
}

/// Loads one input as a batch (N, C, H, W): an image gives N = 1.
pub(crate) fn load_input_limited(path: &Path, net: &Network, limits: &Limits) -> Result<Array4<f32>, InputError> {
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy { load_npy(path, net.input.c) } else { load_image(path, net, limits) }
}

/// Loads every input and stacks them into one batch. All must share H and W.
/// The inputs as one batch, and how many images each path gave (a `.npy` may hold several).
pub(crate) fn load_batch(
    paths: &[&Path],
    net: &Network,
    limits: &Limits,
) -> Result<(Array4<f32>, Vec<usize>), InputError> {
    let mut parts: Vec<Array4<f32>> = Vec::with_capacity(paths.len());
    for path in paths {
        let a = load_input_limited(path, net, limits)?;
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
    let counts = parts.iter().map(|a| a.dim().0).collect();
    Ok((ndarray::concatenate(ndarray::Axis(0), &views).expect("inputs share C, H and W"), counts))
}

fn load_npy(path: &Path, channels: u64) -> Result<Array4<f32>, InputError> {
    let shown = path.display().to_string();
    let io = |source| InputError::Io { path: shown.clone(), source };
    let file_len = std::fs::metadata(path).map_err(io)?.len();
    let file = std::fs::File::open(path).map_err(io)?;
    npy_from_reader(std::io::BufReader::new(file), file_len, &shown, channels)
}

/// The header of a `.npy`, read without trusting its length field: a crafted one must not make
/// the header reader allocate more than the file holds (found by fuzzing: a 4 GiB header in a
/// 40-byte file).
pub(crate) fn npy_header<R: Read + Seek>(
    reader: &mut R,
    file_len: u64,
) -> Result<ndarray_npy::npy::header::Header, String> {
    let mut prefix = [0u8; 12];
    let got = reader.read(&mut prefix).map_err(|e| e.to_string())?;
    let header_end = match (&prefix[..6.min(got)], prefix[6]) {
        (b"\x93NUMPY", 1) if got >= 10 => 10 + u16::from_le_bytes([prefix[8], prefix[9]]) as u64,
        (b"\x93NUMPY", 2 | 3) if got >= 12 => {
            12 + u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as u64
        }
        _ => return Err("it does not start with a .npy header".into()),
    };
    if header_end > file_len {
        return Err(format!("its header claims {header_end} bytes but the file is {file_len}"));
    }
    if header_end > MAX_NPY_HEADER {
        return Err(format!("its header claims {header_end} bytes; a tensor's header is under {MAX_NPY_HEADER}"));
    }
    // ndarray-npy parses the header's Python literal by backtracking, in time exponential in how
    // deeply brackets nest (found by fuzzing: 20 `[` took 100 s). A float32 tensor's header
    // nests two deep: `{'shape': (1, 3, 224, 224)}`.
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut text = vec![0u8; header_end as usize];
    reader.read_exact(&mut text).map_err(|e| e.to_string())?;
    let deepest = text
        .iter()
        .scan(0i64, |depth, b| {
            *depth += match b {
                b'(' | b'[' | b'{' => 1,
                b')' | b']' | b'}' => -1,
                _ => 0,
            };
            Some(*depth)
        })
        .max()
        .unwrap_or(0);
    if deepest > MAX_NPY_NESTING {
        return Err(format!("its header nests brackets {deepest} deep; a float32 tensor's header nests 2"));
    }
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    ndarray_npy::npy::header::Header::from_reader(reader).map_err(|e| e.to_string())
}

/// A `.npy` header describing a plain tensor is about 128 bytes.
const MAX_NPY_HEADER: u64 = 1 << 16;
/// Brackets in a `.npy` header nest at most this deep (a plain tensor's nest 2).
const MAX_NPY_NESTING: i64 = 4;

/// A float32 `.npy` of [C, H, W] or [N, C, H, W] with C = `channels`, from its bytes.
pub(crate) fn npy_from_bytes(bytes: &[u8], shown: &str, channels: u64) -> Result<Array4<f32>, InputError> {
    npy_from_reader(std::io::Cursor::new(bytes), bytes.len() as u64, shown, channels)
}

fn npy_from_reader<R: Read + Seek>(
    mut reader: R,
    file_len: u64,
    shown: &str,
    channels: u64,
) -> Result<Array4<f32>, InputError> {
    let shown = shown.to_string();
    let corrupt = |reason: String| InputError::NpyCorrupt { path: shown.clone(), reason };
    let header = npy_header(&mut reader, file_len).map_err(corrupt)?;
    let descr = header.type_descriptor.to_string();
    if !matches!(descr.as_str(), "'<f4'" | "'=f4'" | "'|f4'") {
        return Err(InputError::NpyDtype { path: shown, found: descr.trim_matches('\'').to_string() });
    }
    let count = header.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    if count.is_none_or(|n| n.saturating_mul(4) > file_len) {
        let reason = format!("the header promises {:?} values but the file is {file_len} bytes", header.shape);
        return Err(corrupt(reason));
    }
    let shape_ok = match header.shape.as_slice() {
        [c, h, w] | [_, c, h, w] => *c as u64 == channels && *h > 0 && *w > 0,
        _ => false,
    };
    if !shape_ok {
        return Err(InputError::NpyShape { path: shown, found: header.shape, channels });
    }
    reader.seek(SeekFrom::Start(0)).map_err(|e| corrupt(e.to_string()))?;
    let data = ArrayD::<f32>::read_npy(reader).map_err(|e| corrupt(e.to_string()))?;
    let data = if data.ndim() == 3 { data.insert_axis(ndarray::Axis(0)) } else { data };
    let data = data.into_dimensionality::<Ix4>().map_err(|e| corrupt(e.to_string()))?;
    Ok(data.as_standard_layout().into_owned())
}

fn load_image(path: &Path, net: &Network, limits: &Limits) -> Result<Array4<f32>, InputError> {
    let img = decode_image(path, limits)?;
    preprocess(&img, &path.display().to_string(), net)
}

/// An encoded image (PNG, JPEG, ...) held in memory, preprocessed as `cnnc run` preprocesses
/// files: `shown` names it in messages. The result is a batch of one.
pub fn load_image_bytes(bytes: &[u8], shown: &str, net: &Network, limits: &Limits) -> Result<Array4<f32>, InputError> {
    preprocess(&decode_image_bytes(bytes, shown, limits)?, shown, net)
}

/// torchvision's evaluation transform of a decoded image, to the network's declared input.
fn preprocess(img: &DynamicImage, shown: &str, net: &Network) -> Result<Array4<f32>, InputError> {
    let shown = shown.to_string();
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
    let pixels = resize_and_crop(img, h as usize, w as usize);
    let mut out = Array4::<f32>::zeros((1, planes, h as usize, w as usize));
    for ((y, x), px) in (0..h as usize).flat_map(|y| (0..w as usize).map(move |x| (y, x))).zip(pixels) {
        for ch in 0..planes {
            let v = if planes == 1 { px[0] } else { px[ch] };
            let (mean, std) = net.normalisation(ch);
            out[[0, ch, y, x]] = ((v as f64 - mean) / std) as f32;
        }
    }
    Ok(out)
}

/// Decodes an image after checking its size in its header: more pixels than the limit are
/// refused before any pixel is decoded. JPEGs are decoded strictly: a truncated or corrupt
/// stream is an error, not a picture with grey blocks.
fn decode_image(path: &Path, limits: &Limits) -> Result<DynamicImage, InputError> {
    let shown = path.display().to_string();
    // An image file is far smaller than its pixels; beyond 8 bytes a pixel it is not an image
    // within the limit (and /dev/zero never ends).
    let limit = limits.max_pixels.saturating_mul(8).saturating_add(1 << 20);
    let bytes =
        read_limited(path, limit).map_err(|source| InputError::Io { path: shown.clone(), source })?.ok_or_else(
            || InputError::NotImage { path: shown.clone(), reason: format!("it is larger than {limit} bytes") },
        )?;
    decode_image_bytes(&bytes, &shown, limits)
}

/// Decodes an image from its bytes after checking its size in its header: more pixels than the
/// limit are refused before any pixel is decoded. JPEGs are checked and decoded strictly.
pub(crate) fn decode_image_bytes(bytes: &[u8], shown: &str, limits: &Limits) -> Result<DynamicImage, InputError> {
    let not_image = |reason: String| InputError::NotImage { path: shown.to_string(), reason };
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|source| InputError::Io { path: shown.to_string(), source })
    };
    let format = reader()?.format().ok_or_else(|| not_image("unrecognised format".into()))?;
    let (width, height) = reader()?.into_dimensions().map_err(|e| not_image(e.to_string()))?;
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(InputError::TooManyPixels { path: shown.to_string(), width, height, limit: limits.max_pixels });
    }
    if format == ImageFormat::Jpeg {
        return decode_jpeg_strictly(bytes).map_err(not_image);
    }
    let mut decoder = reader()?;
    let mut decode_limits = image::Limits::default();
    // The decoded image (up to 16 bytes a pixel) and the decoder's own buffers.
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(32));
    decoder.limits(decode_limits);
    decoder.decode().map_err(|e| not_image(e.to_string()))
}

fn decode_jpeg_strictly(bytes: &[u8]) -> Result<DynamicImage, String> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    crate::io::jpeg::check_jpeg(bytes).map_err(|e| format!("corrupt or truncated JPEG: {e}"))?;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(1 << 24)
        .set_max_height(1 << 24)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder.decode().map_err(|e| format!("corrupt JPEG data: {e:?}"))?;
    let info = decoder.info().ok_or("the JPEG has no header")?;
    let buffer = image::RgbImage::from_raw(info.width as u32, info.height as u32, pixels)
        .ok_or("the JPEG decoder returned a short image")?;
    Ok(DynamicImage::ImageRgb8(buffer))
}

/// A colour image whose three channels are equal everywhere (a greyscale picture saved as RGB).
fn is_effectively_grey(img: &DynamicImage) -> bool {
    img.pixels().all(|(_, _, p)| p.0[0] == p.0[1] && p.0[1] == p.0[2])
}

/// An image's pixels as RGB in [0, 1], without copying 8-bit images.
enum Pixels<'a> {
    Rgb8(&'a image::RgbImage),
    Rgba8(&'a image::RgbaImage),
    Luma8(&'a image::GrayImage),
    Float(image::Rgb32FImage),
}

impl Pixels<'_> {
    fn of(img: &DynamicImage) -> Pixels<'_> {
        match img {
            DynamicImage::ImageRgb8(b) => Pixels::Rgb8(b),
            DynamicImage::ImageRgba8(b) => Pixels::Rgba8(b),
            DynamicImage::ImageLuma8(b) => Pixels::Luma8(b),
            other => Pixels::Float(other.to_rgb32f()),
        }
    }

    fn get(&self, x: u32, y: u32) -> [f32; 3] {
        let scale = |p: &[u8]| [p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0];
        match self {
            Pixels::Rgb8(b) => scale(&b.get_pixel(x, y).0),
            Pixels::Rgba8(b) => scale(&b.get_pixel(x, y).0),
            Pixels::Luma8(b) => [b.get_pixel(x, y).0[0] as f32 / 255.0; 3],
            Pixels::Float(b) => b.get_pixel(x, y).0,
        }
    }
}

/// The weights of one output sample of PIL's antialiased bilinear resampling (`Image.resize`
/// with `BILINEAR`, as torchvision's `Resize` calls it): a triangle filter widened by the
/// downscaling factor, normalised. Returns the first input index and the weights.
fn triangle_weights(out_index: usize, in_len: usize, out_len: usize) -> (usize, Vec<f64>) {
    let scale = in_len as f64 / out_len as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    let center = (out_index as f64 + 0.5) * scale;
    let first = ((center - support + 0.5) as i64).max(0) as usize;
    let end = ((center + support + 0.5) as i64).clamp(0, in_len as i64) as usize;
    let mut w: Vec<f64> =
        (first..end).map(|i| (1.0 - ((i as f64 - center + 0.5) / filter_scale).abs()).max(0.0)).collect();
    let total: f64 = w.iter().sum();
    if total > 0.0 {
        w.iter_mut().for_each(|v| *v /= total);
    }
    (first, w)
}

/// torchvision's evaluation transform to `h x w`: an image already that size is used as is;
/// otherwise the shorter side is resized to round(side * 256 / 224) (for a non-square network,
/// the image is scaled to cover round(H*256/224) x round(W*256/224)) and the centre `h x w`
/// cropped. Only the crop is computed: the work is the output times the filter's width,
/// whatever the image's size or shape. Pixels in row-major order.
pub(crate) fn resize_and_crop(img: &DynamicImage, h: usize, w: usize) -> Vec<[f32; 3]> {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let px = Pixels::of(img);
    if (iw, ih) == (w, h) {
        return (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| px.get(x as u32, y as u32)).collect();
    }
    let (th, tw) = ((h as f64 * 256.0 / 224.0).round(), (w as f64 * 256.0 / 224.0).round());
    let scale = (th / ih as f64).max(tw / iw as f64);
    // Truncate like torchvision's int(); the epsilon keeps the shorter side at exactly S.
    let side = |len: usize, min: usize| ((len as f64 * scale + 1e-6).floor() as usize).max(1).max(min);
    let (rw, rh) = (side(iw, w), side(ih, h));
    // torchvision centres with Python's round(), which rounds half to even (50.5 -> 50).
    let (left, top) =
        (((rw - w) as f64 / 2.0).round_ties_even() as usize, ((rh - h) as f64 / 2.0).round_ties_even() as usize);
    let cols: Vec<(usize, Vec<f64>)> = (left..left + w).map(|x| triangle_weights(x, iw, rw)).collect();
    let rows: Vec<(usize, Vec<f64>)> = (top..top + h).map(|y| triangle_weights(y, ih, rh)).collect();
    // The source rows the crop reads, resized horizontally once each.
    let row_lo = rows.iter().map(|(f, _)| *f).min().unwrap_or(0);
    let row_hi = rows.iter().map(|(f, wt)| f + wt.len()).max().unwrap_or(0);
    let horizontal: Vec<Vec<[f64; 3]>> = (row_lo..row_hi)
        .map(|y| {
            cols.iter()
                .map(|(first, wt)| {
                    let mut acc = [0.0f64; 3];
                    for (k, &c) in wt.iter().enumerate() {
                        let p = px.get((first + k) as u32, y as u32);
                        for ch in 0..3 {
                            acc[ch] += c * p[ch] as f64;
                        }
                    }
                    acc
                })
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(h * w);
    for (first, wt) in &rows {
        for x in 0..w {
            let mut acc = [0.0f64; 3];
            for (k, &c) in wt.iter().enumerate() {
                let p = horizontal[first + k - row_lo][x];
                for ch in 0..3 {
                    acc[ch] += c * p[ch];
                }
            }
            out.push(acc.map(|v| v as f32));
        }
    }
    out
}
