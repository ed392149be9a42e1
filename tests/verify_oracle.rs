//! `wimfs verify` against `wimlib-imagex verify` and the fixtures README,
//! plus corruption tests: damaged resources, blob table, header, and
//! truncated files must give a non-zero exit with a message, never a panic
//! or a hang.
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

fn wimfs_verify(wim: &Path, refs: &[PathBuf]) -> Out {
    let mut c = cmd(wimfs_bin(), ["verify"]);
    c.arg(wim);
    for r in refs {
        c.arg("--ref").arg(r);
    }
    let o = run_timeout(&mut c, VERIFY_TIMEOUT);
    assert_no_panic(&o);
    o
}

/// What the fixtures README says `wimlib-imagex verify` reports, with words
/// of which wimfs's message must contain at least one.
fn readme_verdict(rel: &str) -> Option<&'static [&'static str]> {
    match rel {
        "wimlib/VerifyFail.wim" => Some(&["integrity"]),
        "wimlib-edge/corrupted_file_1.wim" => {
            Some(&["sha-1", "sha1", "hash", "digest", "checksum"])
        }
        "wimlib-edge/corrupted_file_2.wim" => {
            Some(&["decompress", "compressed", "lzx", "corrupt", "invalid"])
        }
        "wimlib-edge/cyclic.wim" => {
            Some(&["cycl", "loop", "deep", "metadata", "invalid", "corrupt"])
        }
        _ => None,
    }
}

#[test]
fn fixtures_verify_like_wimlib_and_readme() {
    let Some(fx) = fixtures() else { return };
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let wims = fixture_wims(&fx);
    assert!(wims.len() >= 40, "{wims:?}");
    check_all(
        wims,
        |r| r.clone(),
        |rel| {
            let wim = fx.join(rel);
            let refs = if rel == "wimlib/Split.swm" {
                vec![fx.join("wimlib/Split2.swm")]
            } else {
                vec![]
            };
            let w = wimlib_verify(&wim, &refs);
            let expect = readme_verdict(rel);
            // The oracle agrees with the README, or the README is stale.
            assert_eq!(
                w.ok(),
                expect.is_none(),
                "wimlib-imagex verify disagrees with README:\n{}",
                w.describe()
            );
            let o = wimfs_verify(&wim, &refs);
            match expect {
                None => assert!(
                    o.ok(),
                    "wimfs verify fails where wimlib-imagex verifies:\n{}",
                    o.describe()
                ),
                Some(words) => {
                    assert_clean_failure(&o, rel);
                    let msg = o.all_output().to_lowercase();
                    assert!(
                        words.iter().any(|k| msg.contains(k)),
                        "wimfs verify should name the problem (one of {words:?}):\n{}",
                        o.describe()
                    );
                }
            }
            // README: the bad entries of these are skipped with a warning.
            if rel.ends_with("dotdot.wim") || rel.ends_with("duplicate_names.wim") {
                let msg = o.all_output().to_lowercase();
                assert!(
                    ["warn", "..", "duplicate", "skip"]
                        .iter()
                        .any(|k| msg.contains(k)),
                    "wimfs verify should warn about the skipped entries:\n{}",
                    o.describe()
                );
            }
        },
    );
}

#[test]
fn split_wim_without_its_part_fails() {
    let Some(fx) = fixtures() else { return };
    let o = wimfs_verify(&fx.join("wimlib/Split.swm"), &[]);
    assert_clean_failure(&o, "verify Split.swm without --ref Split2.swm");
}

#[test]
fn missing_and_non_wim_files_fail() {
    let t = tempdir();
    let o = wimfs_verify(&t.path().join("does-not-exist.wim"), &[]);
    assert_clean_failure(&o, "verify a missing file");
    let junk = t.path().join("junk.wim");
    std::fs::write(&junk, vec![0x42u8; 5000]).unwrap();
    assert_clean_failure(&wimfs_verify(&junk, &[]), "verify a non-WIM file");
    let empty = t.path().join("empty.wim");
    std::fs::write(&empty, b"").unwrap();
    assert_clean_failure(&wimfs_verify(&empty, &[]), "verify an empty file");
    assert_clean_failure(&wimfs_verify(t.path(), &[]), "verify a directory");
}

// ---------------------------------------------------------------------------
// Generated WIMs
// ---------------------------------------------------------------------------

