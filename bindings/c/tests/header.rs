//! The committed header, `include/shmhub.h`, is the one cbindgen makes
//! from this crate now: a call or code changed in Rust without the header
//! fails here. `SHMHUB_BLESS=1` writes it instead of comparing.

use std::path::Path;

#[test]
fn the_committed_header_matches_the_code() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml reads");
    let mut made = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut made);
    let header = crate_dir.join("include/shmhub.h");
    if std::env::var_os("SHMHUB_BLESS").is_some() {
        std::fs::write(&header, &made).expect("the header is written");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    if committed != made {
        let first = committed
            .split(|&b| b == b'\n')
            .zip(made.split(|&b| b == b'\n'))
            .position(|(a, b)| a != b)
            .map_or("at the end".to_string(), |n| format!("from line {}", n + 1));
        panic!(
            "bindings/c/include/shmhub.h differs from what the code generates ({first}).\n\
             Regenerate it with:\n    SHMHUB_BLESS=1 cargo test -p shmhub-c --test header\n\
             and commit it."
        );
    }
}
