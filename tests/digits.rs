//! The trained digits network: cnnc's predictions on the whole held-out split (PNG files written
//! by tools/train_digits.py) are PyTorch's, and at least 95% are right.

mod common;
use common::*;

#[test]
fn heldout_predictions_match_pytorch_and_are_accurate() {
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/digits_heldout.json")).unwrap())
            .unwrap();
    let images = fixture["images"].as_array().unwrap();
    assert!(images.len() >= 300);
    let dir = repo().join("tests/fixtures/digits_heldout");
    let paths: Vec<String> =
        images.iter().map(|r| dir.join(r["file"].as_str().unwrap()).display().to_string()).collect();
    let mut args = vec!["run", "examples/digits.cnn", "--json", "--top", "1"];
    args.extend(paths.iter().map(String::as_str));
    let out = cnnc(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got.len(), images.len());
    let mut correct = 0;
    for (g, r) in got.iter().zip(images) {
        let pred = g["top"][0]["index"].as_u64().unwrap();
        assert_eq!(pred, r["torch_prediction"].as_u64().unwrap(), "{}", r["file"]);
        correct += usize::from(pred == r["label"].as_u64().unwrap());
        // Logits agree too (PyTorch's are rounded to 6 decimals in the fixture).
        let ref_logits: Vec<f64> = r["torch_logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let scale = ref_logits.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        for (a, b) in g["logits"].as_array().unwrap().iter().zip(&ref_logits) {
            assert!((a.as_f64().unwrap() - b).abs() <= 1e-4 * scale + 1e-5, "{}: logit {a} vs {b}", r["file"]);
        }
    }
    let accuracy = correct as f64 / images.len() as f64;
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
}

#[test]
fn quick_start_command_predicts_three() {
    let out = cnnc(&["run", "examples/digits.cnn", "examples/images/digit_3.png"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().nth(1).unwrap_or("");
    assert!(first.trim_start().starts_with("1.     3"), "{text}");
    // The weights beside the .cnn file are found without --weights: no random-weights warning.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("random"));
}

#[test]
fn json_output_has_the_documented_keys() {
    let out = cnnc(&[
        "run",
        "examples/digits.cnn",
        "examples/images/digit_7.png",
        "examples/images/digit_1.png",
        "--json",
        "--top",
        "3",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for item in list {
        assert_eq!(item["logits"].as_array().unwrap().len(), 10);
        let probs: f64 = item["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).sum();
        assert!((probs - 1.0).abs() < 1e-4);
        let top = item["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert!(top[0]["index"].is_u64() && top[0]["label"].is_string() && top[0]["prob"].is_f64());
    }
    assert_eq!(list[0]["top"][0]["label"], "7");
    assert_eq!(list[1]["input"], "examples/images/digit_1.png");
}

#[test]
fn params_lists_tensors_in_layer_order() {
    let out = cnnc(&["params", "examples/digits.cnn", "--json"]);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        &names[..6],
        [
            "conv1.1.1.weight",
            "conv1.1.2.weight",
            "conv1.1.2.bias",
            "conv1.1.2.running_mean",
            "conv1.1.2.running_var",
            "conv1.2.1.weight"
        ]
    );
    assert_eq!(names.last(), Some(&"head.4.bias"));
    assert_eq!(v[0]["shape"], serde_json::json!([16, 1, 3, 3]));
    assert_eq!(v[0]["kind"], "weight");
    assert_eq!(v[3]["kind"], "running_mean");
}

#[test]
fn init_writes_loadable_seeded_weights() {
    let dir = std::env::temp_dir().join(format!("cnnc-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    for p in [&a, &b] {
        assert_eq!(
            cnnc(&["init", "examples/digits.cnn", "-o", p.to_str().unwrap(), "--seed", "7"]).status.code(),
            Some(0)
        );
    }
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "same seed, same file");
    let out = cnnc(&["run", "examples/digits.cnn", "examples/images/digit_3.png", "--weights", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn many_images_in_batches_with_throughput_and_no_bar_when_piped() {
    let dir = repo().join("tests/fixtures/digits_heldout");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    files.sort();
    files.truncate(40);
    let run = |batch: &str| {
        let mut args = vec!["run", "examples/digits.cnn", "--top", "1", "--batch", batch];
        args.extend(files.iter().map(String::as_str));
        cnnc(&args)
    };
    let (a, b) = (run("7"), run("40"));
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout, "batch size does not change results");
    let stderr = String::from_utf8_lossy(&a.stderr);
    assert!(stderr.contains("40 images in") && stderr.contains("images/s"), "{stderr}");
    assert!(
        !stderr.contains("eta") && !String::from_utf8_lossy(&a.stdout).contains("eta"),
        "no progress bar when piped"
    );
    assert_eq!(String::from_utf8_lossy(&a.stdout).lines().count(), 80, "two lines per image");
}

#[test]
fn the_progress_bar_appears_on_a_terminal() {
    // util-linux's `script` gives cnnc a pseudo-terminal.
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` is not installed");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_cnnc");
    let mut images: Vec<String> = std::fs::read_dir(repo().join("tests/fixtures/digits_heldout"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    images.sort();
    images.truncate(16);
    // The interpreter on a batch of 1 at a time is slow enough for the bar to draw.
    let command = format!("{bin} run examples/digits.cnn --backend interp --batch 1 --top 1 {}", images.join(" "));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("16/16 images"), "{text}");
    let json = std::process::Command::new("script")
        .args(["-qec", &format!("{command} --json"), "/dev/null"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&json.stdout).contains("images  "), "no bar with --json");
}
