//! Every file under examples/errors/ yields exactly one diagnostic, whose rendering (with
//! file:line:col, the source line, the underline, notes and help) is pinned by a snapshot.

mod common;
use cnnc::check_source;
use common::*;

#[test]
fn each_error_example_gives_its_snapshot_diagnostic() {
    let files = cnn_files("examples/errors");
    assert!(files.len() >= 12, "at least 12 error examples");
    for f in files {
        let source = std::fs::read_to_string(&f).expect("readable");
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let report = check_source(&source, &stem, None);
        assert_eq!(report.diagnostics.len(), 1, "{}: {:#?}", f.display(), report.diagnostics);
        let d = &report.diagnostics[0];
        // The first line of each file names the code it demonstrates.
        let first_line = source.lines().next().unwrap_or("");
        assert!(first_line.contains(d.code.as_str()), "{}: expected {first_line}, got {}", f.display(), d.code);
        let shown = format!("examples/errors/{stem}.cnn");
        let rendered = d.render(&shown, &source, false);
        assert!(rendered.contains(&format!("{shown}:")), "file:line:col is shown");
        insta::assert_snapshot!(stem, rendered);
    }
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let source = "network two\ninput 3x32x32\nstage a { conv 3x3 16 strid 2; maxpol 2 }\nstage b { conv_bn(3) }\n";
    let report = check_source(source, "two", None);
    let codes: Vec<_> = report.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, vec!["E0003", "E0002", "E0006"]);
}

#[test]
fn json_diagnostics_carry_line_and_column() {
    let (json, code) = check_json(&["examples/errors/unknown_layer.cnn"]);
    assert_eq!(code, 1);
    let d = &json["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "E0002");
    assert_eq!(d["line"], 5);
    assert_eq!(d["column"], 36);
    assert_eq!(d["help"], "did you mean `maxpool`?");
}

#[test]
fn warnings_fail_only_under_deny_warnings() {
    assert_eq!(cnnc(&["check", "examples/errors/doubling_rule.cnn"]).status.code(), Some(0));
    assert_eq!(cnnc(&["check", "--deny-warnings", "examples/errors/doubling_rule.cnn"]).status.code(), Some(1));
}

#[test]
fn errors_inside_blocks_show_the_call_site() {
    let source = std::fs::read_to_string(example("errors/inception_branch_sizes.cnn")).unwrap();
    let d = &check_source(&source, "x", None).diagnostics[0];
    assert_eq!(d.secondary.len(), 1);
    assert_eq!(&source[d.secondary[0].0.start..d.secondary[0].0.end], "inception3a: inception(64, 128, 32)");
}

#[test]
fn explain_describes_every_code_and_refuses_unknown_ones() {
    for code in cnnc::Code::all() {
        let out = cnnc(&["explain", code.as_str()]);
        assert_eq!(out.status.code(), Some(0), "{code}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(&format!("{code}: {}", code.title())), "{text}");
        assert!(text.contains(code.explanation()), "{code}");
    }
    assert_eq!(cnnc(&["explain", "e0105"]).status.code(), Some(0), "codes are case-insensitive");
    let unknown = cnnc(&["explain", "E9999"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not a cnnc diagnostic code"));
}

#[test]
fn the_readme_lists_every_code() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let listed: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| ").and_then(|r| r.split(" |").next()))
        .filter(|c| {
            c.len() == 5 && (c.starts_with('E') || c.starts_with('W')) && c[1..].chars().all(|d| d.is_ascii_digit())
        })
        .collect();
    let all: Vec<&str> = cnnc::Code::all().map(cnnc::Code::as_str).collect();
    assert_eq!(listed, all, "README's diagnostics table lists every code, in order");
}
