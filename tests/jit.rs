//! The JIT against the interpreter (the specification): every example network at a reduced
//! input size, randomly generated small networks, edge shapes, thread-count independence, the
//! memory plan, and the `bench` and `compile` commands.
//!
//! Tolerance: max|diff| <= 1e-4 * max|reference|. The JIT folds batch norm into the weights and
//! sums in a different order; both move f32 results by ~1e-6 relative, while a wrong index or
//! window moves them by O(1).

mod common;
use cnnc::Input;
use cnnc::check_source;
use cnnc::{Cores, JitModel, JitOptions};
use cnnc::{ParamKind, param_specs};
use cnnc::{Tensor, forward};
use cnnc::{Weights, random_weights};
use common::*;
use ndarray::Array4;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// He-initialised weights with non-trivial biases and batch-norm statistics, so that folding
/// and epilogues are exercised.
fn interesting_weights(net: &cnnc::Network, shapes: &[cnnc::Shape], seed: u64) -> Weights {
    let specs = param_specs(net, shapes);
    let mut w = random_weights(&specs, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for s in &specs {
        let n = s.elements();
        let data: Option<Vec<f32>> = match s.kind {
            ParamKind::Bias => Some((0..n).map(|_| rng.random_range(-0.2..0.2)).collect()),
            ParamKind::RunningMean => Some((0..n).map(|_| rng.random_range(-0.3..0.3)).collect()),
            ParamKind::RunningVar => Some((0..n).map(|_| rng.random_range(0.5..2.0)).collect()),
            ParamKind::Weight if s.shape.len() == 1 => Some((0..n).map(|_| rng.random_range(0.5..1.5)).collect()),
            ParamKind::Weight => None,
        };
        if let Some(d) = data {
            w.insert(s.name.clone(), d);
        }
    }
    w
}

fn image(input: Input, batch: usize, seed: u64) -> Array4<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array4::from_shape_fn((batch, input.c as usize, input.h as usize, input.w as usize), |_| {
        rng.random_range(-1.5..1.5)
    })
}

/// Every eligible convolution takes Winograd, however few its multiply-accumulates: the shapes
/// of these tests are small, and they must reach Winograd's edge cases.
fn all_winograd() -> JitOptions {
    JitOptions { winograd_min_macs: 0, ..JitOptions::default() }
}

fn rows(t: &Tensor) -> Vec<f32> {
    t.to_rows().iter().copied().collect()
}

/// Runs `source` (at `input` if given) on both backends; returns (max|diff|, max|reference|).
fn compare(source: &str, input: Option<Input>, batch: usize, threads: usize) -> (f32, f32) {
    compare_with(source, input, batch, threads, all_winograd())
}

fn compare_with(source: &str, input: Option<Input>, batch: usize, threads: usize, options: JitOptions) -> (f32, f32) {
    let report = check_source(source, "case", input);
    let checked = report.checked.unwrap_or_else(|| panic!("does not check: {:#?}\n{source}", report.diagnostics));
    let (net, shapes) = (&checked.network, &checked.shapes);
    let weights = interesting_weights(net, shapes, 7);
    let x = image(checked.input, batch, 11);
    let reference = forward(net, &weights, x.clone(), &[net.output()]).remove(0);
    let mut jit =
        JitModel::compile_with(net, shapes, weights, threads, options).unwrap_or_else(|e| panic!("{e}\n{source}"));
    let got = jit.forward(&x).output;
    let (r, g) = (rows(&reference), rows(&got));
    assert_eq!(r.len(), g.len());
    let diff = r.iter().zip(&g).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = r.iter().fold(0.0f32, |a, b| a.max(b.abs()));
    (diff, scale)
}

fn assert_close(source: &str, input: Option<Input>, batch: usize, threads: usize) {
    let (diff, scale) = compare(source, input, batch, threads);
    assert_small(diff, scale, threads, source);
}

fn assert_small(diff: f32, scale: f32, threads: usize, source: &str) {
    assert!(diff <= 1e-4 * scale + 1e-6, "max|diff| {diff} vs max|reference| {scale} ({threads} threads)\n{source}");
    assert!(diff.is_finite() && scale.is_finite() && scale > 0.0, "degenerate output\n{source}");
}

