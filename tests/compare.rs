//! `cnnc compare`: the figures are `cnnc check`'s, and the parameter rows (one per op kind any
//! of the networks has) add up to the total.

mod common;
use common::*;

fn totals(file: &str) -> u64 {
    let (json, code) = check_json(&[file]);
    assert_eq!(code, 0);
    json["total_params"].as_u64().unwrap()
}

#[test]
fn parameter_rows_add_up_to_the_total() {
    let files = ["examples/resnet18.cnn", "examples/googlenet.cnn", "examples/alexnet.cnn"];
    let out = cnnc(&["compare", files[0], files[1], files[2], "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (net, file) in v["networks"].as_array().unwrap().iter().zip(files) {
        let by_kind: u64 = net["params_by_kind"].as_object().unwrap().values().map(|p| p.as_u64().unwrap()).sum();
        assert_eq!(by_kind, net["params"].as_u64().unwrap(), "{file}");
        assert_eq!(net["params"].as_u64().unwrap(), totals(file), "{file}: the check's total");
    }
    // The table has a bn row (ResNet's and GoogLeNet's batch norms), 0 for AlexNet.
    let text = String::from_utf8_lossy(&cnnc(&["compare", files[0], files[2]]).stdout).into_owned();
    let bn = text.lines().find(|l| l.trim_start().starts_with("bn ")).expect("a bn row");
    assert!(bn.contains("9,600") && bn.trim_end().ends_with(" 0 (0.00x)"), "{bn}");
}