/// A small source tree: multi-chunk random+text file, text, empty file.
fn small_source(dir: &Path) {
    let mut rng = Rng::new(99);
    std::fs::create_dir_all(dir.join("d")).unwrap();
    let mut big = text_bytes(&mut rng, 150_000);
    big.extend(rng.bytes(100_000));
    big.extend(text_bytes(&mut rng, 150_000));
    std::fs::write(dir.join("big.bin"), big).unwrap();
    std::fs::write(dir.join("d/text.txt"), text_bytes(&mut rng, 40_000)).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::write(dir.join("d/small"), b"small file").unwrap();
}

#[test]
fn generated_wims_verify() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    make_source_tree(&src);
    check_all(
        CAPTURE_VARIANTS.iter(),
        |(l, _)| l.to_string(),
        |(label, extra)| {
            let wim = t.path().join(format!("{label}.wim"));
            wimlib_capture(&src, &wim, extra);
            assert!(wimlib_verify(&wim, &[]).ok());
            let o = wimfs_verify(&wim, &[]);
            assert!(
                o.ok(),
                "wimfs verify of a good {label} WIM failed:\n{}",
                o.describe()
            );
        },
    );
}

#[test]
fn ntfs_sourced_wim_verifies() {
    let t = tempdir();
    let Some(n) = build_ntfs_wim(&t.path().join("ntfs"), &["--check"]) else {
        return;
    };
    assert!(wimlib_verify(&n.wim, &[]).ok());
    let o = wimfs_verify(&n.wim, &[]);
    assert!(
        o.ok(),
        "wimfs verify of the NTFS-sourced WIM failed:\n{}",
        o.describe()
    );
}

// ---------------------------------------------------------------------------
// Corruption
// ---------------------------------------------------------------------------

#[derive(Clone)]
enum Damage {
    /// XOR one byte at this offset.
    Flip(u64, u8),
    /// Overwrite bytes at this offset.
    Write(u64, Vec<u8>),
    /// Cut the file to this length.
    Truncate(u64),
}

fn damaged_copy(wim: &Path, dst: &Path, d: &Damage) {
    let mut data = std::fs::read(wim).unwrap();
    match d {
        Damage::Flip(off, x) => data[*off as usize] ^= x,
        Damage::Write(off, bytes) => {
            data[*off as usize..*off as usize + bytes.len()].copy_from_slice(bytes);
        }
        Damage::Truncate(n) => data.truncate(*n as usize),
    }
    std::fs::write(dst, data).unwrap();
}

