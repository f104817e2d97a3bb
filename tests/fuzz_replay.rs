//! Replays the `parse_body` fuzz seeds and saved fuzz inputs through the fuzz target's checks,
//! so the normal test suite catches a regression on any input the fuzzer has found interesting.
//!
//! Inputs live in `fuzz/seeds/parse_body/` and `tests/fuzz_corpus/`. Each file is one fuzz
//! input, and its first byte selects the body format and content coding as described in
//! `fuzz/check/parse_body.rs`.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

#[path = "../fuzz/check/parse_body.rs"]
mod check;

const INPUT_DIRS: [&str; 2] = ["fuzz/seeds/parse_body", "tests/fuzz_corpus"];

fn input_files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read fuzz input folder {}: {error}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("folder entry is readable").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_inputs_pass_parse_body_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    for dir in INPUT_DIRS {
        let files = input_files(&root.join(dir));
        assert!(!files.is_empty(), "no fuzz inputs in {dir}");

        for path in files {
            let input = fs::read(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            // Each failure is collected, so one run lists every failing file. The default
            // panic hook still prints each failed check's message.
            if panic::catch_unwind(|| check::check_input(&input)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }

    assert!(
        failures.is_empty(),
        "parse_body checks failed for {} fuzz inputs: {failures:#?}",
        failures.len()
    );
}
