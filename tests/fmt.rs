//! `cnnc fmt`: idempotent, meaning-preserving, comment-preserving, and insensitive to how the
//! input was spaced. Every example and every error example that parses is covered.

mod common;
use cnnc::check_source;
use cnnc::format_source;
use common::*;
use rand::{Rng, SeedableRng};

fn parseable_files() -> Vec<std::path::PathBuf> {
    let mut files = cnn_files("examples");
    files.extend(cnn_files("tests/fixtures/families"));
    files.extend(
        cnn_files("examples/errors")
            .into_iter()
            .filter(|f| format_source(&std::fs::read_to_string(f).unwrap()).is_ok()),
    );
    files
}

#[test]
fn formatting_is_idempotent_and_the_examples_are_formatted() {
    for f in parseable_files() {
        let source = std::fs::read_to_string(&f).unwrap();
        let once = format_source(&source).unwrap();
        assert_eq!(format_source(&once).unwrap(), once, "{}: not idempotent", f.display());
        if f.parent().is_some_and(|p| p.ends_with("examples")) {
            assert_eq!(once, source, "{}: run `cnnc fmt --write`", f.display());
        }
    }
}

#[test]
fn formatting_keeps_the_meaning() {
    for f in parseable_files() {
        let source = std::fs::read_to_string(&f).unwrap();
        let formatted = format_source(&source).unwrap();
        let (a, b) = (check_source(&source, "x", None), check_source(&formatted, "x", None));
        let codes = |r: &cnnc::CheckReport| r.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>();
        assert_eq!(codes(&a), codes(&b), "{}: same diagnostics", f.display());
        if let (Some(a), Some(b)) = (a.checked, b.checked) {
            assert_eq!(a.totals, b.totals, "{}: totals", f.display());
            assert_eq!(a.peak_activation_bytes, b.peak_activation_bytes);
            let names = |c: &cnnc::Checked| c.network.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&a), names(&b), "{}: canonical names", f.display());
        }
    }
}

#[test]
fn comments_survive() {
    for f in parseable_files() {
        let source = std::fs::read_to_string(&f).unwrap();
        let formatted = format_source(&source).unwrap();
        let comments =
            |s: &str| s.lines().filter_map(|l| l.find('#').map(|i| l[i..].trim_end().to_string())).collect::<Vec<_>>();
        assert_eq!(comments(&source), comments(&formatted), "{}", f.display());
    }
}

/// The constructs of the modern families, written carelessly and with comments everywhere.
const MODERN: &str = "input 8x16x16
block ir(c, s = 1, e = 6) {
  if s == 1&&in.c==c { residual { conv 1x1 in.c*e nobias;bn; relu6;conv 1x1 c } }   # skip
  else if e == 1 { conv 3x3 in.c groups in.c stride s } else {
    # expand
    conv 1x1 in.c*e; relu6
    conv 1x1 c
  }
  gate {gap;conv 1x1 in.c/4;silu;conv 1x1 c;sigmoid}
}
block unit(c) { branch 0..in.c/2 { } branch in.c/2..in.c { conv 1x1 c/2 } ; shuffle 2 }
stage a {
  ir(8); ir(16, 2) # down
  shortcut { conv 1x1 16 nobias; bn }  # projection first
  residual { conv 3x3 16; gelu tanh; scale }
  unit(16); layernorm eps 1e-6; leaky_relu 0.2
}
";

#[test]
fn modern_constructs_format_stably() {
    let once = format_source(MODERN).unwrap();
    assert_eq!(format_source(&once).unwrap(), once, "idempotent:\n{once}");
    let comments = |s: &str| s.lines().filter_map(|l| l.find('#').map(|i| l[i..].to_string())).collect::<Vec<_>>();
    assert_eq!(comments(MODERN), comments(&once), "{once}");
    let (a, b) = (check_source(MODERN, "x", None), check_source(&once, "x", None));
    let names = |r: &cnnc::CheckReport| {
        r.checked.as_ref().expect("checks").network.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b), "{once}");
    for needle in [
        "else if e == 1 {",
        "branch 0..in.c/2 { }",
        "shortcut { conv 1x1 16 nobias; bn }  # projection first\n  residual {",
        "if s == 1 && in.c == c {",
    ] {
        assert!(once.contains(needle), "{needle:?} in\n{once}");
    }
}

/// Respaces `source`: every run of spaces or tabs (outside comments and strings) becomes 1-3
/// random blanks, lines get trailing blanks, and `;` `{` `}` gain or lose the spaces around them.
fn respace(source: &str, seed: u64) -> String {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::new();
    for line in source.lines() {
        let (code, comment) = match line.find('#') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let mut in_string = false;
        let mut chars = code.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                in_string = !in_string;
            }
            if !in_string && (c == ' ' || c == '\t') {
                while chars.peek().is_some_and(|&n| n == ' ' || n == '\t') {
                    chars.next();
                }
                for _ in 0..r.random_range(1..4) {
                    out.push(if r.random_bool(0.3) { '\t' } else { ' ' });
                }
                continue;
            }
            out.push(c);
            if !in_string && matches!(c, ';' | '{') && r.random_bool(0.5) {
                out.push(' ');
            }
        }
        out.push_str(comment);
        for _ in 0..r.random_range(0..3) {
            out.push(' ');
        }
        out.push('\n');
    }
    out
}

#[test]
fn spacing_does_not_matter() {
    for (k, f) in parseable_files().into_iter().enumerate() {
        let source = std::fs::read_to_string(&f).unwrap();
        let expected = format_source(&source).unwrap();
        for seed in 0..5 {
            let mutated = respace(&source, seed * 1000 + k as u64);
            let got = format_source(&mutated).unwrap_or_else(|e| panic!("{}: {e:?}\n{mutated}", f.display()));
            assert_eq!(got, expected, "{} respaced with seed {seed}:\n{mutated}", f.display());
        }
    }
}

#[test]
fn the_fmt_command_checks_and_writes() {
    let dir = std::env::temp_dir().join(format!("cnnc-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("messy.cnn");
    std::fs::write(
        &path,
        "input   3x32x32\nstage a {conv 3x3 8   relu;maxpool 2}   # pool\n\n\n\nstage b { gap ; flatten;fc 10 }\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    assert_eq!(cnnc(&["fmt", "--check", p]).status.code(), Some(1));
    let printed = cnnc(&["fmt", p]);
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        "input 3x32x32\nstage a { conv 3x3 8 relu; maxpool 2 }  # pool\n\nstage b { gap; flatten; fc 10 }\n"
    );
    assert_eq!(cnnc(&["fmt", "--write", p]).status.code(), Some(0));
    assert_eq!(cnnc(&["fmt", "--check", p]).status.code(), Some(0));
    std::fs::write(&path, "stage a { conv 3x3 8\n").unwrap();
    assert_eq!(cnnc(&["fmt", p]).status.code(), Some(1), "unparsable input is an error");
}
