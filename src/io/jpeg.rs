//! Strict JPEG checking. JPEG carries no checksum, and decoders conceal damage (grey blocks,
//! smeared colours) rather than report it, so cnnc checks the stream itself before decoding:
//! the segment structure (lengths, markers, an end-of-image marker), and for baseline Huffman
//! scans, that the entropy-coded data decodes to exactly its MCUs: every code valid, no block
//! past 64 coefficients, restart markers where the restart interval puts them and in sequence,
//! and no data left over before the next marker. A cut or a flipped bit almost always breaks one
//! of these, as it does for libjpeg's "Corrupt JPEG data" warnings. Progressive and arithmetic
//! scans are checked for structure only.

/// A JPEG's frame: size and components (id, horizontal and vertical sampling).
struct Frame {
    width: usize,
    height: usize,
    components: Vec<(u8, usize, usize)>,
    baseline: bool,
}

/// A canonical Huffman table in the form of the standard's DECODE procedure (F.2.2.3).
#[derive(Clone, Default)]
struct Huffman {
    max_code: [i32; 17],
    val_ptr: [i32; 17],
    min_code: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Huffman {
        let mut h = Huffman { values, ..Huffman::default() };
        let (mut code, mut k) = (0i32, 0i32);
        for l in 1..=16 {
            let n = counts[l - 1] as i32;
            if n == 0 {
                h.max_code[l] = -1;
            } else {
                h.val_ptr[l] = k;
                h.min_code[l] = code;
                code += n;
                k += n;
                h.max_code[l] = code - 1;
            }
            code <<= 1;
        }
        h
    }
}

/// Reads entropy-coded bits, removing stuffed zero bytes, and stops at a marker.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    byte: u8,
    left: u8,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u8, String> {
        if self.left == 0 {
            let b = *self.data.get(self.pos).ok_or("the scan runs past the end of the file")?;
            if b == 0xFF {
                match self.data.get(self.pos + 1) {
                    Some(0x00) => self.pos += 1,
                    _ => return Err("the scan's data ends before its last block".into()),
                }
            }
            self.pos += 1;
            self.byte = b;
            self.left = 8;
        }
        self.left -= 1;
        Ok((self.byte >> self.left) & 1)
    }

    fn bits(&mut self, n: u8) -> Result<(), String> {
        for _ in 0..n {
            self.bit()?;
        }
        Ok(())
    }

    fn decode(&mut self, h: &Huffman) -> Result<u8, String> {
        let mut code = 0i32;
        for l in 1..=16 {
            code = (code << 1) | self.bit()? as i32;
            if h.max_code[l] >= 0 && code <= h.max_code[l] && code >= h.min_code[l] {
                let i = (h.val_ptr[l] + code - h.min_code[l]) as usize;
                return h.values.get(i).copied().ok_or_else(|| "a Huffman table is short".into());
            }
        }
        Err("an invalid Huffman code".into())
    }

    /// Byte-aligns at the end of an interval or scan: the rest of the byte is padding ones.
    fn align(&mut self) -> Result<(), String> {
        if self.left > 0 && (self.byte & ((1u16 << self.left) - 1) as u8) != ((1u16 << self.left) - 1) as u8 {
            return Err("corrupt data at the end of a scan".into());
        }
        self.left = 0;
        Ok(())
    }
}

fn u16_at(d: &[u8], i: usize) -> Result<usize, String> {
    match d.get(i..i + 2) {
        Some(b) => Ok(((b[0] as usize) << 8) | b[1] as usize),
        None => Err("a segment runs past the end of the file".into()),
    }
}

/// Checks a whole JPEG file; the error says what is wrong.
pub(crate) fn check_jpeg(d: &[u8]) -> Result<(), String> {
    if !d.starts_with(&[0xFF, 0xD8]) {
        return Err("no start-of-image marker".into());
    }
    let (mut pos, mut frame, mut restart) = (2usize, None::<Frame>, 0usize);
    let (mut dc, mut ac) = (vec![Huffman::default(); 4], vec![Huffman::default(); 4]);
    let mut scans = 0;
    loop {
        while d.get(pos) == Some(&0xFF) && d.get(pos + 1) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        let (Some(0xFF), Some(&m)) = (d.get(pos), d.get(pos + 1)) else {
            return Err(if pos >= d.len() { "no end-of-image marker".into() } else { "a segment is corrupt".into() });
        };
        pos += 2;
        match m {
            0xD9 => return if scans > 0 { Ok(()) } else { Err("no image data".into()) },
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let len = u16_at(d, pos)?;
        let seg = d.get(pos + 2..pos + len).filter(|_| len >= 2).ok_or("a segment runs past the end of the file")?;
        pos += len;
        match m {
            0xC0..=0xCF if !matches!(m, 0xC4 | 0xC8 | 0xCC) => frame = Some(read_frame(seg, m)?),
            0xC4 => read_tables(seg, &mut dc, &mut ac)?,
            0xDD => restart = u16_at(seg, 0)?,
            0xDA => {
                let f = frame.as_ref().ok_or("a scan before the frame header")?;
                pos = scan(d, pos, seg, f, restart, &dc, &ac)?;
                scans += 1;
            }
            _ => {}
        }
    }
}

fn read_frame(seg: &[u8], marker: u8) -> Result<Frame, String> {
    let (height, width, n) = (u16_at(seg, 1)?, u16_at(seg, 3)?, *seg.get(5).ok_or("a short frame header")? as usize);
    let mut components = Vec::new();
    for i in 0..n {
        let c = seg.get(6 + 3 * i..9 + 3 * i).ok_or("a short frame header")?;
        let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err("a component's sampling factors are invalid".into());
        }
        components.push((c[0], h, v));
    }
    if width == 0 || height == 0 || components.is_empty() {
        return Err("the frame header has no size or components".into());
    }
    Ok(Frame { width, height, components, baseline: matches!(marker, 0xC0 | 0xC1) })
}

