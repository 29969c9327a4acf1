//! Hostile input never panics, hangs or exits with anything but 0, 1 or 2: truncations and
//! mutations of every example, junk bytes, huge numbers and deep nesting.

mod common;
use cnnc::check_source;
use common::*;
use proptest::prelude::*;

/// Checks and formats `s`: neither may panic, and formatting what parses must parse again.
fn check_str(s: &str) {
    let _ = check_source(s, "fuzz", None);
    if let Ok(formatted) = cnnc::format_source(s) {
        assert!(cnnc::format_source(&formatted).is_ok(), "formatted output does not parse:\n{s}\n---\n{formatted}");
    }
}

#[test]
fn every_truncation_of_every_example_is_handled() {
    for f in cnn_files("examples").into_iter().chain(cnn_files("examples/errors")) {
        let text = std::fs::read_to_string(&f).unwrap();
        for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)).step_by(3) {
            check_str(&text[..cut]);
        }
    }
}

#[test]
fn huge_numbers_and_sizes_are_errors() {
    for src in [
        "input 3x224x224\nstage a { conv 3x3 99999999999999999999999 }",
        "input 3x224x224\nstage a { conv 3x3 2147483647; conv 3x3 2147483647 }",
        "input 2147483647x2147483647x2147483647\nstage a { conv 3x3 64 }",
        "input 3x224x224\nstage a { fc 2147483647 }",
        "input 3x224x224\nstage a { conv 3x3 64 x10001 }",
        "input 3x224x224\nblock b(n) { conv 1x1 n x(n) }\nstage a { b(10000) x10000 }",
        "input 3x224x224\nstage a { conv 3x3 64 dilation 2147483647 pad 0 }",
        "input 3x224x224\nstage a { adaptive_avgpool 2147483647 }",
        "input 3x224x224\nstage a { maxpool 2147483647 stride 1 ceil }",
    ] {
        let report = check_source(src, "huge", None);
        assert!(report.errors() > 0, "{src}: {:?}", report.diagnostics);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let src = format!("input 3x8x8\nstage a {{ {} relu {} }}", "{ ".repeat(100_000), "} ".repeat(100_000));
    let report = check_source(&src, "deep", None);
    assert_eq!(report.diagnostics[0].code, "E0001");
    let expr = format!("input 3x8x8\nstage a {{ conv 3x3 {}1{} }}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(check_source(&expr, "deep", None).errors() > 0);
    let long_sum = format!("input 3x8x8\nstage a {{ conv 3x3 {}1 }}", "1+".repeat(100_000));
    assert!(check_source(&long_sum, "long", None).errors() == 0);
}

/// Unclosed statements nested as deep as allowed: each used to make pest parse the inner text
/// twice (once as the statement, once as a layer named by its keyword, or a residual without its
/// shortcut), so the time doubled with every level (found by fuzzing). Linear now: all of these
/// together parse in milliseconds; exponential, the test would never end.
#[test]
fn unclosed_nesting_parses_in_linear_time() {
    let forms = [
        "residual {\n",
        "stage a {\n",
        "residual { relu } shortcut {\n",
        "shortcut { relu } residual {\n",
        "if 1 { relu } else {\n",
        "if 1 {\n",
        "gate {\n",
        "branch 0..1 {\n",
        "block f() {\n",
        "{\n",
        "residual { stage a { if 1 { gate { branch 0..1 {\n",
    ];
    for form in forms {
        let levels = cnnc::MAX_NESTING / form.matches('{').count();
        let src = format!("input 3x8x8\n{}relu\nconv 3x3 4 stride bo2\n", form.repeat(levels));
        let start = std::time::Instant::now();
        let report = check_source(&src, "unclosed", None);
        assert!(report.errors() > 0, "{form:?}");
        assert!(start.elapsed().as_secs() < 10, "{form:?} took {:?}", start.elapsed());
    }
}

#[test]
fn block_chains_are_bounded() {
    // 200 blocks, each calling the next: deeper than the instance limit.
    let mut src = String::from("input 3x8x8\n");
    for i in 0..200 {
        src += &format!("block b{i}() {{ b{}() }}\n", i + 1);
    }
    src += "block b200() { relu }\nstage s { b0() }\n";
    let report = check_source(&src, "chain", None);
    assert!(report.errors() > 0);
}

#[test]
fn the_binary_exits_0_1_or_2_on_junk() {
    let dir = std::env::temp_dir().join(format!("cnnc-junk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x12],
        b"\x00\x01\x02network".to_vec(),
        b"input 3x224x224\nstage a { conv 3x3 64 }\n\xc3\x28".to_vec(),
        Vec::new(),
        b"}}}}{{{{".to_vec(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let path = dir.join(format!("junk{i}.cnn"));
        std::fs::write(&path, bytes).unwrap();
        for json in [false, true] {
            let mut args = vec!["check", path.to_str().unwrap()];
            if json {
                args.push("--json");
            }
            let code = cnnc(&args).status.code();
            assert!(matches!(code, Some(0..=2)), "{args:?} exited {code:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        check_str(&s);
    }

    #[test]
    fn mutated_examples_never_panic(idx in 0usize..64, pos in 0usize..4000, junk in "[ -~\n{}();:x0-9]{0,12}") {
        let files = cnn_files("examples");
        let text = std::fs::read_to_string(&files[idx % files.len()]).unwrap();
        let mut at = pos % (text.len() + 1);
        while !text.is_char_boundary(at) { at -= 1; }
        let mutated = format!("{}{}{}", &text[..at], junk, &text[at..]);
        check_str(&mutated);
    }

    #[test]
    fn random_token_soup_never_panics(tokens in proptest::collection::vec(prop_oneof![
        Just("conv"), Just("3x3"), Just("64"), Just("stride"), Just("2"), Just("relu"), Just("x2"),
        Just("{"), Just("}"), Just(";"), Just("\n"), Just("stage"), Just("s"), Just("block"), Just("b(c)"),
        Just("b(1)"), Just("branch"), Just("residual"), Just("shortcut"), Just("maxpool"), Just("ceil"),
        Just("fc"), Just("flatten"), Just("gap"), Just("bn"), Just("input 3x16x16\n"), Just("c"), Just("*"),
        Just("l:"), Just("pad"), Just("0"), Just("groups"), Just("softmax"), Just("lrn"), Just("0.5"),
    ], 0..60)) {
        check_str(&tokens.join(" "));
    }
}