#[test]
fn jit_matches_interpreter_on_every_example() {
    for file in cnn_files("examples") {
        let mut source = std::fs::read_to_string(&file).unwrap();
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        // Reduced inputs keep the interpreter fast. Networks whose flatten feeds fc directly get
        // an adaptive pool there (fc's weights keep their shape), as torchvision's VGG has.
        let input = match name.as_str() {
            "digits" | "inception_naive" | "inception_reduced" | "stack3x3" | "conv5x5" => None,
            n if n.starts_with("vgg") => {
                source =
                    source.replace("stage classifier { flatten;", "stage classifier { adaptive_avgpool 7x7; flatten;");
                Some(Input { c: 3, h: 32, w: 32 })
            }
            "zfnet" => {
                source =
                    source.replace("stage classifier { flatten;", "stage classifier { adaptive_avgpool 6x6; flatten;");
                Some(Input { c: 3, h: 64, w: 64 })
            }
            "alexnet" => Some(Input { c: 3, h: 67, w: 67 }),
            // Its unpadded convs and pools need at least 75x75.
            "inception_v3" => Some(Input { c: 3, h: 75, w: 75 }),
            // Its final 7x7 average pool needs the full size.
            "googlenet_paper" => None,
            _ => Some(Input { c: 3, h: 64, w: 64 }),
        };
        let source = if name.starts_with("inception_") {
            // 256 channels at 28x28 is slow in the interpreter; the module is the same at 12x12.
            source.replace("input 256x28x28", "input 256x12x12")
        } else {
            source
        };
        assert_close(&source, input, 2, 2);
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let source = std::fs::read_to_string(example("googlenet.cnn")).unwrap();
    let report = check_source(&source, "googlenet", Some(Input { c: 3, h: 64, w: 64 }));
    let checked = report.checked.unwrap();
    let weights = interesting_weights(&checked.network, &checked.shapes, 3);
    let x = image(checked.input, 1, 5);
    let outputs: Vec<Vec<f32>> = [1, 2, 3]
        .iter()
        .map(|&t| {
            let mut jit =
                JitModel::compile_with(&checked.network, &checked.shapes, weights.clone(), t, all_winograd()).unwrap();
            rows(&jit.forward(&x).output)
        })
        .collect();
    assert!(outputs[0] == outputs[1] && outputs[1] == outputs[2], "bitwise identical for 1, 2 and 3 threads");
}

/// A batch runs one image per thread, each on a lane of its own (`JitModel::run_batch`): its
/// output and logits are bitwise those of one thread running the images one at a time, on the
/// first batch (which builds the lanes) and the next, with more images than threads, as many,
/// and fewer (then the images run one at a time on all threads).
#[test]
fn batches_run_one_image_per_thread_with_the_same_results() {
    // GoogLeNet with a softmax, so that there are logits too.
    let source = std::fs::read_to_string(example("googlenet.cnn")).unwrap() + "softmax\n";
    let report = check_source(&source, "googlenet", Some(Input { c: 3, h: 64, w: 64 }));
    let checked = report.checked.unwrap();
    let weights = interesting_weights(&checked.network, &checked.shapes, 3);
    let x = image(checked.input, 5, 7);
    let run = |threads: usize, x: &ndarray::Array4<f32>, times: usize| {
        let mut jit =
            JitModel::compile_with(&checked.network, &checked.shapes, weights.clone(), threads, all_winograd())
                .unwrap();
        let mut last = None;
        for _ in 0..times {
            let out = jit.forward(x);
            let now = (rows(&out.output), out.logits.as_ref().map(rows));
            assert!(last.as_ref().is_none_or(|l| *l == now), "the same results from the lanes' second batch");
            last = Some(now);
        }
        last.unwrap()
    };
    let one = run(1, &x, 1);
    assert!(one.1.is_some(), "logits");
    assert!(one == run(2, &x, 2), "2 threads, 5 images");
    assert!(one == run(3, &x, 2), "3 threads, 5 images");
    let two = x.slice(ndarray::s![0..2, .., .., ..]).to_owned();
    let first_two = run(1, &two, 1);
    assert!(first_two == run(2, &two, 2), "2 threads, 2 images");
    assert!(first_two == run(3, &two, 2), "3 threads, 2 images: one at a time");
    assert_eq!(first_two.0[..], one.0[..first_two.0.len()], "an image's results do not depend on the batch");
}

#[test]
fn edge_shapes() {
    let cases = [
        // A single channel, odd sizes, a 1x1 output.
        "input 1x7x5\nconv 3x3 3 relu\nconv 3x3 5 stride 2\nmaxpool 2 ceil\nconv 2x2 7 pad 0",
        // 1x1 spatial from the start.
        "input 6x1x1\nconv 1x1 10 relu\nconv 3x3 5\nflatten\nfc 3",
        // Channel counts that are not multiples of 4 everywhere, concatenation included.
        "input 3x9x9\nbranch { conv 1x1 5 }\nbranch { conv 3x3 7 relu }\nbranch { maxpool 3 stride 1 pad 1 }\nconv 3x3 6\ngap\nflatten\nfc 9",
        // Residual on odd sizes with a projection.
        "input 5x11x13\nresidual { conv 3x3 6 stride 2 nobias; bn; relu; conv 3x3 6 nobias; bn } shortcut { conv 1x1 6 stride 2 nobias; bn }\nrelu\ngap\nflatten\nfc 2",
        // Softmax over channels of a map, and lrn.
        "input 7x4x4\nlrn 3 alpha 0.1 beta 0.6 k 1.5\nsoftmax",
        // An elementwise kernel (the gate) writing a fresh storage laid out like its input (both
        // read by padded convs) must zero its halo: the arena there held an earlier tensor.
        "input 1x10x16\nresidual { conv 3x3 1; conv 3x3 1 }\ngate { gap; conv 1x1 1 }\nconv 3x3 1\nconv 3x3 1",
        // Depthwise convolutions: odd channel counts, strides, dilation, a 7x7 kernel (taps not
        // held in registers), a residual and activations in the epilogue, bn folded.
        "input 5x13x11\nconv 3x3 5 groups 5 stride 2 nobias\nbn\nrelu6\nconv 7x7 5 groups 5 pad 3\nresidual { conv 5x5 5 groups 5 dilation 2 pad 4; silu }\nconv 3x3 5 groups 5 pad 0 stride 1x2",
        // fc straight after flatten of a map with a halo-padded producer.
        "input 2x6x6\nconv 3x3 4\nflatten\nrelu\nfc 5\nsoftmax",
        // ... and of one too large to gather on the stack (160,000 values): the plain kernel.
        "input 2x200x200\nconv 3x3 4\nflatten\nfc 3",
        // Winograd: odd sizes (edge tiles), padding 0 to 2, output channels not in whole blocks,
        // fused max and average pools, a residual with folded bn, a concatenation read and
        // written at channel offsets, and a map large enough for several chunks of tiles.
        "input 16x5x9\nconv 3x3 20 relu\nconv 3x3 18 pad 2\nmaxpool 2\nconv 3x3 16 pad 0",
        "input 20x7x7\nconv 3x3 16 nobias\nbn\nrelu\nconv 3x3 24\navgpool 2\nsilu",
        "input 16x7x10\nresidual { conv 3x3 16 nobias; bn; relu; conv 3x3 16 nobias; bn }\nrelu\nconv 3x3 16\ngap\nflatten\nfc 3",
        "input 8x6x6\n{\nbranch { conv 1x1 16 relu; conv 3x3 20 relu }\nbranch { conv 1x1 24 }\n}\nconv 3x3 16 relu\nconv 3x3 16",
        "input 16x61x67\nconv 3x3 16 relu\nconv 3x3 24 pad 1\nmaxpool 2",
        // 1x1 convolutions whose input channel blocks lie a page or more apart touch their input
        // ahead: padded, strided, with a partial last block, on odd sizes.
        "input 14x17x19\nconv 1x1 12 pad 1\nrelu\nconv 1x1 16 stride 2 pad 1\nconv 1x1 8 pad 2 stride 1x2",
        // The 1x1 tiles: 3 blocks by 3 pixels (12 and 36 channels) and 2 blocks by 5 or 4 pixels
        // (40 channels on 13 columns, 8 on 7), with remainder columns; 29 blocks take the model
        // on 7 rows, and 2 x 5 or 2 x 4 pixels by one block on 6 (116 channels on 13 columns,
        // 20 on 7, with a partial last input block).
        "input 10x7x13\nconv 1x1 12 relu\nconv 1x1 40\nconv 3x3 8 stride 2\nconv 1x1 36\nconv 1x1 116 relu\nconv 1x1 8",
        "input 10x6x13\nconv 1x1 116 relu\nconv 1x1 22\nconv 3x3 20 pad 0 stride 1x2\nconv 1x1 20 relu",
        // Winograd F(5x5, 3x3), which the plan takes where its tiles need 15% fewer products
        // than F(4x4)'s (10x9 and 20x19 outputs: 4 and 16 tiles, against 9 and 25 padded to 12
        // and 28): an edge tile, output channels not in whole blocks, bn folded, a residual.
        "input 16x10x9\nconv 3x3 18 pad 1 relu\nconv 3x3 16 pad 1 nobias\nbn\nrelu",
        "input 16x20x19\nresidual { conv 3x3 16 pad 1 nobias; bn; relu; conv 3x3 16 pad 1 nobias; bn }\nrelu",
        // Winograd F(4x4, 5x5) and F(2x2, 5x5): padding 0 to 4, odd sizes (edge tiles),
        // output channels not in whole blocks, a fused pool, bn folded, a residual.
        "input 16x11x13\nconv 5x5 20 pad 2 relu\nconv 5x5 18 pad 4\nmaxpool 2\nconv 5x5 16 pad 0",
        "input 16x9x9\nresidual { conv 5x5 16 pad 2 nobias; bn; relu; conv 5x5 16 pad 2 nobias; bn }\navgpool 2\nconv 5x5 24 pad 1",
        "input 16x37x35\nconv 5x5 20 pad 2 relu\nconv 5x5 16 pad 3",
        // Winograd F(2, 7) along one axis (Inception's 1x7 and 7x1): padding 0 to 3 along the
        // kernel, odd sizes (edge tiles), an odd block count, bn folded, a residual, a pool
        // after (not fused: it does not divide the 1-pixel side of a tile).
        "input 16x9x13\nconv 1x7 20 pad 0x3 relu\nconv 7x1 18 pad 3x0\nconv 1x7 16 pad 0x0\nconv 7x1 16 pad 2x0",
        "input 16x17x17\nresidual { conv 1x7 16 pad 0x3 nobias; bn; relu; conv 7x1 16 pad 3x0 nobias; bn }\nmaxpool 2\nconv 1x7 24 pad 0x3",
        // ... and 1x3, 3x1, 1x5, 5x1 (F(2), F(4) and F(6) along the kernel, by length).
        "input 16x8x19\nconv 1x3 20 pad 0x1 relu\nconv 3x1 16 pad 1x0\nconv 1x5 16 pad 0x2\nconv 5x1 18 pad 1x0\nconv 3x1 16\nconv 1x3 16 pad 0x2",
        // 1x1 convolutions on odd maps without halos run on one row of pixels
        // (`conv::group::flatten_pointwise`): writing into a concatenation at a channel
        // offset, with a residual sum, a partial last channel block, and a 1x1 map beside.
        "input 24x9x7\nbranch { conv 1x1 12 relu }\nbranch { conv 1x1 10 }\nresidual { conv 1x1 22; relu; conv 1x1 22 }\nconv 1x1 5\nmaxpool 7 stride 7 pad 3\nconv 1x1 6",
        // A 1x1 convolution before an average pool runs on the pooled input
        // (`conv::group::pool_first`): rows and columns the windows drop, bn folded, a bias,
        // 3x3 and 2x1 windows, an input concatenated at channel offsets and an output read by
        // a padded convolution; with an activation between them it does not.
        "input 12x9x11\nconv 1x1 20 nobias\nbn\navgpool 2\nconv 1x1 6\navgpool 3 stride 3",
        "input 8x8x9\nbranch { conv 3x3 6 }\nbranch { conv 1x1 5 }\nconv 1x1 9 nobias\navgpool 2x1 stride 2x1\nconv 3x3 4",
        "input 10x12x8\nconv 1x1 7\nbn\nrelu\navgpool 2\nconv 1x1 5 relu\navgpool 2",
        // Strided convolutions through Winograd over the phases of their input
        // (`ConvJob::phase_form`): 7x7 stride 2 (a 4x4 phase form, F(5x5, 4x4)) on 3 and 16
        // channels with padding 3 and 2, bn folded; 5x5 stride 2 (3x3) with a fused pool; 11x11
        // stride 4 (4x4 over 16 phases); 7x7 stride 3 (3x3 over 9); a partial input block, odd
        // sizes (edge tiles and phases of unequal size), a residual.
        "input 3x37x41\nconv 7x7 16 stride 2 pad 3 nobias\nbn\nrelu\nconv 7x7 20 stride 2 pad 2\nconv 5x5 16 stride 2 pad 2\nmaxpool 2",
        "input 3x223x223\nconv 11x11 16 stride 4 pad 2 relu\nresidual { conv 7x7 16 stride 2 pad 3 } shortcut { conv 1x1 16 stride 2 }",
        "input 5x69x71\nconv 7x7 16 stride 2 pad 3 relu\nconv 1x1 16\nconv 7x7 18 stride 3 pad 3",
        // 3x3 stride-2 convolutions split by phase (`ConvJob::split_phases`: four stride-1
        // convolutions of 1x1, 1x2, 2x1 and 2x2 taps summed into the output): padding 1 and 0,
        // odd sizes (edge tiles, phases of unequal size), output channels not in whole
        // blocks, bn folded, an output at a channel offset of a concatenation, several chunks
        // of tiles; and one with a residual sum of its own, which stays direct.
        "input 16x29x31\nconv 3x3 20 stride 2 nobias\nbn\nrelu\nconv 3x3 16 stride 2 pad 0\nconv 3x3 24 stride 2 pad 1",
        "input 16x17x17\nbranch { conv 3x3 20 stride 2 pad 0 relu }\nbranch { maxpool 3 stride 2 }\nconv 1x1 16",
        "input 16x61x59\nconv 3x3 16 stride 2 relu\nresidual { conv 3x3 16 stride 2 } shortcut { conv 1x1 16 stride 2 }",
        // 4x4 stride 2: with padding 2, split into four phases of 2x2 taps (with padding 1 it
        // takes the phase form, whose 3x3 kernel has transforms).
        "input 16x29x26\nconv 4x4 20 stride 2 pad 1 relu\nconv 4x4 16 stride 2 pad 2",
        // A small map of many channels (448 x 448: 4x4 tiles, 29 MB of transformed weights).
        "input 448x7x7\nconv 3x3 448 relu",
        // Small weights over many tiles (`schedule::WINO_SMALL_WEIGHTS`): chunks that each
        // transform their own tiles, in an even number or at least 16, edge tiles, one and two
        // output blocks per register tile, bn folded.
        "input 72x62x61\nconv 3x3 20 pad 1 nobias\nbn\nrelu\nconv 3x3 12",
        "input 72x62x61\nconv 3x3 24 pad 1 relu",
        // Large enough for 6x6 tiles, and small enough for 4x4 ones.
        "input 16x101x103\nconv 3x3 16 relu\nmaxpool 2 stride 9\nconv 3x3 20 pad 2\nconv 3x3 16",
    ];
    for src in cases {
        for batch in [1, 3] {
            assert_close(src, None, batch, 2);
        }
    }
}

/// The register tiles of both core profiles (`schedule`), whichever the host is. 1x1: Zen's 2 x 2
/// pixels by 2 blocks on even heights (odd widths: a remainder column) and 1 x 4 by 2 blocks on
/// odd ones (remainders of 1 to 3 columns, and maps narrower than the tile), Intel's 1 x 3 by 3
/// blocks and 1 x 5 or 1 x 4 by 2, and the odd block counts both share (2 x 5 by one block, or
/// the model's tile on odd heights); padded and strided inputs, partial input blocks, fused
/// activations and a residual. Direct convolutions with taps: Zen's 2 x 3 and 1 x 6 pixels by
/// 2 blocks (even and odd heights, remainder columns, strides, 5x5, 1x7 and 7x1 kernels), and
/// 1 x 5 by 2 blocks on maps 7 to 9 wide.
/// Winograd: Zen's 4 tiles by 2 blocks and larger chunks, several chunks and edge tiles.
/// Zen's 1x1 tiles and Winograd products load their inputs as `Stmt::Broadcast`s (remainder
/// tiles carry only their own accumulators); Intel's as splats.
/// Depthwise: 4 neighbouring pixels on Intel, 6 (3x3) or 8 (5x5, 7x7) on Zen, with remainders.
#[test]
fn register_tiles_of_both_core_profiles() {
    let cases = [
        "input 10x6x13\nconv 1x1 16 relu\nconv 1x1 24\nconv 1x1 8 pad 1\nconv 1x1 116 relu\nconv 1x1 20",
        "input 6x7x9\nconv 1x1 8 relu\nconv 1x1 40 stride 2\nconv 1x1 48\nconv 1x1 36 pad 1\nconv 1x1 12 relu",
        "input 9x5x3\nconv 1x1 16\nconv 1x1 24 relu\nconv 1x1 8 pad 2 stride 1x2\nconv 1x1 20",
        "input 12x8x6\nresidual { conv 1x1 24 nobias; bn; relu; conv 1x1 12 nobias; bn }\nsilu\nconv 1x1 32\ngap\nflatten\nfc 3",
        "input 6x15x22\nconv 3x3 16 relu\nconv 3x3 24 stride 2\nconv 5x5 8\nconv 1x7 16\nconv 7x1 24 relu",
        "input 16x61x67\nconv 3x3 16 relu\nconv 3x3 24 pad 1\nmaxpool 2",
        "input 16x7x10\nresidual { conv 3x3 16 nobias; bn; relu; conv 3x3 16 nobias; bn }\nrelu\nconv 3x3 16",
        "input 12x9x23\nconv 3x3 12 groups 12\nrelu6\nconv 5x5 12 groups 12 stride 2 pad 2\nconv 7x7 12 groups 12 pad 3\nsilu",
        // Zen's 1 x 5 by 2 blocks on maps 7 to 9 wide (remainders of 2 and 4 columns, the
        // former over two accumulator sets), strided, bn folded, partial input blocks.
        "input 6x9x7\nconv 3x3 22 nobias\nbn\nrelu\nconv 3x3 16 pad 2\nconv 3x3 8 stride 2 pad 3\nconv 5x5 8 pad 2",
    ];
    for src in cases {
        for cores in [Cores::Zen, Cores::Intel] {
            let options = JitOptions { cores, ..all_winograd() };
            for (batch, threads) in [(1, 1), (3, 2)] {
                let (diff, scale) = compare_with(src, None, batch, threads, options);
                assert_small(diff, scale, threads, &format!("{cores:?}:\n{src}"));
            }
        }
    }
}

/// One case per construct of the modern families: each activation fused into a convolution
/// and on its own, gates, layer scales (folded and not), sliced branches (aligned and not),
/// shuffles, layer norms (odd channel counts, maps and vectors), projections written first,
/// and conditionals reading the block's input.
#[test]
fn modern_constructs() {
    let acts = [
        "relu6",
        "sigmoid",
        "silu",
        "swish",
        "hardswish",
        "hardsigmoid",
        "gelu",
        "gelu tanh",
        "tanh",
        "leaky_relu 0.2",
    ];
    let mut cases: Vec<String> = acts
        .iter()
        .map(|a| format!("input 5x6x7\nconv 3x3 7\n{a}\nconv 1x1 6\nbn\n{a}\nmaxpool 2\n{a}\nflatten\nfc 4\n{a}"))
        .collect();
    cases.extend(
        [
            // Squeeze-excitation, as EfficientNet writes it, at 4k and odd channel counts.
            "input 8x9x9\nconv 3x3 12 relu\ngate { gap; conv 1x1 3 relu; conv 1x1 12; sigmoid }\nconv 1x1 6\ngate { gap; conv 1x1 2; silu; conv 1x1 6; hardsigmoid }\ngap\nflatten\nfc 3",
            // Elementwise layers no conv absorbs, with the activations after them fused in:
            // DenseNet's pre-activation at 4k and odd channel counts, a sum, and on a vector.
            "input 10x6x6\nconv 3x3 12 relu\nbn\nrelu\nresidual { bn; gelu; silu }\nhardswish\nconv 1x1 6\nmaxpool 2\nbn\nrelu6\nleaky_relu 0.1\ngap\nflatten\nbn\nsilu\nfc 3",
            // Layer scale folded into a conv, after a bn, on its own and on a vector.
            "input 6x5x5\nconv 3x3 9\nscale\nbn\nscale\nrelu\nscale\ngap\nflatten\nfc 5\nscale",
            // Sliced branches (aligned and not), empty and not, and shuffles.
            "input 12x6x6\nbranch 0..6 { }\nbranch 6..12 { conv 1x1 6 nobias; bn; relu; conv 3x3 6 groups 6 nobias; bn; conv 1x1 6 relu }\nshuffle 2\nbranch 4..12 { conv 3x3 5 }\nbranch 0..4 { }\nbranch 1..10 { }\nshuffle 3\nconv 1x1 8",
            // Two-group shuffles over whole vectors: C/2 a multiple of 4 and not, C/4 even and
            // odd, reading a concatenation, writing into one, and reading a slice at an
            // unaligned channel offset.
            "input 16x5x7\nbranch 0..8 { }\nbranch 8..16 { conv 1x1 8 relu }\nshuffle 2\nconv 1x1 20\nshuffle 2\n{\nbranch { shuffle 2 }\nbranch { conv 1x1 4 }\n}\nbranch 4..24 { }\nbranch 0..4 { conv 1x1 4 }\nshuffle 2\nbranch 2..18 { shuffle 2 }\nbranch 0..2 { }\nconv 1x1 3",
            // Slices on whole blocks are views of their source's storage: read by a padded
            // conv (the halo is the source's), a depthwise conv, a padded pool, an elementwise
            // layer (not in place: the source is read later), a concatenation copy, a slice
            // of a slice; a concatenation of two equal halves fused with its two-group shuffle,
            // with a view at a nonzero channel offset, with 10-channel halves (partial
            // blocks), and with odd halves (channel by channel).
            "input 16x9x9\nconv 3x3 24 pad 1 relu\nbranch 8..24 { conv 3x3 8 pad 1 }\nbranch 0..8 { conv 3x3 8 groups 8 pad 1; relu }\nbranch 4..12 { maxpool 3 stride 1 pad 1 }\nbranch 16..24 { }\nbranch 0..24 { relu }\n{\nbranch 8..24 { }\nbranch 24..40 { conv 1x1 16 relu }\n}\nshuffle 2\nresidual { conv 3x3 32 pad 1 }\n{\nbranch 0..10 { }\nbranch 10..20 { conv 1x1 10 }\n}\nshuffle 2\nconv 1x1 10\n{\nbranch 0..5 { }\nbranch 5..10 { conv 1x1 5 }\n}\nshuffle 2\nconv 1x1 12\n{\nbranch 4..12 { branch 4..8 { } }\n}",
            // Slices that start or end inside a block are views when only 1x1 convolutions read
            // them (padded and strided: the halo is the source's), copies otherwise.
            "input 10x6x6\nconv 3x3 10 pad 1\nbranch 3..9 { conv 1x1 8 pad 1; maxpool 2 }\nbranch 1..7 { conv 1x1 8 stride 2 pad 1 relu }\nbranch 2..9 { relu; conv 1x1 4 stride 2 pad 1 }",
            // A slice view read in place (nothing else reads its source), by global pools
            // writing into a concatenation, and by an fc through flatten.
            "input 12x6x6\nconv 3x3 16 pad 1\n{\nbranch 0..16 { relu }\n}\n{\nbranch 4..12 { gap }\nbranch 8..16 { gap }\n}\nflatten\nfc 5",
            "input 12x6x6\nconv 3x3 16 pad 1\n{\nbranch 4..12 { flatten; fc 5 }\n}",
            // A convolution's branch after a 3-channel one: copied into its slice, since it
            // would start inside a block.
            "input 4x6x6\nbranch { conv 1x1 3 }\nbranch { conv 3x3 4 pad 1 }\nconv 1x1 5",
            // Layer norm over channels of maps (4k and not), with ConvNeXt's pattern, and over a vector.
            "input 7x6x5\nconv 3x3 8 pad 1\nlayernorm eps 1e-6\nconv 1x1 32\ngelu\nconv 1x1 8\nscale\nlayernorm\nconv 1x1 5\nlayernorm\ngap\nflatten\nlayernorm\nfc 3",
            // A projection written before its residual; a block deciding its own projection.
            "input 4x8x8\nblock basic(c, s = 1) {\n  residual { conv 3x3 c stride s nobias; bn; relu; conv 3x3 c nobias; bn }\n  shortcut { if s != 1 || in.c != c { conv 1x1 c stride s nobias; bn } }\n  relu\n}\nbasic(4)\nbasic(8, 2)\nbasic(8)\nshortcut { conv 1x1 6 nobias; bn } residual { conv 3x3 6 nobias; bn; relu6 }\ngap\nflatten\nfc 2",
            // MobileNetV2's inverted residual: expansion only when e != 1, the skip only when
            // the shape allows.
            "input 3x10x10\nblock ir(c, s, e) {\n  if s == 1 && in.c == c {\n    residual { if e != 1 { conv 1x1 in.c*e nobias; bn; relu6 }; conv 3x3 in.c*e stride s groups in.c*e nobias; bn; relu6; conv 1x1 c nobias; bn }\n  } else {\n    if e != 1 { conv 1x1 in.c*e nobias; bn; relu6 }\n    conv 3x3 in.c*e stride s groups in.c*e nobias; bn; relu6; conv 1x1 c nobias; bn\n  }\n}\nconv 3x3 8 stride 2 nobias; bn; relu6\nir(4, 1, 1)\nir(6, 2, 6)\nir(6, 1, 6)\nconv 1x1 16 nobias; bn; relu6\ngap\nflatten\nfc 3",
        ]
        .map(String::from),
    );
    for src in &cases {
        for (batch, threads) in [(1, 1), (3, 2)] {
            assert_close(src, None, batch, threads);
        }
    }
}

/// The JIT's own exp, tanh, GELU and sigmoid approximations, elementwise over a dense grid of [-12, 12]
/// and the far tails, against the interpreter (f64 libm, or erf to 1e-13): within
/// `bound * max(1, |x|)`. The whole-network tests above allow 1e-4 and would not notice an
/// approximation that is a hundred times worse than it should be.
#[test]
fn transcendental_activations_are_accurate() {
    let mut values: Vec<f32> = (0..8000).map(|i| -12.0 + 24.0 * i as f32 / 7999.0).collect();
    values.extend([-1e30, -1e4, -100.0, -20.0, -5.657, -1e-30, 0.0, 1e-30, 5.657, 20.0, 100.0, 1e4, 1e30]);
    values.extend([-3e38, 3e38, -16.99, 16.99, 16.999_998, -5.656_853]);
    values.resize(8 * 16 * 64, 0.5);
    // (activation, bound, what the JIT computes)
    let cases = [
        ("gelu", 3e-7, "rational erf"),
        ("gelu tanh", 3e-7, "tanh through exp"),
        ("silu", 3e-7, "rational sigmoid"),
        ("sigmoid", 2e-7, "rational"),
        ("tanh", 3e-7, "exp"),
    ];
    for (act, bound, how) in cases {
        let src = format!("input 8x16x64\n{act}");
        let checked = check_source(&src, "case", None).checked.expect("checks");
        let (net, shapes) = (&checked.network, &checked.shapes);
        let x = Array4::from_shape_vec((1, 8, 16, 64), values.clone()).unwrap();
        let reference = rows(&forward(net, &Weights::default(), x.clone(), &[net.output()]).remove(0));
        let mut jit = JitModel::compile_with(net, shapes, Weights::default(), 1, all_winograd()).unwrap();
        let got = rows(&jit.forward(&x).output);
        let mut worst = (0.0f32, 0.0f32);
        for ((&v, &r), &g) in values.iter().zip(&reference).zip(&got) {
            let err = (r - g).abs() / v.abs().max(1.0);
            assert!(err <= bound, "{act} ({how}) at {v}: interpreter {r}, JIT {g}");
            if err > worst.0 {
                worst = (err, v);
            }
        }
        // The tails are exact (a relative bound would let GELU(-1e30) be 1e23), and the
        // logistic function stays within [0, 1].
        for (&v, &g) in values.iter().zip(&got) {
            match act {
                "gelu" | "silu" if v.abs() >= 20.0 => {
                    assert_eq!(g, if v > 0.0 { v } else { 0.0 }, "{act} at {v}")
                }
                "sigmoid" => assert!((0.0..=1.0).contains(&g), "sigmoid at {v}: {g}"),
                _ => {}
            }
        }
        eprintln!("{act}: worst relative error {:.2e} at {}", worst.0, worst.1);
    }
}

/// Max-pooling and ReLU treat NaN alike on both backends (as Rust's `f32::max` does: a NaN
/// operand is ignored), so a few NaN pixels give the same output, NaNs in the same places.
#[test]
fn nan_inputs_are_handled_alike() {
    let cases = [
        "input 5x8x8\nmaxpool 3 stride 1 pad 1\nconv 3x3 6 relu\nmaxpool 2\nrelu",
        "input 4x7x7\nconv 3x3 8 pad 0\nmaxpool 2 ceil\nconv 1x1 5\nrelu",
        "input 3x6x6\nbranch { maxpool 3 stride 1 pad 1 }\nbranch { conv 1x1 4 relu }\nmaxpool 3 stride 2",
    ];
    for src in cases {
        let checked = check_source(src, "case", None).checked.expect("checks");
        let (net, shapes) = (&checked.network, &checked.shapes);
        let weights = interesting_weights(net, shapes, 3);
        let mut x = image(checked.input, 2, 5);
        for (i, v) in x.iter_mut().enumerate() {
            if i % 7 == 3 {
                *v = f32::NAN;
            }
        }
        let reference = rows(&forward(net, &weights, x.clone(), &[net.output()]).remove(0));
        let mut jit = JitModel::compile_with(net, shapes, weights, 2, all_winograd()).unwrap();
        let got = rows(&jit.forward(&x).output);
        for (i, (r, g)) in reference.iter().zip(&got).enumerate() {
            assert_eq!(r.is_nan(), g.is_nan(), "element {i}: interp {r}, jit {g}\n{src}");
            if !r.is_nan() {
                assert!((r - g).abs() <= 1e-4 * r.abs().max(1.0), "element {i}: interp {r}, jit {g}\n{src}");
            }
        }
    }
}

#[test]
fn the_arena_is_the_liveness_peak_of_the_padded_layouts() {
    for file in cnn_files("examples") {
        let source = std::fs::read_to_string(&file).unwrap();
        let checked = check_source(&source, "x", None).checked.unwrap();
        let weights = random_weights(&param_specs(&checked.network, &checked.shapes), 0);
        let jit = JitModel::compile(&checked.network, &checked.shapes, weights, 1).unwrap();
        // The checker's figure is the plan's; the arena adds only layout padding and alignment.
        assert_eq!(jit.checker_peak_bytes, checked.peak_activation_bytes, "{}", file.display());
        assert_eq!(jit.arena_bytes, jit.padded_peak_bytes, "{}: offsets waste space", file.display());
    }
}

#[test]
fn bench_json_reports_the_documented_keys() {
    let out = cnnc(&["bench", "examples/digits.cnn", "--iters", "2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["compile_ms", "forward_ms_median", "forward_ms_min", "gflops"] {
        assert!(v[key].as_f64().is_some_and(|x| x >= 0.0), "{key}: {v}");
    }
    let layers = v["layers"].as_array().unwrap();
    assert!(layers.iter().any(|l| l["name"] == "conv1.1.3" && l["gflops"].as_f64().unwrap() > 0.0), "{v}");
    for l in layers {
        assert!(l["name"].is_string() && l["ms"].is_f64() && l["gflops"].is_f64());
    }
    let interp = cnnc(&["bench", "examples/digits.cnn", "--iters", "1", "--backend", "interp", "--json"]);
    assert_eq!(interp.status.code(), Some(0));
}

#[test]
fn run_defaults_to_the_jit_and_both_backends_agree() {
    let jit = cnnc(&["run", "examples/digits.cnn", "examples/images/digit_5.png", "--json"]);
    let interp = cnnc(&["run", "examples/digits.cnn", "examples/images/digit_5.png", "--json", "--backend", "interp"]);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&jit.stdout).unwrap(), serde_json::from_slice(&interp.stdout).unwrap());
    assert_eq!(a[0]["top"][0]["index"], 5);
    assert_eq!(a[0]["top"][0]["index"], b[0]["top"][0]["index"]);
}

