//! One test per claim the README makes about the command line: IMAGE may
//! be left out of every verb when the WIM has one image, `--ref` is taken
//! where the README says (and `optimize` refuses a split part as it says),
//! `apply` refuses a non-empty target unless `--overwrite` and says what it
//! extracted, `info` and `verify` count blobs alike, every argument has a
//! line of help and every verb an example, and the completion scripts parse.
//!
//! Results are checked against the source tree and `wimlib-imagex`
//! (apply, dir, verify, the blob table), never only against another wimfs
//! run.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tree with every kind of entry `apply` counts, captured once in
/// LZX (one image) and split into parts.
struct Sample {
    src: PathBuf,
    wim: PathBuf,
    /// The split set: the first part, then the others (for `--ref`).
    parts: Vec<PathBuf>,
}

static SAMPLE: Lazy<Sample> = Lazy::new();

fn sample() -> Option<&'static Sample> {
    if !require(&["wimlib-imagex"]) {
        return None;
    }
    Some(SAMPLE.get(|| {
        let d = shared_dir("cli-claims");
        let src = d.join("src");
        let mut rng = Rng::new(13);
        std::fs::create_dir_all(src.join("docs/deep")).unwrap();
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("hello.txt"), b"Hello from wimfs\n").unwrap();
        std::fs::write(src.join("docs/numbers.txt"), text_bytes(&mut rng, 50_000)).unwrap();
        std::fs::write(src.join("docs/deep/empty"), b"").unwrap();
        // Incompressible, so a 1 MiB split makes several parts.
        for i in 0..3 {
            std::fs::write(src.join(format!("bin/r{i}.bin")), rng.bytes(1_200_000)).unwrap();
        }
        std::fs::hard_link(src.join("hello.txt"), src.join("docs/deep/hl.txt")).unwrap();
        std::os::unix::fs::symlink("../hello.txt", src.join("bin/link")).unwrap();
        let wim = d.join("sample.wim");
        wimlib_capture(&src, &wim, &["--compress=LZX"]);
        let split = d.join("split");
        std::fs::create_dir_all(&split).unwrap();
        let first = split.join("s.swm");
        run_ok(
            Command::new("wimlib-imagex")
                .arg("split")
                .arg(&wim)
                .arg(&first)
                .arg("1"),
        );
        let mut parts = vec![first];
        for n in 2.. {
            let p = split.join(format!("s{n}.swm"));
            if !p.exists() {
                break;
            }
            parts.push(p);
        }
        assert!(parts.len() >= 2, "wimlib-imagex split made one part");
        Sample { src, wim, parts }
    }))
}

fn os<S: AsRef<std::ffi::OsStr>>(s: S) -> OsString {
    s.as_ref().to_os_string()
}

/// `--ref PART` for every part after the first.
fn ref_args(parts: &[PathBuf]) -> Vec<OsString> {
    parts[1..]
        .iter()
        .flat_map(|p| [os("--ref"), os(p)])
        .collect()
}

fn lines(o: &Out) -> BTreeSet<String> {
    o.stdout_str().lines().map(str::to_string).collect()
}

/// The image as wimlib-imagex applies it, the oracle for every apply.
fn wimlib_tree(wim: &Path, refs: &[PathBuf], out: &Path) {
    let o = wimlib_apply(wim, "1", out, refs);
    assert!(o.ok(), "{}", o.describe());
}

fn same_tree(want: &Path, got: &Path, what: &str) {
    assert_trees_equal(
        want,
        got,
        &CompareOpts::default().labels("wimlib-imagex apply", "wimfs apply"),
        what,
    );
}

// ---------------------------------------------------------------------------
// IMAGE may be left out when the WIM has one image
// ---------------------------------------------------------------------------

