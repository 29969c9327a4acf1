//! Pictures: `cnnc graph` draws one node per layer without overlaps, and `cnnc kernels` finds a
//! planted dead filter.

mod common;
use common::*;

fn rects_overlap(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
}

/// (node ids, their rectangles) of an SVG written by `cnnc graph`.
fn nodes_of(svg: &str) -> Vec<(String, (f64, f64, f64, f64))> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    doc.descendants()
        .filter(|n| n.attribute("class").is_some_and(|c| c.split(' ').next() == Some("node")))
        .map(|g| {
            let r = g.children().find(|c| c.has_tag_name("rect")).expect("a node has a rect");
            let f = |a: &str| r.attribute(a).and_then(|v| v.parse::<f64>().ok()).expect("numeric attribute");
            (g.attribute("id").unwrap_or("").to_string(), (f("x"), f("y"), f("width"), f("height")))
        })
        .collect()
}

#[test]
fn graph_svg_has_one_node_per_layer_and_no_overlaps() {
    let dir = std::env::temp_dir().join(format!("cnnc-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in cnn_files("examples") {
        let out = dir.join(format!("{}.svg", file.file_stem().unwrap().to_string_lossy()));
        let run = cnnc(&["graph", file.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
        let svg = std::fs::read_to_string(&out).unwrap();
        let nodes = nodes_of(&svg);
        let (json, _) = check_json(&[file.to_str().unwrap()]);
        let layers: Vec<String> = json["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("node-{}", l["name"].as_str().unwrap()))
            .collect();
        let mut ids: Vec<String> = nodes.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        let mut expected = layers.clone();
        expected.sort();
        assert_eq!(ids, expected, "{}: one node per layer", file.display());
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                assert!(!rects_overlap(a.1, b.1), "{}: {} overlaps {}", file.display(), a.0, b.0);
            }
        }
    }
}

#[test]
fn collapsed_graph_shows_block_instances_as_single_nodes() {
    let dir = std::env::temp_dir().join(format!("cnnc-graphc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("googlenet.svg");
    let run = cnnc(&["graph", "examples/googlenet.cnn", "-o", out.to_str().unwrap(), "--collapse"]);
    assert_eq!(run.status.code(), Some(0));
    let nodes = nodes_of(&std::fs::read_to_string(&out).unwrap());
    let ids: Vec<&str> = nodes.iter().map(|(id, _)| id.as_str()).collect();
    assert!(ids.contains(&"node-inception3a") && ids.contains(&"node-stem.1"), "{ids:?}");
    assert!(!ids.iter().any(|id| id.starts_with("node-inception3a.")), "instances are not expanded");
    let dot = dir.join("googlenet.dot");
    assert_eq!(cnnc(&["graph", "examples/googlenet.cnn", "-o", dot.to_str().unwrap()]).status.code(), Some(0));
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.starts_with("digraph") && text.contains("cluster_inception3") && text.contains("->"));
    assert_eq!(cnnc(&["graph", "examples/googlenet.cnn", "-o", "x.png"]).status.code(), Some(1));
}

#[test]
fn kernels_picture_marks_a_planted_dead_filter() {
    let dir = std::env::temp_dir().join(format!("cnnc-kernels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The trained digits weights, with filter 5 of the first convolution zeroed.
    let (model, _) = cnnc::load_model(&example("digits.cnn"), None).unwrap();
    let specs = model.params();
    let mut weights = cnnc::load_safetensors(&example("digits.safetensors"), &specs).unwrap().weights;
    let mut first = weights.get("conv1.1.1.weight").to_vec();
    first[5 * 9..6 * 9].iter_mut().for_each(|v| *v = 0.0);
    weights.insert("conv1.1.1.weight".into(), first);
    let planted = dir.join("planted.safetensors");
    cnnc::save_safetensors(&planted, &specs, &weights, Default::default()).unwrap();

    let png = dir.join("kernels.png");
    let out =
        cnnc(&["kernels", "examples/digits.cnn", "--weights", planted.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 dead filter") && text.contains("conv1.1.1[5]"), "{text}");
    // 16 filters in a 4x4 grid; filter 5 is row 1, column 1, framed in red.
    let img = image::open(&png).unwrap().to_rgb8();
    let cell_w = (img.width() - 3) / 4;
    let (x, y) = (cell_w + 5 - 3 + 1, cell_w + 5 - 3);
    assert_eq!(img.get_pixel(x, y).0, [220, 30, 30], "red frame around the dead filter");
    assert_ne!(img.get_pixel(5 - 3 + 1, 5 - 3).0, [220, 30, 30], "no frame around a live one");

    // The trained weights have none. (The picture exists now: replacing it needs --force.)
    let clean = cnnc(&["kernels", "examples/digits.cnn", "-o", png.to_str().unwrap(), "--force"]);
    assert!(String::from_utf8_lossy(&clean.stdout).contains("no dead filters"));
    let named =
        cnnc(&["kernels", "examples/digits.cnn", "-o", png.to_str().unwrap(), "--force", "--layer", "conv2.1.1"]);
    assert!(String::from_utf8_lossy(&named.stdout).contains("conv2.1.1: 32 filters of 16x3x3"));
    assert_eq!(
        cnnc(&["kernels", "examples/digits.cnn", "-o", png.to_str().unwrap(), "--force", "--layer", "conv2.1"])
            .status
            .code(),
        Some(1)
    );
}
