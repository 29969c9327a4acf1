//! `cnnc kernels`: a convolution's filters as a grid of small images, and its dead filters.
//!
//! Each filter is normalised on its own (its minimum to black, its maximum to white), as filter
//! visualisations in the AlexNet and ZFNet papers are. A filter with 3 input channels is one RGB
//! tile; otherwise it is one grey tile per input channel. A filter is dead when its L2 norm is
//! negligible next to the layer's median norm (below 1e-3 of it): it responds to nothing, and
//! ZFNet's first-layer filters were redesigned because AlexNet's had many.

use crate::ir::graph::{Network, NodeId};
use crate::ops::Op;
use image::{Rgb, RgbImage};

/// Below this fraction of the layer's median norm a filter counts as dead.
pub const DEAD_FRACTION: f32 = 1e-3;
/// The picture stays within this many pixels per side; larger layers show their first filters.
const MAX_SIDE: u32 = 8192;

/// A convolution's weights, to picture.
pub struct Filters<'a> {
    /// The layer's canonical name.
    pub layer: String,
    /// [out, in, kh, kw] in PyTorch's order.
    pub shape: [usize; 4],
    /// The weights in that order.
    pub data: &'a [f32],
}

impl Filters<'_> {
    fn filter(&self, o: usize) -> &[f32] {
        let n = self.shape[1] * self.shape[2] * self.shape[3];
        &self.data[o * n..(o + 1) * n]
    }
}

/// The first convolution, or the convolution named `name`.
pub fn find_conv(net: &Network, name: Option<&str>) -> Result<NodeId, String> {
    let convs: Vec<NodeId> = (0..net.nodes.len()).filter(|&i| matches!(net.nodes[i].op, Op::Conv(_))).collect();
    match name {
        None => convs.first().copied().ok_or_else(|| format!("{} has no convolution", net.name)),
        Some(n) => convs.iter().copied().find(|&i| net.nodes[i].name == n).ok_or_else(|| {
            let names: Vec<&str> = convs.iter().map(|&i| net.nodes[i].name.as_str()).collect();
            match crate::analysis::diag::closest(n, names.iter().copied()) {
                Some(c) => format!("no convolution named `{n}`; did you mean `{c}`?"),
                None => format!("no convolution named `{n}`; the convolutions are {}", names.join(", ")),
            }
        }),
    }
}

/// Indices of dead filters: L2 norm at most `DEAD_FRACTION` of the median norm.
pub fn dead_filters(f: &Filters) -> Vec<usize> {
    let norms: Vec<f32> = (0..f.shape[0]).map(|o| f.filter(o).iter().map(|v| v * v).sum::<f32>().sqrt()).collect();
    let mut sorted = norms.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    norms
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n <= DEAD_FRACTION * median || (median == 0.0 && n == 0.0))
        .map(|(i, _)| i)
        .collect()
}

/// The filters as an image.
pub struct Picture {
    /// The image.
    pub image: RgbImage,
    /// How many filters (and channels per filter) are shown, when the layer is too large.
    pub shown_filters: usize,
    /// How many channels of each filter are shown.
    pub shown_channels: usize,
}

/// Draws the filters as tiles, each normalised to its own range; dead ones framed and crossed.
pub fn render_filters(f: &Filters, dead: &[usize]) -> Picture {
    let [out, cin, kh, kw] = f.shape;
    let rgb = cin == 3;
    // Tiles at least 48 pixels wide, whole-pixel scaling.
    let scale = (48usize.div_ceil(kh.max(kw))).max(1) as u32;
    let (tw, th) = (kw as u32 * scale, kh as u32 * scale);
    let mut channels = if rgb { 1 } else { cin };
    let mut filters = out;
    // Channel tiles per filter in a small grid of their own.
    let layout = |channels: usize, filters: usize| {
        let ccols = (channels as f64).sqrt().ceil().max(1.0) as u32;
        let crows = (channels as u32).div_ceil(ccols);
        let (cell_w, cell_h) = (ccols * (tw + 1) + 7, crows * (th + 1) + 7);
        let cols = (filters as f64).sqrt().ceil().max(1.0) as u32;
        let rows = (filters as u32).div_ceil(cols);
        (ccols, cell_w, cell_h, cols, rows)
    };
    while {
        let (_, cw, ch, cols, rows) = layout(channels, filters);
        (cols * cw > MAX_SIDE || rows * ch > MAX_SIDE) && (channels > 1 || filters > 1)
    } {
        if channels > 16 {
            channels = 16;
        } else {
            filters = filters.div_ceil(2);
        }
    }
    let (ccols, cell_w, cell_h, cols, rows) = layout(channels, filters);
    let mut img = RgbImage::from_pixel(cols * cell_w + 3, rows * cell_h + 3, Rgb([255, 255, 255]));
    for o in 0..filters {
        let w = f.filter(o);
        let (lo, hi) = w.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let norm = |v: f32| if hi > lo { ((v - lo) / (hi - lo) * 255.0).round() as u8 } else { 128 };
        let (cx, cy) = ((o as u32 % cols) * cell_w + 5, (o as u32 / cols) * cell_h + 5);
        for c in 0..channels {
            let (ox, oy) = (cx + (c as u32 % ccols) * (tw + 1), cy + (c as u32 / ccols) * (th + 1));
            for y in 0..kh {
                for x in 0..kw {
                    let at = |ch: usize| w[(ch * kh + y) * kw + x];
                    let px = if rgb { Rgb([norm(at(0)), norm(at(1)), norm(at(2))]) } else { Rgb([norm(at(c)); 3]) };
                    for dy in 0..scale {
                        for dx in 0..scale {
                            img.put_pixel(ox + x as u32 * scale + dx, oy + y as u32 * scale + dy, px);
                        }
                    }
                }
            }
        }
        if dead.contains(&o) {
            // A red frame and a cross over the cell.
            let red = Rgb([220, 30, 30]);
            let (x0, y0, x1, y1) = (cx - 3, cy - 3, cx + cell_w - 5, cy + cell_h - 5);
            for x in x0..=x1 {
                for t in 0..2 {
                    img.put_pixel(x, y0 + t, red);
                    img.put_pixel(x, y1 - t, red);
                }
            }
            for y in y0..=y1 {
                for t in 0..2 {
                    img.put_pixel(x0 + t, y, red);
                    img.put_pixel(x1 - t, y, red);
                }
            }
            let (w, h) = ((x1 - x0) as f64, (y1 - y0) as f64);
            for i in 0..=(w.max(h) as u32) {
                let t = i as f64 / w.max(h);
                let (x, y) = (x0 + (t * w) as u32, y0 + (t * h) as u32);
                img.put_pixel(x, y, red);
                img.put_pixel(x0 + (t * w) as u32, y1 - (t * h) as u32, red);
            }
        }
    }
    Picture { image: img, shown_filters: filters, shown_channels: channels }
}