#[test]
fn info_with_and_without_image() {
    let Some(s) = sample() else { return };
    let name = &wimlib_image_names(&s.wim)[0];
    let all = wimfs_ok([os("info"), os(&s.wim)]);
    for image in ["1", name.as_str()] {
        let one = wimfs_ok([os("info"), os(&s.wim), os(image)]);
        assert_eq!(
            all.stdout_str(),
            one.stdout_str(),
            "`info WIM` and `info WIM {image}` of a one-image WIM"
        );
    }
    assert!(
        all.stdout_str()
            .lines()
            .any(|l| l.strip_prefix("Name:").map(str::trim) == Some(name)),
        "image name {name:?} (from wimlib-imagex info) missing:\n{}",
        all.stdout_str()
    );
    let j1: serde_json::Value =
        serde_json::from_slice(&wimfs_ok([os("info"), os(&s.wim), os("--json")]).stdout).unwrap();
    let j2: serde_json::Value =
        serde_json::from_slice(&wimfs_ok([os("info"), os(&s.wim), os("1"), os("--json")]).stdout)
            .unwrap();
    assert_eq!(j1, j2, "info --json with and without IMAGE");
    assert_eq!(j1["images"][0]["name"], serde_json::json!(name));
}

#[test]
fn dir_with_and_without_image() {
    let Some(s) = sample() else { return };
    let want: BTreeSet<String> = wimlib_dir(&s.wim, "1", &[], None).into_iter().collect();
    let sub: BTreeSet<String> = wimlib_dir(&s.wim, "1", &[], Some("/docs"))
        .into_iter()
        .collect();
    assert!(want.contains("/docs/deep/hl.txt") && sub.contains("/docs/numbers.txt"));
    for (args, expected) in [
        (vec![], &want),
        (vec!["1"], &want),
        (vec!["1", "/docs"], &sub),
        // A lone PATH on a one-image WIM.
        (vec!["/docs"], &sub),
    ] {
        let mut a = vec![os("dir"), os(&s.wim)];
        a.extend(args.iter().map(os));
        let got = lines(&wimfs_ok(&a));
        assert_eq!(&got, expected, "`wimfs dir WIM {}`", args.join(" "));
    }
    // A number is an image, never a path.
    let o = wimfs([os("dir"), os(&s.wim), os("2")]);
    assert!(
        !o.ok() && o.stderr_str().contains("no such image"),
        "{}",
        o.describe()
    );
}

#[test]
fn cat_with_and_without_image() {
    let Some(s) = sample() else { return };
    let want = std::fs::read(s.src.join("docs/numbers.txt")).unwrap();
    for image in [None, Some("1")] {
        let mut a = vec![os("cat"), os(&s.wim)];
        a.extend(image.map(os));
        a.push(os("/docs/numbers.txt"));
        let o = wimfs_ok(&a);
        assert!(
            o.stdout == want,
            "`wimfs cat` with IMAGE {image:?}: wrong bytes"
        );
    }
}

#[test]
fn apply_with_and_without_image() {
    let Some(s) = sample() else { return };
    let t = tempdir();
    let want = t.path().join("wimlib");
    wimlib_tree(&s.wim, &[], &want);
    for image in [None, Some("1")] {
        let out = t.path().join(format!("out-{}", image.unwrap_or("none")));
        let mut a = vec![os("apply"), os(&s.wim)];
        a.extend(image.map(os));
        a.push(os(&out));
        wimfs_ok(&a);
        same_tree(&want, &out, &format!("apply with IMAGE {image:?}"));
    }
}

#[test]
fn export_with_and_without_image() {
    let Some(s) = sample() else { return };
    let t = tempdir();
    let want = wimlib_dir(&s.wim, "1", &[], None);
    for image in [None, Some("1"), Some("all")] {
        let dst = t.path().join(format!("e-{}.wim", image.unwrap_or("none")));
        let mut a = vec![os("export"), os(&s.wim)];
        a.extend(image.map(os));
        a.push(os(&dst));
        wimfs_ok(&a);
        let v = wimlib_verify(&dst, &[]);
        assert!(
            v.ok(),
            "wimlib-imagex verify of export {image:?}: {}",
            v.describe()
        );
        assert_eq!(wimlib_dir(&dst, "1", &[], None), want, "export {image:?}");
    }
    // DST forgotten: `export SRC 1` writes no WIM named "1".
    for image in ["1", "all"] {
        let o = run(cmd(wimfs_bin(), [os("export"), os(&s.wim), os(image)]).current_dir(t.path()));
        assert_no_panic(&o);
        assert!(
            !o.ok() && o.stderr_str().contains("looks like an IMAGE"),
            "{}",
            o.describe()
        );
        assert!(
            !t.path().join(image).exists(),
            "export wrote a WIM named {image:?}"
        );
    }
}

