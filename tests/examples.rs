//! The examples: exact totals against torchvision (tools/torchvision_costs.py printed the
//! reference figures), clean checks, the design rule, and the `--input` behaviours.

mod common;
use common::*;

/// (file, params, MACs, depth). params and MACs of the torchvision models were printed by
/// `tools/torchvision_costs.py`; the rest follow from the papers' tables (see each file).
const TOTALS: &[(&str, u64, u64, u64)] = &[
    ("alexnet.cnn", 61_100_840, 714_188_480, 8),
    ("vgg11.cnn", 132_863_336, 7_609_090_048, 11),
    ("vgg13.cnn", 133_047_848, 11_308_466_176, 13),
    ("vgg16.cnn", 138_357_544, 15_470_264_320, 16),
    ("vgg19.cnn", 143_667_240, 19_632_062_464, 19),
    ("googlenet.cnn", 6_624_904, 1_498_376_192, 22),
    ("resnet18.cnn", 11_689_512, 1_814_073_344, 18),
    ("mobilenet_v2.cnn", 3_504_872, 300_774_272, 53),
    // Depth leaves out the squeeze-excitation convs, as the papers count.
    ("efficientnet_b0.cnn", 5_288_548, 385_814_752, 50),
    ("shufflenet_v2_x1_0.cnn", 2_278_604, 144_907_992, 51),
    ("regnet_y_400mf.cnn", 4_344_144, 401_842_848, 50),
    // ConvNeXt's per-pixel Linear layers count at every pixel, as the 1x1 convs they are.
    ("convnext_tiny.cnn", 28_589_128, 4_455_531_264, 59),
    // Named for its depth; Inception-v3 at 299x299 without the auxiliary classifier.
    ("densenet121.cnn", 7_978_856, 2_834_161_664, 121),
    ("inception_v3.cnn", 23_834_568, 5_713_216_096, 48),
    // Paper, Table 2: A-LRN 133M (LRN has no parameters), C 134M.
    ("vgg11_lrn.cnn", 132_863_336, 7_609_090_048, 11),
    ("vgg16c.cnn", 133_638_952, 11_770_888_192, 16),
    // The naive module's figure from the issue: 28*28*(256*128 + 256*192*9 + 256*96*25).
    ("inception_naive.cnn", 1_089_952, 854_196_224, 1),
    ("inception_reduced.cnn", 346_720, 271_351_808, 2),
    ("googlenet_paper.cnn", 6_998_552, 1_582_671_872, 22),
    ("zfnet.cnn", 62_357_608, 1_168_032_896, 8),
];

#[test]
fn totals_match_the_references_exactly() {
    for &(file, params, macs, depth) in TOTALS {
        let (json, code) = check_json(&[&format!("examples/{file}")]);
        assert_eq!(code, 0, "{file}: {json}");
        assert_eq!(json["total_params"], params, "{file} params");
        assert_eq!(json["total_macs"], macs, "{file} MACs");
        assert_eq!(json["total_flops"], 2 * macs, "{file} FLOPs");
        assert_eq!(json["depth"], depth, "{file} depth");
    }
}

#[test]
fn every_example_checks_cleanly_without_warnings() {
    let files = cnn_files("examples");
    assert!(files.len() >= TOTALS.len());
    for f in files {
        let path = f.to_string_lossy().into_owned();
        let (json, code) = check_json(&["--deny-warnings", &path]);
        assert_eq!(code, 0, "{path}: {:#}", json["diagnostics"]);
        assert_eq!(json["diagnostics"].as_array().map(Vec::len), Some(0), "{path}");
    }
}

#[test]
fn every_vgg_example_opts_into_the_doubling_rule() {
    for f in cnn_files("examples").iter().filter(|f| f.to_string_lossy().contains("vgg")) {
        let text = std::fs::read_to_string(f).expect("readable");
        assert!(text.contains("rule double-channels max 512"), "{}", f.display());
    }
}

