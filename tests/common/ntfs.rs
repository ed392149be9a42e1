//! WIMs captured from a real NTFS volume (filled through ntfs-3g):
//! security descriptors, reparse points, named streams, short names.

use super::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An ntfs-3g mount of an image file; unmounted when dropped (also when the
/// test panics half-way).
pub struct NtfsMount {
    pub mnt: PathBuf,
    child: Option<Child>,
}

impl NtfsMount {
    /// Mount `image` on `mnt` with `-o streams_interface=xattr` (named
    /// streams appear as `user.*` xattrs). `no_detach` keeps ntfs-3g our
    /// child, so unmounting can wait until it has flushed the image.
    pub fn mount(image: &Path, mnt: &Path) -> Result<NtfsMount, String> {
        std::fs::create_dir_all(mnt).unwrap();
        let child = Command::new("ntfs-3g")
            .arg("-o")
            .arg("streams_interface=xattr,no_detach")
            .arg(image)
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run ntfs-3g: {e}"))?;
        let mut m = NtfsMount {
            mnt: mnt.to_path_buf(),
            child: Some(child),
        };
        let canon = mnt.canonicalize().unwrap();
        let start = Instant::now();
        loop {
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            if mounts
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(canon.to_str().unwrap()))
            {
                return Ok(m);
            }
            if let Some(Ok(Some(st))) = m.child.as_mut().map(|c| c.try_wait()) {
                m.child = None;
                return Err(format!(
                    "ntfs-3g exited with {st} before mounting (no FUSE?)"
                ));
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err("ntfs-3g did not mount within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Unmount and wait for ntfs-3g to finish writing the image.
    pub fn unmount(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let start = Instant::now();
        loop {
            let st = Command::new("umount")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
            if st.is_ok_and(|s| s.success()) {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                eprintln!("ntfs-3g did not exit after unmount; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NtfsMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Hex string `0x...` for setfattr.
fn hexv(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// Reparse data of a Windows symbolic link (tag 0xA000000C).
pub fn reparse_symlink(substitute: &str, print: &str, relative: bool) -> Vec<u8> {
    let (s, p) = (utf16(substitute), utf16(print));
    let mut body = Vec::new();
    for v in [0u16, s.len() as u16, s.len() as u16, p.len() as u16] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&(relative as u32).to_le_bytes());
    body.extend_from_slice(&s);
    body.extend_from_slice(&p);
    let mut out = Vec::new();
    out.extend_from_slice(&0xA000_000Cu32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reparse data of a junction / mount point (tag 0xA0000003).
pub fn reparse_junction(substitute: &str, print: &str) -> Vec<u8> {
    let (s, p) = (utf16(substitute), utf16(print));
    let mut body = Vec::new();
    for v in [0u16, s.len() as u16, s.len() as u16 + 2, p.len() as u16] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&s);
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&p);
    body.extend_from_slice(&[0, 0]);
    let mut out = Vec::new();
    out.extend_from_slice(&0xA000_0003u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A self-relative security descriptor: owner S-1-5-32-544
/// (Administrators), group S-1-5-18 (SYSTEM), DACL allowing Everyone read
/// and Administrators full control.
pub fn custom_security_descriptor() -> Vec<u8> {
    let sid = |auth: u8, subs: &[u32]| {
        let mut v = vec![1u8, subs.len() as u8, 0, 0, 0, 0, 0, auth];
        for s in subs {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    };
    let owner = sid(5, &[32, 544]);
    let group = sid(5, &[18]);
    let ace = |mask: u32, sid: &[u8]| {
        let mut v = vec![0u8, 0]; // ACCESS_ALLOWED_ACE_TYPE, flags
        v.extend_from_slice(&((8 + sid.len()) as u16).to_le_bytes());
        v.extend_from_slice(&mask.to_le_bytes());
        v.extend_from_slice(sid);
        v
    };
    let aces = [ace(0x0012_0089, &sid(1, &[0])), ace(0x001F_01FF, &owner)];
    let acl_len: usize = 8 + aces.iter().map(Vec::len).sum::<usize>();
    let mut acl = vec![2u8, 0];
    acl.extend_from_slice(&(acl_len as u16).to_le_bytes());
    acl.extend_from_slice(&(aces.len() as u16).to_le_bytes());
    acl.extend_from_slice(&0u16.to_le_bytes());
    for a in &aces {
        acl.extend_from_slice(a);
    }
    let off_owner = 20u32;
    let off_group = off_owner + owner.len() as u32;
    let off_dacl = off_group + group.len() as u32;
    let mut sd = vec![1u8, 0];
    sd.extend_from_slice(&(0x8004u16).to_le_bytes()); // SE_SELF_RELATIVE | SE_DACL_PRESENT
    for v in [off_owner, off_group, 0, off_dacl] {
        sd.extend_from_slice(&v.to_le_bytes());
    }
    sd.extend_from_slice(&owner);
    sd.extend_from_slice(&group);
    sd.extend_from_slice(&acl);
    sd
}

/// What [`build_ntfs_wim`] produced and what the image is known to hold.
#[derive(Debug)]
pub struct NtfsWim {
    pub wim: PathBuf,
    /// Unnamed-stream contents of regular files, by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Named data streams: (relative path, stream name, contents).
    pub ads: Vec<(String, String, Vec<u8>)>,
    /// Hard-link groups (relative paths).
    pub hardlinks: Vec<Vec<String>>,
    /// Reparse points: relative path -> expected symlink target on Linux
    /// when applied to ROOT, with `<ROOT>` standing for the extraction dir.
    pub symlinks: BTreeMap<String, String>,
    /// Files given a custom mtime: path -> (secs, nsec).
    pub mtimes: BTreeMap<String, (i64, i64)>,
    /// Short names set: path -> DOS name.
    pub short_names: BTreeMap<String, String>,
}

fn setfattr(path: &Path, name: &str, value: &str) -> Result<(), String> {
    let o = run(Command::new("setfattr")
        .arg("-n")
        .arg(name)
        .arg("-v")
        .arg(value)
        .arg(path));
    if o.ok() {
        Ok(())
    } else {
        Err(o.describe())
    }
}

/// Build a WIM captured by wimlib from a real NTFS volume: `mkntfs` on a
/// sparse image file, filled through an `ntfs-3g` mount, then
/// `wimlib-imagex capture IMG WIM [EXTRA...]` (which reads the NTFS volume
/// directly, keeping named streams, reparse points, security descriptors
/// and short names). `None` (with a banner) when the tools or FUSE are
/// missing outside CI.
pub fn build_ntfs_wim(work: &Path, extra: &[&str]) -> Option<NtfsWim> {
    if !require(&[
        "mkntfs",
        "ntfs-3g",
        "setfattr",
        "getfattr",
        "wimlib-imagex",
        "umount",
    ]) {
        return None;
    }
    if !Path::new("/dev/fuse").exists() {
        skip("no /dev/fuse: cannot mount NTFS with ntfs-3g, the NTFS-sourced WIM was not built");
        return None;
    }
    std::fs::create_dir_all(work).unwrap();
    let img = work.join("ntfs.raw");
    {
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(64 << 20).unwrap();
    }
    run_ok(
        Command::new(tool_path("mkntfs"))
            .args(["-F", "-f", "-q", "-L", "wimfs-test"])
            .arg(&img),
    );
    let mnt = work.join("mnt");
    let mut m = match NtfsMount::mount(&img, &mnt) {
        Ok(m) => m,
        Err(e) => {
            let msg = format!("cannot mount NTFS image: {e} -- SKIPPING the NTFS-sourced WIM");
            if std::env::var_os("CI").is_some() {
                panic!("{msg}");
            }
            banner(&msg);
            return None;
        }
    };
    let mut rng = Rng::new(7);
    let mut files = BTreeMap::new();
    let mut ads = Vec::new();
    let mut symlinks = BTreeMap::new();
    let mut mtimes = BTreeMap::new();
    let mut short_names = BTreeMap::new();
    let root = m.mnt.clone();
    let mut put = |rel: &str, data: Vec<u8>| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        files.insert(rel.to_string(), data);
    };
    put("hello.txt", b"hello, ntfs\n".to_vec());
    let mut big = text_bytes(&mut rng, 200_000);
    big.extend(rng.bytes(150_000));
    put("multi-chunk.bin", big);
    put("empty.txt", Vec::new());
    put("dir/sub/file.txt", text_bytes(&mut rng, 5000));
    std::fs::create_dir_all(root.join("dir/emptydir")).unwrap();
    put(
        "Long File Name With Spaces.txt",
        b"short name test\n".to_vec(),
    );
    put("acl.txt", b"custom security descriptor\n".to_vec());
    put("streams.txt", b"file with named streams\n".to_vec());
    // Named data streams (ADS) through the xattr interface.
    // Linux caps an xattr value at 64 KiB; 60 000 bytes still spans two
    // 32 KiB chunks.
    let big_ads = text_bytes(&mut rng, 60_000);
    let ads_list: Vec<(&str, &str, Vec<u8>)> = vec![
        ("streams.txt", "small", b"stream data".to_vec()),
        ("streams.txt", "big", big_ads),
        (
            "hello.txt",
            "Zone.Identifier",
            b"[ZoneTransfer]\r\nZoneId=3\r\n".to_vec(),
        ),
        ("dir", "dirstream", b"a stream on a directory".to_vec()),
        ("empty.txt", "nonempty-stream", b"x".to_vec()),
    ];
    for (rel, name, data) in ads_list {
        if data.len() < 16 * 1024 {
            setfattr(&root.join(rel), &format!("user.{name}"), &hexv(&data)).unwrap();
        } else {
            // Too long for one command-line argument.
            set_user_xattr(&root.join(rel), &format!("user.{name}"), &data);
        }
        ads.push((rel.to_string(), name.to_string(), data));
    }
    // Hard links.
    std::fs::hard_link(root.join("hello.txt"), root.join("hello-link.txt")).unwrap();
    std::fs::hard_link(root.join("hello.txt"), root.join("dir/hello-link2.txt")).unwrap();
    files.insert("hello-link.txt".into(), files["hello.txt"].clone());
    files.insert("dir/hello-link2.txt".into(), files["hello.txt"].clone());
    // The linked file's streams belong to every name of the inode.
    for extra_name in ["hello-link.txt", "dir/hello-link2.txt"] {
        let s: Vec<_> = ads
            .iter()
            .filter(|(p, _, _)| p == "hello.txt")
            .map(|(_, n, d)| (extra_name.to_string(), n.clone(), d.clone()))
            .collect();
        ads.extend(s);
    }
    let hardlinks = vec![vec![
        "dir/hello-link2.txt".to_string(),
        "hello-link.txt".to_string(),
        "hello.txt".to_string(),
    ]];
    // Reparse points (ntfs-3g's own `ln -s` makes Interix links, not
    // reparse points, so write the reparse data directly).
    let mk = |rel: &str, dir: bool, data: Vec<u8>| {
        let p = root.join(rel);
        if dir {
            std::fs::create_dir(&p).unwrap();
        } else {
            std::fs::write(&p, b"").unwrap();
        }
        setfattr(&p, "system.ntfs_reparse_data", &hexv(&data))
    };
    mk(
        "link-rel-file",
        false,
        reparse_symlink("dir\\sub\\file.txt", "dir\\sub\\file.txt", true),
    )
    .unwrap();
    symlinks.insert("link-rel-file".into(), "dir/sub/file.txt".into());
    mk(
        "dir/link-up",
        false,
        reparse_symlink("..\\hello.txt", "..\\hello.txt", true),
    )
    .unwrap();
    symlinks.insert("dir/link-up".into(), "../hello.txt".into());
    mk(
        "link-rel-dir",
        true,
        reparse_symlink("dir\\sub", "dir\\sub", true),
    )
    .unwrap();
    symlinks.insert("link-rel-dir".into(), "dir/sub".into());
    mk(
        "link-abs",
        false,
        reparse_symlink(
            "\\??\\C:\\dir\\sub\\file.txt",
            "C:\\dir\\sub\\file.txt",
            false,
        ),
    )
    .unwrap();
    symlinks.insert("link-abs".into(), "<ROOT>/dir/sub/file.txt".into());
    mk(
        "junction",
        true,
        reparse_junction("\\??\\C:\\dir", "C:\\dir"),
    )
    .unwrap();
    symlinks.insert("junction".into(), "<ROOT>/dir".into());
    // Custom security descriptor and a short name.
    setfattr(
        &root.join("acl.txt"),
        "system.ntfs_acl",
        &hexv(&custom_security_descriptor()),
    )
    .unwrap();
    setfattr(
        &root.join("Long File Name With Spaces.txt"),
        "system.ntfs_dos_name",
        "LONGFI~1.TXT",
    )
    .unwrap();
    short_names.insert(
        "Long File Name With Spaces.txt".to_string(),
        "LONGFI~1.TXT".to_string(),
    );
    // Timestamps (NTFS keeps 100 ns units), files first, then directories.
    for (i, rel) in [
        "hello.txt",
        "multi-chunk.bin",
        "empty.txt",
        "dir/sub/file.txt",
        "streams.txt",
        "acl.txt",
    ]
    .iter()
    .enumerate()
    {
        let t = (
            1_100_000_000 + i as i64 * 1_000_003,
            123_456_700 + i as i64 * 100,
        );
        set_mtime(&root.join(rel), t.0, t.1);
        mtimes.insert(rel.to_string(), t);
    }
    for (i, rel) in ["dir/sub", "dir/emptydir", "dir"].iter().enumerate() {
        let t = (1_200_000_000 + i as i64 * 7, 987_654_300);
        set_mtime(&root.join(rel), t.0, t.1);
        mtimes.insert(rel.to_string(), t);
    }
    m.unmount();
    drop(m);
    let wim = work.join("ntfs.wim");
    wimlib_capture(&img, &wim, extra);
    let _ = std::fs::remove_file(&img);
    Some(NtfsWim {
        wim,
        files,
        ads,
        hardlinks,
        symlinks,
        mtimes,
        short_names,
    })
}
