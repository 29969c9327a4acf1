//! Shape arithmetic as small pure functions, with PyTorch's semantics and checked arithmetic.
//! The checker, the interpreter and the JIT all size their loops from these, so they cannot
//! disagree about an output size.

use std::fmt;

/// A tensor shape at batch 1: a feature map or a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A `c x h x w` feature map.
    Map {
        /// Channels.
        c: u64,
        /// Height.
        h: u64,
        /// Width.
        w: u64,
    },
    /// A vector of `n` features.
    Flat {
        /// Features.
        n: u64,
    },
}

/// No tensor may hold more elements than this (4 TiB of f32): larger is certainly a mistake, and
/// the bound keeps every cost product far from u64 overflow checks on realistic networks.
pub const MAX_ELEMENTS: u64 = 1 << 40;

impl Shape {
    /// The number of values, if it fits in 64 bits.
    pub fn elements(&self) -> Option<u64> {
        match *self {
            Shape::Map { c, h, w } => c.checked_mul(h)?.checked_mul(w),
            Shape::Flat { n } => Some(n),
        }
    }

    /// Channels of a map, length of a vector: what bn normalises over and concat stacks.
    pub fn channels(&self) -> u64 {
        match *self {
            Shape::Map { c, .. } => c,
            Shape::Flat { n } => n,
        }
    }

    /// Spatial size of a map; a vector counts as 1x1.
    pub fn spatial(&self) -> (u64, u64) {
        match *self {
            Shape::Map { h, w, .. } => (h, w),
            Shape::Flat { .. } => (1, 1),
        }
    }

    /// `[c, h, w]` or `[n]`.
    pub fn to_vec(&self) -> Vec<u64> {
        match *self {
            Shape::Map { c, h, w } => vec![c, h, w],
            Shape::Flat { n } => vec![n],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Map { c, h, w } => write!(f, "{c}x{h}x{w}"),
            Shape::Flat { n } => write!(f, "{n}"),
        }
    }
}

/// Why a window does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeomError {
    /// The (padded) input is smaller than the (effective) kernel.
    Shrinks {
        /// The (effective) kernel.
        kernel: u64,
        /// The padded input length.
        padded: u64,
    },
    /// The arithmetic overflows 64 bits.
    Overflow,
}

/// `dilation * (kernel - 1) + 1`: the extent of a dilated kernel.
pub(crate) fn effective_kernel(kernel: u64, dilation: u64) -> Option<u64> {
    dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)
}

/// Output length of a convolution along one axis: floor((L + 2p - d(k-1) - 1) / s) + 1.
pub fn conv_out_len(len: u64, kernel: u64, stride: u64, pad: u64, dilation: u64) -> Result<u64, GeomError> {
    let eff = effective_kernel(kernel, dilation).ok_or(GeomError::Overflow)?;
    let padded = pad.checked_mul(2).and_then(|p| p.checked_add(len)).ok_or(GeomError::Overflow)?;
    if padded < eff || stride == 0 {
        return Err(GeomError::Shrinks { kernel: eff, padded });
    }
    Ok((padded - eff) / stride + 1)
}