#[test]
fn mount_with_and_without_image() {
    let Some(s) = sample() else { return };
    if !fuse_available() {
        skip("FUSE is not available (/dev/fuse, fusermount3)");
        return;
    }
    let t = tempdir();
    let want = std::fs::read(s.src.join("docs/numbers.txt")).unwrap();
    for image in [None, Some("1")] {
        let mnt = t.path().join(format!("m-{}", image.unwrap_or("none")));
        let m = Mount::ok(&s.wim, image, &mnt, &[]);
        assert!(
            std::fs::read(mnt.join("docs/numbers.txt")).unwrap() == want,
            "mounted file with IMAGE {image:?}"
        );
        let o = m.unmount();
        assert!(o.ok(), "{}", o.describe());
    }
}

// ---------------------------------------------------------------------------
// --ref where the README says it is taken
// ---------------------------------------------------------------------------

#[test]
fn ref_accepted_by_every_verb_that_reads_a_wim() {
    let Some(s) = sample() else { return };
    let t = tempdir();
    let first = &s.parts[0];
    let refs = ref_args(&s.parts);
    let with = |verb: &str, mid: &[OsString], tail: &[OsString]| -> Out {
        let mut a = vec![os(verb), os(first)];
        a.extend(mid.iter().cloned());
        a.extend(refs.iter().cloned());
        a.extend(tail.iter().cloned());
        wimfs(&a)
    };
    // info names the part; verify checks every blob of the set.
    let o = with("info", &[], &[]);
    assert!(o.ok(), "{}", o.describe());
    let total = s.parts.len();
    assert!(
        o.stdout_str()
            .contains(&format!("Part Number:    1/{total}")),
        "{}",
        o.describe()
    );
    let o = with("verify", &[], &[]);
    assert!(
        o.ok() && o.stdout_str().contains(": OK ("),
        "{}",
        o.describe()
    );
    // Without the other parts verify fails: --ref is what made it pass.
    let o = wimfs([os("verify"), os(first)]);
    assert!(
        !o.ok(),
        "verify of a lone split part passed:\n{}",
        o.describe()
    );
    // dir and cat, against wimlib and the source.
    let o = with("dir", &[], &[]);
    assert!(o.ok(), "{}", o.describe());
    let want: BTreeSet<String> = wimlib_dir(first, "1", &s.parts[1..], None)
        .into_iter()
        .collect();
    assert_eq!(lines(&o), want, "dir of the split set");
    for f in ["bin/r0.bin", "bin/r2.bin"] {
        let o = with("cat", &[os(format!("/{f}"))], &[]);
        assert!(o.ok(), "{}", o.describe());
        assert!(
            o.stdout == std::fs::read(s.src.join(f)).unwrap(),
            "cat /{f} of the split set: wrong bytes"
        );
    }
    // apply, against wimlib-imagex apply --ref.
    let want = t.path().join("wimlib");
    wimlib_tree(first, &s.parts[1..], &want);
    let out = t.path().join("out");
    let o = with("apply", &[os(&out)], &[]);
    assert!(o.ok(), "{}", o.describe());
    same_tree(&want, &out, "apply of the split set");
    // export joins the set into one WIM wimlib verifies and lists alike.
    let joined = t.path().join("joined.wim");
    let o = with("export", &[os("all"), os(&joined)], &[]);
    assert!(o.ok(), "{}", o.describe());
    let v = wimlib_verify(&joined, &[]);
    assert!(
        v.ok(),
        "wimlib-imagex verify of the joined WIM: {}",
        v.describe()
    );
    assert_eq!(
        wimlib_dir(&joined, "1", &[], None),
        wimlib_dir(&s.wim, "1", &[], None),
        "joined WIM"
    );
    // A read-only mount of the set.
    if fuse_available() {
        let mnt = t.path().join("mnt");
        let mut extra: Vec<String> = Vec::new();
        for p in &s.parts[1..] {
            extra.push("--ref".into());
            extra.push(p.display().to_string());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let m = Mount::ok(first, None, &mnt, &extra);
        assert!(
            std::fs::read(mnt.join("bin/r1.bin")).unwrap()
                == std::fs::read(s.src.join("bin/r1.bin")).unwrap(),
            "mounted split set: wrong bytes"
        );
        let o = m.unmount();
        assert!(o.ok(), "{}", o.describe());
    } else {
        skip("FUSE is not available: the read-only mount with --ref was not tried");
    }
}

/// The README says optimize works on one file: it takes no `--ref`, and a
/// split part is refused, pointing at `export`, with the part unchanged.
#[test]
fn optimize_refuses_a_split_part_and_takes_no_ref() {
    let Some(s) = sample() else { return };
    let t = tempdir();
    let part = t.path().join("s.swm");
    std::fs::copy(&s.parts[0], &part).unwrap();
    let before = std::fs::read(&part).unwrap();
    let o = wimfs([os("optimize"), os(&part)]);
    assert!(!o.ok(), "{}", o.describe());
    assert!(
        o.stderr_str().contains("split WIM") && o.stderr_str().contains("wimfs export"),
        "{}",
        o.describe()
    );
    assert!(
        std::fs::read(&part).unwrap() == before,
        "optimize changed the part"
    );
    let o = wimfs([os("optimize"), os(&s.wim), os("--ref"), os(&s.parts[1])]);
    assert_eq!(o.code(), Some(2), "optimize --ref: {}", o.describe());
}

// ---------------------------------------------------------------------------
// apply: refusal, --overwrite, the summary
// ---------------------------------------------------------------------------

#[test]
fn apply_refuses_a_non_empty_target() {
    let Some(s) = sample() else { return };
    let t = tempdir();
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let o = wimfs([os("apply"), os(&s.wim), os(&out)]);
    assert_eq!(o.code(), Some(1), "{}", o.describe());
    let err = o.stderr_str();
    assert!(
        err.contains("not empty") && err.contains("--overwrite"),
        "the refusal does not say why and what to do: {err}"
    );
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep.txt"], "a refused apply wrote into the target");
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
}

#[test]
fn apply_overwrite_replaces_what_the_image_has() {
    let Some(s) = sample() else { return };
    let t = tempdir();
    let want = t.path().join("wimlib");
    wimlib_tree(&s.wim, &[], &want);
    let out = t.path().join("out");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(out.join("bin")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("numbers.txt"), b"outside").unwrap();
    // Stale content, a symlink where the image has a directory (pointing
    // out of the target), a file the image does not have.
    std::fs::write(
        out.join("hello.txt"),
        b"old hello, longer than the new one\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, out.join("docs")).unwrap();
    std::fs::write(
        out.join("bin/link"),
        b"a file where the image has a symlink",
    )
    .unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    for round in 1..=2 {
        let o = wimfs([os("apply"), os(&s.wim), os(&out), os("--overwrite")]);
        assert!(o.ok(), "apply --overwrite, round {round}: {}", o.describe());
    }
    assert_eq!(
        std::fs::read(outside.join("numbers.txt")).unwrap(),
        b"outside",
        "apply --overwrite wrote through a symlink out of the target"
    );
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
    std::fs::remove_file(out.join("keep.txt")).unwrap();
    // Removing keep.txt just now changed the root's mtime.
    assert_trees_equal(
        &want,
        &out,
        &CompareOpts {
            root_mtime: false,
            ..CompareOpts::default().labels("wimlib-imagex apply", "wimfs apply --overwrite")
        },
        "apply --overwrite over stale entries",
    );
    // A directory where the image has a file is refused, not deleted.
    let out2 = t.path().join("out2");
    std::fs::create_dir_all(out2.join("hello.txt/sub")).unwrap();
    let o = wimfs([os("apply"), os(&s.wim), os(&out2), os("--overwrite")]);
    assert!(!o.ok(), "{}", o.describe());
    assert!(out2.join("hello.txt/sub").is_dir());
}

/// The closing line names exactly what the source tree holds: files
/// (hard links apart), directories (the target included), symlinks, hard
/// links and the bytes of the files.
#[test]
fn apply_says_what_it_extracted() {
    let Some(s) = sample() else { return };
    let (mut files, mut dirs, mut links, mut hard, mut bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut seen = BTreeSet::new();
    let mut stack = vec![s.src.clone()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            dirs += 1;
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if m.file_type().is_symlink() {
            links += 1;
        } else if seen.insert(m.ino()) {
            files += 1;
            bytes += m.len();
        } else {
            hard += 1;
        }
    }
    assert_eq!((files, dirs, links, hard), (6, 4, 1, 1), "the sample tree");
    let t = tempdir();
    let out = t.path().join("out");
    let o = wimfs_ok([os("apply"), os(&s.wim), os(&out)]);
    let line = o.stdout_str();
    let want = format!(
        "applied image 1 to {}: {files} files, {dirs} directories, 1 symlink, 1 hard link, \
         {bytes} bytes in ",
        out.display()
    );
    assert!(
        line.starts_with(&want) && line.trim_end().ends_with(" s") && line.lines().count() == 1,
        "summary\n  got:  {line}\n  want: {want}N.N s"
    );
}

// ---------------------------------------------------------------------------
// info and verify count blobs alike
// ---------------------------------------------------------------------------

#[test]
fn info_and_verify_count_blobs_alike() {
    let Some(s) = sample() else { return };
    // wimlib's blob table: metadata resources have flag 0x02.
    let table = blob_table(&s.wim);
    let meta = table.iter().filter(|e| e.flags & 0x02 != 0).count();
    let data = table.len() - meta;
    let info = wimfs_ok([os("info"), os(&s.wim)]).stdout_str();
    let want = format!("Blobs:          {data} (+ {meta} image metadata)");
    assert!(info.lines().any(|l| l == want), "want {want:?} in:\n{info}");
    let verify = wimfs_ok([os("verify"), os(&s.wim)]).stdout_str();
    let want = format!(": OK ({data} blobs + {meta} image metadata, ");
    assert!(verify.contains(&want), "want {want:?} in: {verify}");
}

// ---------------------------------------------------------------------------
// Help, completions, man pages
// ---------------------------------------------------------------------------

/// Every argument and flag of the inspect and service verbs has a line of
/// help, the global options are listed apart, and each verb shows an
/// example.
#[test]
fn help_describes_every_argument_and_shows_an_example() {
    let mut problems = Vec::new();
    for verb in [
        "info", "dir", "cat", "verify", "export", "apply", "optimize",
    ] {
        let help = wimfs_ok(["help", verb]).stdout_str();
        let mut section = "";
        for l in help.lines() {
            if !l.starts_with(' ') && l.ends_with(':') {
                section = l;
                continue;
            }
            if l.is_empty() {
                section = "";
            }
            if !matches!(section, "Arguments:" | "Options:" | "Global options:") || l.is_empty() {
                continue;
            }
            // "  <WIM>  The WIM file..." / "      --json  Print JSON...": a
            // name, two spaces or more, a description.
            let body = l.trim_start();
            if body
                .split_once("  ")
                .is_none_or(|(_, d)| d.trim().is_empty())
            {
                problems.push(format!("{verb}: no help for {body:?}"));
            }
            if section == "Options:" && (body.contains("--threads") || body.contains("--verbose")) {
                problems.push(format!(
                    "{verb}: global option among the verb's own: {body}"
                ));
            }
        }
        if !help.contains("Global options:\n") {
            problems.push(format!("{verb}: no \"Global options\" heading"));
        }
        if !help
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("wimfs {verb} ")))
        {
            problems.push(format!("{verb}: no example"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // `apply` names its arguments (no `<ARGS>...`).
    let help = wimfs_ok(["help", "apply"]).stdout_str();
    assert!(
        help.contains("Usage: wimfs apply [OPTIONS] <WIM> [IMAGE] <DIR>"),
        "{help}"
    );
}

#[test]
fn completions_for_every_shell() {
    let t = tempdir();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let o = wimfs_ok(["completions", shell]);
        let script = o.stdout_str();
        assert!(
            script.len() > 500 && script.contains("wimfs") && script.contains("overwrite"),
            "{shell} completions:\n{script}"
        );
        let checker = match shell {
            "bash" => Some("bash"),
            "zsh" => Some("zsh"),
            "fish" => Some("fish"),
            _ => None,
        };
        let Some(checker) = checker else { continue };
        if !have(checker) {
            if checker == "bash" {
                skip("bash is not installed: the bash completions were not parsed");
            }
            continue;
        }
        let f = t.path().join(format!("wimfs.{shell}"));
        std::fs::write(&f, &script).unwrap();
        let o = run(Command::new(checker).arg("-n").arg(&f));
        assert!(
            o.ok(),
            "`{checker} -n` of the {shell} completions: {}",
            o.describe()
        );
    }
    let o = wimfs(["completions", "tcsh"]);
    assert_eq!(o.code(), Some(2), "{}", o.describe());
}

#[test]
fn man_pages_for_wimfs_and_every_verb() {
    let t = tempdir();
    let dir = t.path().join("man");
    wimfs_ok([os("man"), os(&dir)]);
    for page in [
        "wimfs.1",
        "wimfs-apply.1",
        "wimfs-export.1",
        "wimfs-completions.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}:\n{text}"
        );
    }
    let apply = std::fs::read_to_string(dir.join("wimfs-apply.1")).unwrap();
    assert!(apply.contains("overwrite"), "{apply}");
    assert!(
        !dir.join("wimfs-man.1").exists(),
        "the hidden man verb got a page"
    );
}

// ---------------------------------------------------------------------------
// The two commands and what they install
// ---------------------------------------------------------------------------

/// `scripts/demo.sh` and `scripts/test.sh` print a line before anything
/// slow (the first line of each is an `echo`, every cargo build is
/// announced) and let cargo show its own progress (no `-q`).
#[test]
fn scripts_say_what_they_do_before_building() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for script in ["scripts/demo.sh", "scripts/test.sh", "scripts/man.sh"] {
        let text = std::fs::read_to_string(root.join(script)).unwrap();
        let code: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let runs_cargo =
            |l: &str| !l.starts_with("echo ") && (l.starts_with("cargo ") || l.contains(" cargo "));
        let first_echo = code.iter().position(|l| l.starts_with("echo "));
        let first_cargo = code.iter().position(|l| runs_cargo(l));
        if first_cargo.is_some() && first_echo.is_none_or(|e| Some(e) > first_cargo) {
            problems.push(format!(
                "{script}: cargo runs before the script says anything"
            ));
        }
        for (i, l) in code.iter().enumerate() {
            if !runs_cargo(l) {
                continue;
            }
            if l.split_whitespace().any(|w| w == "-q" || w == "--quiet") {
                problems.push(format!("{script}: cargo with -q hides its progress: {l}"));
            }
            // Announced by an echo at most a few lines above.
            if !code[i.saturating_sub(4)..i]
                .iter()
                .any(|p| p.starts_with("echo ") && p.contains("cargo"))
            {
                problems.push(format!("{script}: cargo runs unannounced: {l}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Nothing links libfuse (fuser's default features mount through
/// /dev/fuse and fusermount3), so `scripts/test.sh` installs neither
/// libfuse3-dev nor pkg-config, and still installs fuse3 for fusermount3.
#[test]
fn nothing_links_libfuse() {
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test.sh"))
            .unwrap();
    let code: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!code.contains("libfuse3-dev") && !code.contains("need+=(pkg-config)"));
    assert!(
        code.contains("need+=(fuse3)"),
        "fuse3 (fusermount3) is still needed"
    );
    if !have("ldd") {
        skip("ldd is not installed: the wimfs binary's libraries were not listed");
        return;
    }
    let o = run(Command::new("ldd").arg(wimfs_bin()));
    assert!(o.ok(), "{}", o.describe());
    assert!(
        !o.stdout_str().contains("libfuse"),
        "wimfs links libfuse:\n{}",
        o.stdout_str()
    );
}