#[test]
fn googlenet_buffers_and_breakdown() {
    let (json, _) = check_json(&["examples/googlenet.cnn"]);
    // torchvision: 14,560 running-statistics values (num_batches_tracked excluded).
    assert_eq!(json["total_buffers"], 14_560);
    assert_eq!(json["input"], serde_json::json!([3, 224, 224]));
    assert_eq!(json["output"], serde_json::json!([1000]));
    let names: Vec<&str> = json["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    for expected in ["stem.1.1", "inception3a.b2.1.1", "inception3a.b4.1", "inception3a.cat", "head.4"] {
        assert!(names.contains(&expected), "missing canonical name {expected}");
    }
}

#[test]
fn vgg16_keeps_most_parameters_in_fc_layers() {
    let (json, _) = check_json(&["examples/vgg16.cnn"]);
    let fc =
        json["by_kind"].as_array().unwrap().iter().find(|k| k["kind"] == "fc").unwrap()["params"].as_u64().unwrap();
    let share = fc as f64 / json["total_params"].as_u64().unwrap() as f64;
    assert!((0.89..0.90).contains(&share), "fc share {share}");
}

#[test]
fn resnet18_names_follow_the_scheme() {
    let (json, _) = check_json(&["examples/resnet18.cnn"]);
    let names: Vec<&str> = json["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    for expected in ["stem.1", "layer1.1.1", "layer1.1.add", "layer1.1.6", "layer2.1.sc1", "layer2.1.sc2", "head.3"] {
        assert!(names.contains(&expected), "missing canonical name {expected}: {names:?}");
    }
}

#[test]
fn vgg16_at_320_fails_at_the_first_fc() {
    let out = cnnc(&["check", "--color", "never", "examples/vgg16.cnn", "--input", "3x320x320"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fc expects 25088 inputs (512x7x7) but receives 51200 (512x10x10)"), "{stderr}");
    // The first fc of vgg16.cnn is on line 14, column 29.
    assert!(stderr.contains("examples/vgg16.cnn:14:29"), "{stderr}");
    let (json, code) = check_json(&["examples/vgg16.cnn", "--input", "3x320x320"]);
    assert_eq!(code, 1);
    let d = &json["diagnostics"][0];
    assert_eq!((d["code"].as_str(), d["line"].as_u64(), d["column"].as_u64()), (Some("E0102"), Some(14), Some(29)));
}

#[test]
fn googlenet_at_320_passes() {
    let (json, code) = check_json(&["examples/googlenet.cnn", "--input", "3x320x320"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["input"], serde_json::json!([3, 320, 320]));
    assert_eq!(json["output"], serde_json::json!([1000]));
    // Convolutions cost more at 320; parameters do not change.
    assert_eq!(json["total_params"], 6_624_904);
    assert!(json["total_macs"].as_u64().unwrap() > 1_498_376_192);
}

#[test]
fn input_override_cannot_change_channels() {
    let (json, code) = check_json(&["examples/resnet18.cnn", "--input", "1x224x224"]);
    assert_eq!(code, 1);
    assert!(json["diagnostics"][0]["message"].as_str().unwrap().contains("expects 3 input channels but receives 1"));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(cnnc(&["check", "examples/does_not_exist.cnn"]).status.code(), Some(2));
    assert_eq!(cnnc(&["check", "examples/vgg16.cnn", "--input", "3x320"]).status.code(), Some(2));
    assert_eq!(cnnc(&["check"]).status.code(), Some(2));
}

#[test]
fn table_has_stage_subtotals_and_labelled_totals() {
    let out = cnnc(&["check", "examples/vgg16.cnn"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("conv1 total"));
    assert!(table.contains("138,357,544"));
    assert!(table.contains("15,470,264,320"));
    assert!(table.contains("FLOPs"));
    assert!(table.contains("2 x MACs"));
}