/// Named corruptions of one WIM, each of which wimlib-imagex also rejects.
fn corruptions(wim: &Path) -> Vec<(String, Damage)> {
    let len = std::fs::metadata(wim).unwrap().len();
    let (data_off, data_size) = wimlib_blob_location(wim, "1", "/big.bin");
    let blobs = blob_table(wim);
    let meta = blobs
        .iter()
        .find(|b| b.flags & 2 != 0)
        .expect("metadata blob")
        .clone();
    let file_entry = blobs
        .iter()
        .find(|b| b.flags & 2 == 0)
        .expect("a file blob")
        .clone();
    let bt_off = wimlib_header_field(wim, "Blob Table Offset");
    let u64le = |v: u64| v.to_le_bytes().to_vec();
    vec![
        ("file data, first byte".into(), Damage::Flip(data_off, 0x01)),
        (
            "file data, middle".into(),
            Damage::Flip(data_off + data_size / 2, 0x55),
        ),
        (
            "file data, last byte".into(),
            Damage::Flip(data_off + data_size - 1, 0x80),
        ),
        (
            "metadata resource, middle".into(),
            Damage::Flip(meta.offset + meta.stored_size / 2, 0x20),
        ),
        (
            "blob table: metadata hash".into(),
            Damage::Flip(meta.entry_offset + 40, 0xFF),
        ),
        (
            "blob table: file hash".into(),
            Damage::Flip(file_entry.entry_offset + 35, 0x01),
        ),
        (
            "blob table: size beyond EOF".into(),
            Damage::Write(meta.entry_offset, vec![0xFF; 7]),
        ),
        (
            "blob table: offset beyond EOF".into(),
            Damage::Write(meta.entry_offset + 8, u64le(len * 4)),
        ),
        (
            "blob table: cut short".into(),
            Damage::Truncate(bt_off + 20),
        ),
        ("header: magic".into(), Damage::Flip(0, 0x01)),
        (
            "header: header size".into(),
            Damage::Write(8, vec![0xFF, 0xFF, 0, 0]),
        ),
        (
            "header: blob table offset beyond EOF".into(),
            Damage::Write(56, u64le(len + 1000)),
        ),
        (
            "header: image count 0".into(),
            Damage::Write(44, vec![0, 0, 0, 0]),
        ),
        (
            "header: image count huge".into(),
            Damage::Write(44, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ),
        ("truncated to 0".into(), Damage::Truncate(0)),
        ("truncated to 100".into(), Damage::Truncate(100)),
        ("truncated to header".into(), Damage::Truncate(208)),
        (
            "truncated inside data".into(),
            Damage::Truncate(data_off + data_size / 2),
        ),
        ("truncated by one byte".into(), Damage::Truncate(len - 1)),
    ]
}

fn corruption_case(label: &str, extra: &[&str]) {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    small_source(&src);
    let wim = t.path().join("good.wim");
    wimlib_capture(&src, &wim, extra);
    assert!(
        wimfs_verify(&wim, &[]).ok(),
        "the undamaged {label} WIM must verify"
    );
    let mut problems = Vec::new();
    for (what, damage) in corruptions(&wim) {
        let bad = t.path().join("bad.wim");
        damaged_copy(&wim, &bad, &damage);
        let w = wimlib_verify(&bad, &[]);
        let o = wimfs_verify(&bad, &[]);
        if w.ok() {
            // Not a useful corruption for this format (wimlib sees nothing
            // wrong either); only "no panic" was checked.
            eprintln!(
                "note: {label}: {what}: wimlib-imagex verify accepts it; wimfs exit {:?}",
                o.code()
            );
            continue;
        }
        if o.ok() {
            problems.push(format!(
                "{what}: wimfs verify exits 0 (wimlib: {})",
                last_line(&w.stderr_str())
            ));
        } else if o.stderr_str().trim().is_empty() {
            problems.push(format!("{what}: wimfs verify fails without a message"));
        }
        // With an integrity table, damaged data must be reported as such.
        if extra.contains(&"--check") && what.starts_with("file data") {
            let m = o.all_output().to_lowercase();
            if !m.contains("integrity") {
                problems.push(format!(
                    "{what}: integrity table present, message does not say integrity: {}",
                    last_line(&o.stderr_str())
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{label}: {} corruption(s) not reported:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
fn corruption_uncompressed() {
    corruption_case("none", &["--compress=none"]);
}
#[test]
fn corruption_xpress() {
    corruption_case("xpress", &["--compress=XPRESS"]);
}
#[test]
fn corruption_lzx() {
    corruption_case("lzx", &["--compress=LZX"]);
}
#[test]
fn corruption_lzms() {
    corruption_case("lzms", &["--compress=LZMS"]);
}
#[test]
fn corruption_solid() {
    corruption_case("solid", &["--solid"]);
}
#[test]
fn corruption_with_integrity_table() {
    corruption_case("lzx+integrity", &["--compress=LZX", "--check"]);
}

/// Flip single bytes all over a WIM (deterministic positions): wimfs must
/// never panic or hang, and must fail wherever wimlib-imagex fails, except
/// inside the XML data (wimlib rejects malformed XML; checking the XML is
/// not part of what `wimfs verify` promises, so those are only printed).
#[test]
fn byte_flip_sweep() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    small_source(&src);
    let mut problems = Vec::new();
    for (label, extra) in [
        ("lzx", &["--compress=LZX"][..]),
        ("solid", &["--solid"][..]),
    ] {
        let wim = t.path().join(format!("{label}.wim"));
        wimlib_capture(&src, &wim, extra);
        let len = std::fs::metadata(&wim).unwrap().len();
        let xml_start = wimlib_header_field(&wim, "XML Data Offset");
        let xml = xml_start..xml_start + wimlib_header_field(&wim, "XML Data Size");
        let mut rng = Rng::new(2024);
        let mut offsets: Vec<u64> = (0..208).step_by(8).collect();
        offsets.extend((0..40).map(|_| rng.below(len)));
        offsets.extend(len.saturating_sub(64)..len);
        offsets.sort();
        offsets.dedup();
        for off in offsets {
            let bad = t.path().join("bad.wim");
            damaged_copy(&wim, &bad, &Damage::Flip(off, 0xA5));
            let w = wimlib_verify(&bad, &[]);
            let o = wimfs_verify(&bad, &[]); // asserts no panic / hang
            if !w.ok() && o.ok() && xml.contains(&off) {
                eprintln!("note: {label}: byte {off} in the XML data flipped: wimlib fails, wimfs verify exits 0");
            } else if !w.ok() && o.ok() {
                problems.push(format!(
                    "{label}: byte {off} of {len} flipped: wimlib-imagex fails ({}), wimfs verify exits 0",
                    last_line(&w.stderr_str())
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} missed corruption(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// The codec bit-flip properties only show that a damaged stream cannot
/// crash a decoder: a codec stream carries no checksum. Detection is the
/// WIM's job, through the SHA-1 of every blob and the integrity table, so
/// here bits are flipped inside those regions and `verify` (the library,
/// run in process) must report each one where it belongs: a flip inside a
/// blob's resource as a problem naming that blob, a flip inside a solid
/// resource as a blob problem, a flip anywhere in the integrity-protected
/// range (header end .. blob table end) of a WIM with a table as an
/// integrity mismatch. A flip that wimlib-imagex also accepts (an unused
/// padding bit of a stream decodes to the same data) is counted, not
/// asserted, and most flips must be real ones.
#[test]
fn flipped_bits_in_hashed_regions_are_reported() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    small_source(&src);
    let hex = |h: &[u8]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut problems = Vec::new();
    for (label, extra) in [
        ("none", &["--compress=none"][..]),
        ("xpress", &["--compress=XPRESS"][..]),
        ("lzx", &["--compress=LZX"][..]),
        ("lzms", &["--compress=LZMS"][..]),
        ("solid", &["--solid"][..]),
        ("lzx+integrity", &["--compress=LZX", "--check"][..]),
    ] {
        let wim = t.path().join(format!("{label}.wim"));
        wimlib_capture(&src, &wim, extra);
        let good = wimfs::verify::verify(&wimfs::wim::Wim::open(&wim, &[]).unwrap(), &|_| {});
        assert!(good.ok(), "{label}: undamaged WIM: {:?}", good.problems);
        let integrity = extra.contains(&"--check");
        let solid = extra.contains(&"--solid");
        // Regions: (start, len, what must be named).
        let mut regions: Vec<(u64, u64, String)> = Vec::new();
        for e in blob_table(&wim) {
            if e.flags & 2 != 0 || e.stored_size == 0 {
                continue; // metadata: covered by corruption_* tests
            }
            if solid {
                if e.hash == [0u8; 20] {
                    regions.push((e.offset, e.stored_size, "blob ".into()));
                }
            } else {
                regions.push((e.offset, e.stored_size, format!("blob {}", hex(&e.hash))));
            }
        }
        if integrity {
            let bt_end = wimlib_header_field(&wim, "Blob Table Offset")
                + wimlib_header_field(&wim, "Blob Table Size");
            regions = vec![(208, bt_end - 208, "integrity table".into())];
        }
        assert!(!regions.is_empty(), "{label}: no region to damage");
        let data = std::fs::read(&wim).unwrap();
        let mut rng = Rng::new(0xb17f);
        let (mut real, mut trials) = (0, 0);
        for _ in 0..16 {
            let (start, len, want) = &regions[rng.below(regions.len() as u64) as usize];
            let off = start + rng.below(*len);
            let bit = rng.below(8);
            let bad = t.path().join("flipped.wim");
            let mut d = data.clone();
            d[off as usize] ^= 1 << bit;
            std::fs::write(&bad, d).unwrap();
            trials += 1;
            if wimlib_verify(&bad, &[]).ok() {
                continue; // the flip changed nothing wimlib can see
            }
            real += 1;
            let what = format!("{label}: bit {bit} of byte {off:#x}");
            let rep = match wimfs::wim::Wim::open(&bad, &[]) {
                Ok(w) => wimfs::verify::verify(&w, &|_| {}),
                Err(e) => {
                    problems.push(format!("{what}: open failed instead of naming {want}: {e}"));
                    continue;
                }
            };
            if !rep.problems.iter().any(|p| p.contains(want.as_str())) {
                problems.push(format!("{what}: {want} not named: {:?}", rep.problems));
            }
        }
        eprintln!("{label}: {real} of {trials} flips were real damage");
        assert!(
            real * 4 >= trials * 3,
            "{label}: only {real} of {trials} flips damaged anything"
        );
    }
    assert!(
        problems.is_empty(),
        "{} flip(s) not reported where they belong:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
