//! `wimfs delete` (rebuild and `--soft`) and `wimfs info WIM IMAGE --name
//! --description --flags --boot`, with `wimlib-imagex info`, `verify` and
//! `apply` as the oracles.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// `wimlib-imagex info WIM`: the header part's value of `field`, and each
/// image's (name, description, flags).
fn wimlib_info(wim: &Path) -> (String, Vec<(String, String, String)>) {
    let s = run_ok(Command::new("wimlib-imagex").arg("info").arg(wim)).stdout_str();
    let mut boot = String::new();
    let mut images: Vec<(String, String, String)> = Vec::new();
    for l in s.lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "Boot Index" => boot = v,
            "Index" => images.push(Default::default()),
            "Name" => images.last_mut().unwrap().0 = v,
            "Description" => images.last_mut().unwrap().1 = v,
            "Flags" => images.last_mut().unwrap().2 = v,
            _ => {}
        }
    }
    (boot, images)
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// Three images of distinct trees: A (big, unique data), B, C.
fn three_images(t: &Path) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let mut srcs = Vec::new();
    let mut rng = Rng::new(11);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let d = t.join(n);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("common.txt"), b"shared by every image\n").unwrap();
        let own = if i == 0 {
            rng.bytes(2 << 20)
        } else {
            text_bytes(&mut rng, 50_000)
        };
        std::fs::write(d.join("sub/own.bin"), own).unwrap();
        srcs.push(d);
    }
    let wim = t.join("x.wim");
    wimfs_ok([
        "capture".as_ref(),
        srcs[0].as_os_str(),
        wim.as_os_str(),
        "A".as_ref(),
    ]);
    for (s, n) in [(&srcs[1], "B"), (&srcs[2], "C")] {
        wimfs_ok([
            "append".as_ref(),
            s.as_os_str(),
            wim.as_os_str(),
            n.as_ref(),
        ]);
    }
    (wim, srcs)
}

fn applies_to(wim: &Path, image: &str, src: &Path, out: &Path) {
    let o = wimlib_apply(wim, image, out, &[]);
    assert!(o.ok(), "{}", o.describe());
    let opts = CompareOpts {
        mtime_granularity_ns: 100,
        xattrs: false,
        ..CompareOpts::default()
    };
    assert_trees_equal(src, out, &opts, &format!("image {image}"));
}

#[test]
fn delete_rebuilds_and_soft_delete_drops() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let (wim, srcs) = three_images(t.path());
    wimfs_ok([
        "info".as_ref(),
        wim.as_os_str(),
        "3".as_ref(),
        "--boot".as_ref(),
    ]);
    let before = size(&wim);
    // Rebuild: image A and its 2 MiB of random data are gone.
    wimfs_ok(["delete".as_ref(), wim.as_os_str(), "A".as_ref()]);
    assert!(wimlib_verify(&wim, &[]).ok());
    let (boot, images) = wimlib_info(&wim);
    let names: Vec<&str> = images.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["B", "C"]);
    assert_eq!(boot, "2", "the boot image moved down with its index");
    assert!(
        size(&wim) + (1 << 20) < before,
        "{} -> {}: A's data was not shed",
        before,
        size(&wim)
    );
    applies_to(&wim, "1", &srcs[1], &t.path().join("o1"));
    applies_to(&wim, "2", &srcs[2], &t.path().join("o2"));
    // Soft: only the tables change; the file does not shrink.
    let before = size(&wim);
    wimfs_ok([
        "delete".as_ref(),
        wim.as_os_str(),
        "2".as_ref(),
        "--soft".as_ref(),
    ]);
    assert!(wimlib_verify(&wim, &[]).ok());
    assert!(size(&wim) >= before);
    let (boot, images) = wimlib_info(&wim);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].0, "B");
    assert_eq!(boot, "0", "the boot image was deleted");
    applies_to(&wim, "1", &srcs[1], &t.path().join("o3"));
    // No such image: refused, nothing written.
    let len = size(&wim);
    let o = wimfs(["delete".as_ref(), wim.as_os_str(), "7".as_ref()]);
    assert!(!o.ok());
    assert_eq!(size(&wim), len);
}

#[test]
fn info_sets_name_description_flags_and_boot() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let (wim, srcs) = three_images(t.path());
    wimfs_ok([
        "info".as_ref(),
        wim.as_os_str(),
        "2".as_ref(),
        "--name".as_ref(),
        "Windows 11 Pro".as_ref(),
        "--description".as_ref(),
        "serviced <&> image".as_ref(),
        "--flags".as_ref(),
        "Professional".as_ref(),
        "--boot".as_ref(),
    ]);
    assert!(wimlib_verify(&wim, &[]).ok());
    let (boot, images) = wimlib_info(&wim);
    assert_eq!(boot, "2");
    assert_eq!(
        images[1],
        (
            "Windows 11 Pro".to_string(),
            "serviced <&> image".to_string(),
            "Professional".to_string()
        )
    );
    assert_eq!(images[0].0, "A");
    assert_eq!(images[2].0, "C");
    // The image is now found by its new name, and its files are intact.
    applies_to(&wim, "Windows 11 Pro", &srcs[1], &t.path().join("o"));
    // A name another image has is refused.
    let o = wimfs([
        "info".as_ref(),
        wim.as_os_str(),
        "1".as_ref(),
        "--name".as_ref(),
        "C".as_ref(),
    ]);
    assert!(
        !o.ok() && o.stderr_str().contains("already named"),
        "{}",
        o.describe()
    );
    // wimfs's own info reads what it wrote.
    let o = wimfs_ok(["info".as_ref(), wim.as_os_str()]).stdout_str();
    assert!(o.contains("Windows 11 Pro"), "{o}");
}