// ---- random networks ------------------------------------------------------------------------

/// Writes a random small network that checks: convolutions with every kind of kernel, stride,
/// padding, dilation and grouping, odd channel counts, pools with ceil mode, batch norm, LRN,
/// every activation, gates, layer scales, layer norms, channel shuffles, sliced branches,
/// inception-style branches, residuals with and without projections (written before or after
/// the body), and an fc head.
fn random_network(seed: u64) -> String {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut c: u64 = [1, 2, 3, 4, 5, 8][r.random_range(0..6)];
    let (mut h, mut w) = (r.random_range(6..18u64), r.random_range(6..18u64));
    let mut src = format!("input {c}x{h}x{w}\n");
    let conv_len =
        |len: u64, k: u64, s: u64, p: u64, d: u64| (len + 2 * p).checked_sub(d * (k - 1) + 1).map(|v| v / s + 1);
    for _ in 0..r.random_range(1..5) {
        match r.random_range(0..14) {
            0 | 1 => {
                let k = [1u64, 2, 3, 5][r.random_range(0..4)];
                let s = r.random_range(1..3u64);
                let d = if k > 1 && r.random_bool(0.25) { 2 } else { 1 };
                let p = match r.random_range(0..3) {
                    0 => (d * (k - 1) + 1) / 2,
                    1 => 0,
                    _ => r.random_range(0..3),
                };
                let groups = [1u64, 2, 3, 4][r.random_range(0..4)];
                let (cin, cout) =
                    if c % groups == 0 { (c, groups * r.random_range(1..5u64)) } else { (c, r.random_range(1..13)) };
                let mut g = if cin % groups == 0 && cout % groups == 0 { groups } else { 1 };
                // A depthwise convolution (one channel per group) a quarter of the time.
                let depthwise = r.random_bool(0.25);
                let cout = if depthwise { cin } else { cout };
                if depthwise {
                    g = cin;
                }
                let (Some(oh), Some(ow)) = (conv_len(h, k, s, p, d), conv_len(w, k, s, p, d)) else { continue };
                let mut line = format!("conv {k}x{k} {cout} stride {s} pad {p} dilation {d} groups {g}");
                if r.random_bool(0.3) {
                    line += " nobias";
                }
                if r.random_bool(0.5) {
                    line += " relu";
                }
                src += &line;
                src += "\n";
                if r.random_bool(0.4) {
                    src += "bn eps 0.001\n";
                }
                (c, h, w) = (cout, oh, ow);
            }
            2 => {
                let k = r.random_range(2..4u64);
                let s = r.random_range(1..4u64);
                let p = r.random_range(0..=k / 2);
                let ceil = r.random_bool(0.5);
                let kind = if r.random_bool(0.5) { "maxpool" } else { "avgpool" };
                let (Ok(oh), Ok(ow)) = (cnnc::pool_out_len(h, k, s, p, ceil), cnnc::pool_out_len(w, k, s, p, ceil))
                else {
                    continue;
                };
                src += &format!("{kind} {k} stride {s} pad {p}{}\n", if ceil { " ceil" } else { "" });
                (h, w) = (oh, ow);
            }
            3 => src += ["relu\n", "bn\n", "lrn 3 alpha 0.01 beta 0.75 k 2\n"][r.random_range(0..3)],
            8 => {
                const ACTS: [&str; 11] = [
                    "relu6",
                    "sigmoid",
                    "silu",
                    "hardswish",
                    "hardsigmoid",
                    "gelu",
                    "gelu tanh",
                    "tanh",
                    "leaky_relu 0.1",
                    "scale",
                    "layernorm eps 0.001",
                ];
                src += ACTS[r.random_range(0..ACTS.len())];
                src += "\n";
            }
            9 => {
                let r_c = r.random_range(1..=c.max(1));
                let act = ["relu", "silu"][r.random_range(0..2)];
                let squash = ["sigmoid", "hardsigmoid"][r.random_range(0..2)];
                src += &format!("gate {{ gap; conv 1x1 {r_c}; {act}; conv 1x1 {c}; {squash} }}\n");
            }
            10 if c >= 2 => {
                // A sliced pair of branches (ShuffleNetV2's unit), then a shuffle.
                let cut = r.random_range(1..c);
                let out = r.random_range(1..7u64);
                src += &format!("{{\nbranch 0..{cut} {{ }}\nbranch {cut}..{c} {{ conv 3x3 {out} relu }}\n}}\n");
                c = cut + out;
                let g = [2u64, 3, 4].into_iter().find(|g| c % g == 0);
                if let Some(g) = g {
                    src += &format!("shuffle {g}\n");
                }
            }
            11 => {
                let out = r.random_range(2..9u64);
                src += &format!(
                    "shortcut {{ conv 1x1 {out} nobias; bn }} residual {{ conv 3x3 {out} nobias; bn; relu6; conv 1x1 {out}; scale }}\n"
                );
                c = out;
            }
            12 | 13 => {
                // A 3x3 stride-1 convolution over whole blocks of 16 or more channels (the
                // Winograd schedule's), after a 1x1 expansion when the input has fewer; padding 0
                // to 2, an activation, and sometimes a 2x2 pool fused into its epilogue.
                if c < 16 || c % 4 != 0 {
                    let e = [16u64, 20, 24][r.random_range(0..3)];
                    src += &format!("conv 1x1 {e}\n");
                    c = e;
                }
                let out = [16u64, 18, 20, 24, 36][r.random_range(0..5)];
                let p = r.random_range(0..3u64);
                let (Some(oh), Some(ow)) = (conv_len(h, 3, 1, p, 1), conv_len(w, 3, 1, p, 1)) else { continue };
                let act = ["", " relu", "\nsilu"][r.random_range(0..3)];
                src += &format!("conv 3x3 {out} pad {p}{act}\n");
                (c, h, w) = (out, oh, ow);
                if h >= 2 && w >= 2 && r.random_bool(0.3) {
                    src += "maxpool 2\n";
                    (h, w) = (h / 2, w / 2);
                }
            }
            4 | 5 => {
                // Inception-style branches at stride 1, in a group of their own (consecutive
                // branches would otherwise join the previous unit's concatenation).
                src += "{\n";
                let mut total = 0;
                for _ in 0..r.random_range(2..4) {
                    let out = r.random_range(1..10u64);
                    match r.random_range(0..3) {
                        0 => src += &format!("branch {{ conv 1x1 {out} relu }}\n"),
                        1 => src += &format!("branch {{ conv 1x1 {out}; conv 3x3 {out} relu }}\n"),
                        _ => src += &format!("branch {{ maxpool 3 stride 1 pad 1 ceil; conv 1x1 {out} }}\n"),
                    }
                    total += out;
                }
                src += "}\n";
                c = total;
            }
            _ => {
                let project = r.random_bool(0.5);
                let s = if project && h >= 4 && w >= 4 { 2 } else { 1 };
                let out = if project { r.random_range(2..9u64) } else { c };
                let shortcut = if project {
                    format!(" shortcut {{ conv 1x1 {out} stride {s} nobias; bn }}")
                } else {
                    String::new()
                };
                src += &format!(
                    "residual {{ conv 3x3 {out} stride {s} nobias; bn; relu; conv 3x3 {out} nobias; bn }}{shortcut}\nrelu\n"
                );
                if project {
                    (c, h, w) = (out, (h - 1) / s + 1, (w - 1) / s + 1);
                }
            }
        }
    }
    src += match r.random_range(0..4) {
        0 => "gap\nflatten\nfc 5 relu\nfc 3\n",
        1 => "flatten\nfc 7\nsoftmax\n",
        2 => "adaptive_avgpool 2x3\nflatten\ndropout 0.5\nfc 4\n",
        _ => "",
    };
    let _ = (c, h, w);
    src
}