fn read_tables(mut seg: &[u8], dc: &mut [Huffman], ac: &mut [Huffman]) -> Result<(), String> {
    while !seg.is_empty() {
        let head = seg[0];
        let counts: [u8; 16] = seg.get(1..17).ok_or("a short Huffman table")?.try_into().map_err(|_| "short")?;
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        let values = seg.get(17..17 + n).ok_or("a short Huffman table")?.to_vec();
        let table = Huffman::new(&counts, values);
        let slot = (head & 15) as usize;
        let tables = if head >> 4 == 0 { &mut *dc } else { &mut *ac };
        *tables.get_mut(slot).ok_or("a Huffman table id above 3")? = table;
        seg = &seg[17 + n..];
    }
    Ok(())
}

/// Checks one scan starting at `pos` (after its header `seg`); returns where its data ends.
fn scan(
    d: &[u8],
    pos: usize,
    seg: &[u8],
    f: &Frame,
    restart: usize,
    dc: &[Huffman],
    ac: &[Huffman],
) -> Result<usize, String> {
    let ns = *seg.first().ok_or("a short scan header")? as usize;
    let mut comps = Vec::new();
    for i in 0..ns {
        let c = seg.get(1 + 2 * i..3 + 2 * i).ok_or("a short scan header")?;
        let (_, h, v) = *f.components.iter().find(|k| k.0 == c[0]).ok_or("a scan names an unknown component")?;
        comps.push((h, v, (c[1] >> 4) as usize, (c[1] & 15) as usize));
    }
    let spectral = seg.get(1 + 2 * ns..4 + 2 * ns).ok_or("a short scan header")?;
    if !f.baseline || spectral != [0, 63, 0] {
        // Progressive or arithmetic: find the end of the entropy-coded data only.
        return Ok(skip_entropy(d, pos));
    }
    let (hmax, vmax) = f.components.iter().fold((1, 1), |(a, b), c| (a.max(c.1), b.max(c.2)));
    let blocks_of = |(h, v): (usize, usize)| -> (usize, usize) {
        let w = (f.width * h).div_ceil(hmax).div_ceil(8);
        let hh = (f.height * v).div_ceil(vmax).div_ceil(8);
        (w, hh)
    };
    // Per MCU: (component index, blocks); and the MCU count.
    let (mcus, per_mcu): (usize, Vec<(usize, usize)>) = if ns == 1 {
        let (w, h) = blocks_of((comps[0].0, comps[0].1));
        (w * h, vec![(0, 1)])
    } else {
        let mcus = f.width.div_ceil(8 * hmax) * f.height.div_ceil(8 * vmax);
        (mcus, comps.iter().enumerate().map(|(i, c)| (i, c.0 * c.1)).collect())
    };
    let mut bits = Bits { data: d, pos, byte: 0, left: 0 };
    let mut expected_rst = 0u8;
    for mcu in 0..mcus {
        if restart > 0 && mcu > 0 && mcu % restart == 0 {
            bits.align()?;
            if d.get(bits.pos..bits.pos + 2) != Some(&[0xFF, 0xD0 + expected_rst]) {
                return Err("a restart marker is missing or out of sequence".into());
            }
            bits.pos += 2;
            expected_rst = (expected_rst + 1) % 8;
        }
        for &(c, blocks) in &per_mcu {
            let (_, _, td, ta) = comps[c];
            let (dct, act) = (dc.get(td).ok_or("a missing table")?, ac.get(ta).ok_or("a missing table")?);
            for _ in 0..blocks {
                block(&mut bits, dct, act)?;
            }
        }
    }
    bits.align()?;
    let end = skip_entropy(d, bits.pos);
    if end != bits.pos {
        return Err(format!("{} bytes of corrupt data before the next marker", end - bits.pos));
    }
    Ok(end)
}

/// One 8x8 block's Huffman codes: a DC difference, then AC runs up to the end of block.
fn block(bits: &mut Bits, dc: &Huffman, ac: &Huffman) -> Result<(), String> {
    let s = bits.decode(dc)?;
    if s > 11 {
        return Err("a DC difference out of range".into());
    }
    bits.bits(s)?;
    let mut k = 1;
    while k < 64 {
        let rs = bits.decode(ac)?;
        let (r, s) = ((rs >> 4) as usize, rs & 15);
        if s == 0 {
            if r != 15 {
                return Ok(());
            }
            k += 16;
            continue;
        }
        k += r;
        if k > 63 {
            return Err("a block with more than 64 coefficients".into());
        }
        bits.bits(s)?;
        k += 1;
    }
    if k > 64 { Err("a block with more than 64 coefficients".into()) } else { Ok(()) }
}

/// The position of the first marker (other than a restart) at or after `pos`.
fn skip_entropy(d: &[u8], mut pos: usize) -> usize {
    while pos + 1 < d.len() {
        if d[pos] == 0xFF && d[pos + 1] != 0x00 && !(0xD0..=0xD7).contains(&d[pos + 1]) {
            return pos;
        }
        pos += 1;
    }
    d.len()
}