/// Output length of max/avg pooling along one axis, as `torch.nn.MaxPool2d` computes it: in ceil
/// mode the count rounds up, but the last window must start inside the input or its left padding
/// (`(out - 1) * stride < len + pad`).
pub fn pool_out_len(len: u64, kernel: u64, stride: u64, pad: u64, ceil: bool) -> Result<u64, GeomError> {
    let padded = pad.checked_mul(2).and_then(|p| p.checked_add(len)).ok_or(GeomError::Overflow)?;
    if padded < kernel || stride == 0 {
        return Err(GeomError::Shrinks { kernel, padded });
    }
    let span = padded - kernel;
    let mut out = if ceil { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    if ceil && (out - 1) * stride >= len + pad {
        out -= 1;
    }
    Ok(out)
}

/// The input window `[start, end)` that adaptive average pooling averages for output index `i`:
/// `floor(i * L / out)` to `ceil((i + 1) * L / out)`, as PyTorch defines it.
pub(crate) fn adaptive_window(i: u64, len: u64, out: u64) -> (u64, u64) {
    let start = (i as u128 * len as u128 / out as u128) as u64;
    let end = ((i as u128 + 1) * len as u128).div_ceil(out as u128) as u64;
    (start, end)
}

/// The largest window adaptive average pooling uses along an axis (for receptive fields).
pub(crate) fn adaptive_max_window(len: u64, out: u64) -> u64 {
    if len % out == 0 {
        return len / out;
    }
    // Windows differ by at most one from each other in length beyond floor(len/out); scanning is
    // exact and `out` is bounded by MAX_ELEMENTS through the shape checks.
    (0..out.min(1 << 20))
        .map(|i| {
            let (s, e) = adaptive_window(i, len, out);
            e - s
        })
        .max()
        .unwrap_or(1)
}

/// How many trailing rows (or columns) of real input no window reads, given `out` windows.
/// Windows that only miss right padding drop nothing.
pub(crate) fn dropped_trailing(len: u64, kernel: u64, stride: u64, pad: u64, dilation: u64, out: u64) -> u64 {
    let eff = effective_kernel(kernel, dilation).unwrap_or(u64::MAX) as i128;
    let last_read = (out as i128 - 1) * stride as i128 + eff - 1 - pad as i128;
    let last_row = len as i128 - 1;
    if last_read >= last_row { 0 } else { (last_row - last_read) as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_lengths_match_pytorch() {
        // AlexNet conv1: 224, k11, s4, p2 -> 55.
        assert_eq!(conv_out_len(224, 11, 4, 2, 1), Ok(55));
        // ResNet stem: 224, k7, s2, p3 -> 112.
        assert_eq!(conv_out_len(224, 7, 2, 3, 1), Ok(112));
        // Same-size 3x3.
        assert_eq!(conv_out_len(13, 3, 1, 1, 1), Ok(13));
        // Dilation 2 with padding 2 keeps the size.
        assert_eq!(conv_out_len(10, 3, 1, 2, 2), Ok(10));
        // Stride that does not divide: floor((8 + 0 - 3) / 2) + 1 = 3.
        assert_eq!(conv_out_len(8, 3, 2, 0, 1), Ok(3));
        assert_eq!(conv_out_len(5, 11, 4, 2, 1), Err(GeomError::Shrinks { kernel: 11, padded: 9 }));
        assert_eq!(conv_out_len(u64::MAX, 3, 1, 1, 1), Err(GeomError::Overflow));
    }

    #[test]
    fn pool_lengths_with_ceil_mode() {
        // GoogLeNet maxpool1: 112, k3, s2, ceil -> 56 (floor would give 55).
        assert_eq!(pool_out_len(112, 3, 2, 0, true), Ok(56));
        assert_eq!(pool_out_len(112, 3, 2, 0, false), Ok(55));
        // GoogLeNet maxpool4: 14, k2, s2, ceil -> 7.
        assert_eq!(pool_out_len(14, 2, 2, 0, true), Ok(7));
        // The last window must start inside input + left padding: len 5, k2, s2, p1, ceil.
        // Without the rule ceil((5 + 2 - 2) / 2) + 1 = 4, but window 3 would start at 6 >= 5 + 1.
        assert_eq!(pool_out_len(5, 2, 2, 1, true), Ok(3));
        // Inception's stride-1 3x3 pool with pad 1 keeps the size.
        assert_eq!(pool_out_len(28, 3, 1, 1, true), Ok(28));
        // VGG 2x2 pools halve.
        assert_eq!(pool_out_len(224, 2, 2, 0, false), Ok(112));
        // ResNet maxpool 3/2 pad 1 on 112 -> 56.
        assert_eq!(pool_out_len(112, 3, 2, 1, false), Ok(56));
        assert!(pool_out_len(1, 3, 1, 0, true).is_err());
    }

    #[test]
    fn adaptive_windows() {
        // 10 -> 4: [0,3) [2,5) [5,8) [7,10)
        let w: Vec<_> = (0..4).map(|i| adaptive_window(i, 10, 4)).collect();
        assert_eq!(w, vec![(0, 3), (2, 5), (5, 8), (7, 10)]);
        // Identity when sizes agree (AlexNet's 6x6 at 224).
        assert!((0..6).all(|i| adaptive_window(i, 6, 6) == (i, i + 1)));
        // Upsampling repeats: 2 -> 3: [0,1) [0,2) [1,2)
        let w: Vec<_> = (0..3).map(|i| adaptive_window(i, 2, 3)).collect();
        assert_eq!(w, vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(adaptive_max_window(5, 3), 3);
        assert_eq!(adaptive_max_window(14, 7), 2);
    }

    #[test]
    fn dropped_rows() {
        // 7x7 input, 2x2 pool stride 2: 3 windows cover rows 0..5, row 6 is dropped.
        assert_eq!(dropped_trailing(7, 2, 2, 0, 1, 3), 1);
        // ResNet's 3/2 pool with pad 1 on 112: the last window ends on the last row.
        assert_eq!(dropped_trailing(112, 3, 2, 1, 1, 56), 0);
        assert_eq!(dropped_trailing(224, 2, 2, 0, 1, 112), 0);
    }
}