/// Random networks that once failed, kept as fixed cases: 11107375567634261315 has a padded
/// 1x1 convolution, whose input touch-ahead read past the end of its input when it ignored the
/// padding (seen bounds-checked, `CNNC_JIT_CHECKED=1`).
#[test]
fn random_network_regressions() {
    for seed in [11_107_375_567_634_261_315u64] {
        for threads in [1, 2] {
            assert_close(&random_network(seed), None, 1, threads);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn jit_matches_interpreter_on_random_networks(seed in any::<u64>(), threads in 1usize..3) {
        let source = random_network(seed);
        let (diff, scale) = compare(&source, None, 2, threads);
        prop_assert!(diff <= 1e-4 * scale + 1e-6, "max|diff| {} vs {} on\n{}", diff, scale, source);
    }
}

/// The edge cases above reach the Winograd schedule: 3x3, 5x5, 1x7 and 7x1 stride-1
/// convolutions (and 1x3, 1x5 and their transposes) over whole blocks of 16 or more channels take
/// it, the others (3 input channels, 1x1, 7x7, 1x9, padding across a 1x7) do not; strided ones
/// through their phase form where it saves enough (7x7 and 5x5 stride 2), 3x3 stride 2 split by
/// phase (four steps) where that saves enough (not on a 4x4 output). By default only those
/// with 10 million multiply-accumulates or more take it.
#[test]
fn winograd_is_chosen_where_it_applies() {
    let algos = |source: &str, options: JitOptions| {
        let checked = check_source(source, "case", None).checked.unwrap();
        let weights = interesting_weights(&checked.network, &checked.shapes, 1);
        let jit = JitModel::compile_with(&checked.network, &checked.shapes, weights, 1, options).unwrap();
        // The pool fused into the second convolution names its step; a Winograd layer's input
        // transform may be a step of its own (`/in`).
        let steps = &jit.steps[1..jit.steps.len() - 1];
        steps.iter().filter(|s| !s.name.ends_with("/in")).map(|s| s.algo).collect::<Vec<_>>()
    };
    let small = "input 3x12x12\nconv 3x3 16 relu\nconv 3x3 20 pad 2\nmaxpool 2\nconv 3x3 16 stride 2\nconv 1x1 16\nconv 3x3 16 pad 0";
    assert_eq!(algos(small, all_winograd()), ["direct", "winograd", "direct", "gemm", "direct"]);
    assert_eq!(algos(small, JitOptions::default()), ["direct", "direct", "direct", "gemm", "direct"]);
    // 28 x 28 x 64 x 64 x 9 = 28.9M multiply-accumulates; 14 x 14 x 64 x 64 x 9 = 7.2M.
    let sizes = "input 64x28x28\nconv 3x3 64\nmaxpool 2\nconv 3x3 64";
    assert_eq!(algos(sizes, JitOptions::default()), ["winograd", "direct"]);
    let kernels =
        "input 16x12x12\nconv 5x5 16 pad 2\nconv 7x7 16 pad 3\nconv 1x9 16 pad 0x4\nconv 5x5 16 pad 2 stride 2";
    assert_eq!(algos(kernels, all_winograd()), ["winograd", "direct", "direct", "winograd"]);
    // Strided convolutions take it over their input's phases where that saves at least half
    // the products: 7x7 stride 2 and 5x5 stride 2 do, unequal strides not; 3x3 stride 2 (on
    // 16x16 outputs) split by phase, in four steps.
    let strided = "input 3x64x64\nconv 7x7 16 stride 2 pad 3\nconv 3x3 16 stride 2\nconv 7x7 16 stride 1x2 pad 3";
    let split = ["winograd"; 4];
    assert_eq!(algos(strided, all_winograd()), [&["winograd"][..], &split, &["direct"]].concat());
    // 1x3, 1x5, 1x7 and their transposes take Winograd along the kernel, unless padded across it.
    let rect = "input 16x12x12\nconv 1x7 16 pad 0x3\nconv 7x1 16 pad 3x0\nconv 1x7 16 pad 1x3\nconv 3x1 16 pad 1x0\nconv 1x5 16 pad 0x2";
    assert_eq!(algos(rect, all_winograd()), ["winograd", "winograd", "direct", "winograd", "winograd"]);
}
