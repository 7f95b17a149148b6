//! `shmhub man`: the pages it makes are the ones committed under
//! docs/man, and it refuses what it cannot do without writing anything.

use std::path::Path;

use crate::common::Env;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/man");

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn the_committed_pages_are_what_the_command_makes() {
    let env = Env::new();
    let out = env.dir().join("man1");
    std::fs::create_dir(&out).unwrap();
    let r = env.ok(&["man", "--out-dir", out.to_str().unwrap()]);
    let made = names_in(&out);
    assert_eq!(r.stdout.lines().count(), made.len(), "{}", r.stdout);
    let committed = names_in(Path::new(COMMITTED));
    assert_eq!(
        made, committed,
        "docs/man has other pages than the command makes: run `cargo run -- man --out-dir docs/man`"
    );
    for name in &made {
        let fresh = std::fs::read(out.join(name)).unwrap();
        let kept = std::fs::read(Path::new(COMMITTED).join(name)).unwrap();
        assert!(
            fresh == kept,
            "docs/man/{name} differs from what the command makes: run `cargo run -- man --out-dir docs/man`"
        );
    }
    // One page per command --help lists (guest-echo among them), and none
    // for the internal one.
    assert!(made.contains(&"shmhub.1".to_string()));
    assert!(made.contains(&"shmhub-send.1".to_string()));
    assert!(made.contains(&"shmhub-guest-echo.1".to_string()));
    assert!(!made.iter().any(|n| n.contains("bench-peer")));
}

#[test]
fn one_page_goes_to_stdout_and_names_every_flag_of_its_command() {
    let env = Env::new();
    let page = env.ok(&["man", "recv"]).stdout;
    assert_eq!(
        page,
        std::fs::read_to_string(Path::new(COMMITTED).join("shmhub-recv.1")).unwrap()
    );
    let help = env.ok(&["recv", "--help"]).stdout;
    for flag in help.split_whitespace().filter(|w| w.starts_with("--")) {
        let flag = flag.trim_end_matches(|c: char| !c.is_alphanumeric());
        let roff = flag.replace('-', "\\-");
        assert!(page.contains(&roff), "{flag} is in --help, not in the page");
    }
    assert!(env.ok(&["man"]).stdout.contains(".TH shmhub 1"));
}

#[test]
fn what_it_cannot_do_is_refused_and_nothing_is_written() {
    let env = Env::new();
    let r = env.run(&["man", "nope"]);
    r.usage();
    assert!(
        r.stderr
            .contains("no manual page for \"nope\"; the commands are create"),
        "{}",
        r.stderr
    );
    let file = env.dir().join("file");
    std::fs::write(&file, "x").unwrap();
    env.run(&["man", "--out-dir", file.to_str().unwrap()])
        .code(1)
        .error_line(&["file", "not a directory"]);
    env.run(&["man", "--out-dir", "missing"])
        .code(1)
        .error_line(&["missing", "No such file or directory"]);
    let locked = env.dir().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let (r, enforced) =
        env.run_unable_to_write(&locked, &["man", "--out-dir", locked.to_str().unwrap()]);
    if enforced {
        r.code(1)
            .error_line(&["locked/shmhub.1", "could not write the page"]);
        assert!(names_in(&locked).is_empty(), "{:?}", names_in(&locked));
    }
}
