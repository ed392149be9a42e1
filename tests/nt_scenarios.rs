//! The NT view (`wimfs::ntvfs`) driven with the call sequences Windows
//! programs make through WinFsp, on Linux, through the library (no mount):
//! an Explorer copy, `copy` over a file, `ren` (also case-only), `del`
//! with delete-on-close, `rmdir` of a non-empty directory, `echo x >
//! f:ads`, case-insensitive opens of image paths, a directory listed in
//! pages with markers. The changes are committed and the WIM checked with
//! `wimlib-imagex verify`, `dir`, `dir --detailed` and `apply` against the
//! bytes written.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wimfs::cache::ChunkCache;
use wimfs::image::Image;
use wimfs::nt::attrib;
use wimfs::nt::create::{access, disposition as disp, options as opt, Action};
use wimfs::nt::{NtResult, NtStatus as S};
use wimfs::ntvfs::{cleanup, FileInfo, Handle, NtVfs};
use wimfs::vfs::{Vfs, VfsOptions};
use wimfs::wim::Wim;

const RW: u32 = access::FILE_READ_DATA | access::FILE_WRITE_DATA | access::FILE_APPEND_DATA;
const R: u32 = access::FILE_READ_DATA;

/// Names of the big directory: three groups whose byte order ("B" <
/// "_" < "a") differs from NTFS's (upper case first: "A" < "B" < "_").
fn big_names() -> Vec<String> {
    (0..300)
        .map(|i| match i % 3 {
            0 => format!("a{i:03}.txt"),
            1 => format!("B{i:03}.txt"),
            _ => format!("_c{i:03}.txt"),
        })
        .collect()
}

fn make_src(dir: &Path) {
    let mk = |p: &str, b: &[u8]| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    };
    mk(
        "WINDOWS/System32/drivers/etc/hosts",
        b"127.0.0.1 localhost\n",
    );
    mk("WINDOWS/System32/kernel32.dll", &[0x4d; 9000]);
    mk("docs/readme.txt", b"old readme\n");
    mk("docs/old.txt", b"old file\n");
    mk("docs/victim.txt", b"to be replaced\n");
    mk("docs/gone.txt", b"deleted while open\n");
    mk("nonempty/x.txt", b"x");
    // Two names Windows sees as one (only a Linux capture makes these).
    mk("twins/Foo", b"upper");
    mk("twins/foo", b"lower");
    std::fs::create_dir_all(dir.join("emptydir")).unwrap();
    for n in big_names() {
        mk(&format!("Big/{n}"), n.as_bytes());
    }
}

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    wim: PathBuf,
}

fn fixture() -> Option<Fx> {
    if !common::require(&["wimlib-imagex"]) {
        return None;
    }
    let tmp = common::tempdir();
    let root = tmp.path().to_path_buf();
    let src = root.join("src");
    make_src(&src);
    let wim = root.join("t.wim");
    common::wimlib_capture(&src, &wim, &["--compress=LZX"]);
    Some(Fx {
        _tmp: tmp,
        root,
        wim,
    })
}

fn load(wim: &Path) -> (Arc<Wim>, Arc<Image>, Arc<ChunkCache>) {
    let w = Arc::new(Wim::open(wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    (w, img, Arc::new(ChunkCache::new(64 << 20)))
}

fn open_rw(fx: &Fx) -> NtVfs {
    let (w, img, cache) = load(&fx.wim);
    let opts = VfsOptions {
        use_unix_data: false,
        ..VfsOptions::default()
    };
    let (v, _) = Vfs::open_rw(w, img.index, cache, opts, &fx.root.join("staging")).unwrap();
    NtVfs::new(Arc::new(v))
}

fn open_ro(wim: &Path) -> NtVfs {
    let (w, img, cache) = load(wim);
    NtVfs::new(Arc::new(Vfs::new(w, img, cache, VfsOptions::default())))
}

fn open(nt: &NtVfs, path: &str, o: u32, a: u32, d: u32) -> NtResult<(Handle, FileInfo, Action)> {
    nt.open(path, o, a, d, attrib::NORMAL, None)
}

/// Cleanup and close, as every handle ends.
fn done(nt: &NtVfs, h: Handle) {
    nt.cleanup(h, 0).unwrap();
    nt.close(h);
}

fn read_all(nt: &NtVfs, h: Handle) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match nt.read(h, out.len() as u64, &mut buf) {
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(S::END_OF_FILE) => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn content(nt: &NtVfs, path: &str) -> Vec<u8> {
    let (h, info, _) = open(nt, path, 0, R, disp::OPEN).unwrap();
    let b = read_all(nt, h);
    assert_eq!(info.file_size, b.len() as u64, "{path}");
    done(nt, h);
    b
}

fn exists(nt: &NtVfs, path: &str) -> bool {
    match open(nt, path, 0, 0, disp::OPEN) {
        Ok((h, _, _)) => {
            done(nt, h);
            true
        }
        Err(S::OBJECT_NAME_NOT_FOUND) => false,
        Err(e) => panic!("{path}: {e}"),
    }
}

/// Every name of a directory, read in pages of `page` with markers.
fn list(nt: &NtVfs, dir: &str, page: usize) -> Vec<String> {
    let (h, _, _) = open(nt, dir, opt::DIRECTORY_FILE, R, disp::OPEN).unwrap();
    let mut out: Vec<String> = Vec::new();
    loop {
        let marker = out.last().cloned();
        let es = nt.read_directory(h, None, marker.as_deref(), page).unwrap();
        if es.is_empty() {
            break;
        }
        out.extend(es.into_iter().map(|e| e.name));
    }
    done(nt, h);
    out
}

/// NTFS order for ASCII names, computed independently: upper-cased bytes,
/// then the bytes.
fn ntfs_order(mut v: Vec<String>) -> Vec<String> {
    v.sort_by(|a, b| {
        a.to_ascii_uppercase()
            .cmp(&b.to_ascii_uppercase())
            .then(a.cmp(b))
    });
    v
}

fn imagex(args: &[&str]) -> String {
    let o = common::run(std::process::Command::new("wimlib-imagex").args(args));
    assert!(o.ok(), "wimlib-imagex {args:?}: {}", o.describe());
    o.stdout_str()
}

#[test]
fn windows_programs_then_commit() {
    let Some(fx) = fixture() else { return };
    let nt = open_rw(&fx);

    // Explorer copies a file in: create, set the allocation, write in
    // pieces, set the end of file, set the write time, cleanup, close.
    let data = common::Rng::new(3).bytes(200_000);
    let (h, info, act) = open(
        &nt,
        "\\docs\\New.bin",
        opt::NON_DIRECTORY_FILE,
        RW | access::DELETE,
        disp::CREATE,
    )
    .unwrap();
    assert_eq!(act, Action::Create { dir: false });
    assert_eq!((info.file_size, info.attributes), (0, attrib::ARCHIVE));
    nt.set_file_size(h, data.len() as u64, true).unwrap();
    for (i, c) in data.chunks(65536).enumerate() {
        let (n, _) = nt.write(h, i as u64 * 65536, c, false, false).unwrap();
        assert_eq!(n, c.len());
    }
    let info = nt.set_file_size(h, data.len() as u64, false).unwrap();
    assert_eq!(info.file_size, data.len() as u64);
    assert_eq!(info.allocation_size, 200_704, "rounded to 4 KiB clusters");
    let mtime = 132_500_000_000_000_000u64; // 2020-11-13
    let info = nt.set_basic_info(h, 0, 0, 0, mtime, 0).unwrap();
    assert_eq!(info.last_write_time, mtime);
    // Attributes and the creation time are set too (the vfs stores them
    // now); ARCHIVE alone again for the checks below.
    let info = nt
        .set_basic_info(h, attrib::HIDDEN, mtime, 0, 0, 0)
        .unwrap();
    assert_eq!(
        (info.attributes, info.creation_time),
        (attrib::HIDDEN, mtime)
    );
    let info = nt.set_basic_info(h, attrib::ARCHIVE, 0, 0, 0, 0).unwrap();
    assert_eq!(info.attributes, attrib::ARCHIVE);
    done(&nt, h);
    assert_eq!(content(&nt, "\\DOCS\\new.BIN"), data);

    // A second create of the same name in another case collides.
    let r = open(&nt, "\\docs\\NEW.BIN", 0, RW, disp::CREATE);
    assert_eq!(r.err(), Some(S::OBJECT_NAME_COLLISION));
    let r = open(
        &nt,
        "\\WINDOWS\\system32\\DRIVERS",
        opt::DIRECTORY_FILE,
        RW,
        disp::CREATE,
    );
    assert_eq!(r.err(), Some(S::OBJECT_NAME_COLLISION));

    // `copy x docs\readme.txt`: OVERWRITE_IF truncates the file and drops
    // its named streams, as NTFS does.
    let (h, _, _) = open(
        &nt,
        "\\docs\\readme.txt:Zone.Identifier",
        0,
        RW,
        disp::CREATE,
    )
    .unwrap();
    nt.write(h, 0, b"[ZoneTransfer]", false, false).unwrap();
    done(&nt, h);
    let (h, info, act) = open(&nt, "\\Docs\\README.TXT", 0, RW, disp::OVERWRITE_IF).unwrap();
    assert_eq!((act, info.file_size), (Action::Overwrite, 0));
    nt.write(h, 0, b"new readme\r\n", false, false).unwrap();
    done(&nt, h);
    assert_eq!(
        open(&nt, "\\docs\\readme.txt:Zone.Identifier", 0, R, disp::OPEN).err(),
        Some(S::OBJECT_NAME_NOT_FOUND)
    );

    // An overwrite adds the attributes asked for (and ARCHIVE);
    // SUPERSEDE truncates too.
    let (h, info, _) = nt
        .open(
            "\\docs\\readme.txt",
            0,
            RW,
            disp::OVERWRITE,
            attrib::HIDDEN,
            None,
        )
        .unwrap();
    assert_eq!(
        (info.file_size, info.attributes),
        (0, attrib::HIDDEN | attrib::ARCHIVE)
    );
    nt.write(h, 0, b"new readme\r\n", false, false).unwrap();
    done(&nt, h);
    assert_eq!(content(&nt, "\\docs\\readme.txt"), b"new readme\r\n");
    let (h, info, act) = open(&nt, "\\docs\\victim.txt", 0, RW, disp::SUPERSEDE).unwrap();
    assert_eq!((act, info.file_size), (Action::Supersede, 0));
    nt.write(h, 0, b"to be replaced\n", false, false).unwrap();
    // A handle without write access cannot write; a directory is not read.
    let (r, _, _) = open(&nt, "\\docs\\victim.txt", 0, R, disp::OPEN).unwrap();
    assert_eq!(
        nt.write(r, 0, b"x", false, false).err(),
        Some(S::ACCESS_DENIED)
    );
    done(&nt, r);
    done(&nt, h);
    let (d, _, _) = open(&nt, "\\docs", 0, R, disp::OPEN).unwrap();
    assert_eq!(nt.read(d, 0, &mut [0u8; 4]), Err(S::INVALID_DEVICE_REQUEST));
    assert_eq!(
        nt.write(d, 0, b"x", false, false).err(),
        Some(S::INVALID_DEVICE_REQUEST)
    );
    done(&nt, d);
    // A malformed security descriptor at create is refused before the
    // file is made.
    let r = nt.open(
        "\\docs\\sd.txt",
        0,
        RW,
        disp::CREATE,
        0,
        Some(&[1, 0, 4, 0x80]),
    );
    assert_eq!(r.err(), Some(S::INVALID_SECURITY_DESCR));
    assert!(!exists(&nt, "\\docs\\sd.txt"));

    // `ren`: a change of case only, then a move, then the NT refusals.
    nt.rename("\\docs\\old.txt", "\\docs\\Old.TXT", false)
        .unwrap();
    assert!(list(&nt, "\\docs", 100).contains(&"Old.TXT".to_string()));
    nt.rename("\\docs\\OLD.txt", "\\docs\\OLD.txt", false)
        .unwrap();
    nt.rename("\\docs\\old.TXT", "\\renamed.txt", false)
        .unwrap();
    assert_eq!(
        nt.rename("\\renamed.txt", "\\DOCS\\readme.txt", false),
        Err(S::OBJECT_NAME_COLLISION)
    );
    assert_eq!(
        nt.rename("\\renamed.txt", "\\twins", true),
        Err(S::ACCESS_DENIED),
        "a directory is never replaced"
    );
    assert_eq!(
        nt.rename("\\nope.txt", "\\x.txt", false),
        Err(S::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        nt.rename("\\renamed.txt", "\\nodir\\x.txt", false),
        Err(S::OBJECT_PATH_NOT_FOUND)
    );
    // Replace a file whose stored name differs in case from the new name:
    // the new name's case is kept.
    nt.rename("\\renamed.txt", "\\docs\\VICTIM.txt", true)
        .unwrap();
    // An open handle follows its file through a rename.
    let (h, _, _) = open(
        &nt,
        "\\docs\\victim.TXT",
        0,
        RW | access::DELETE,
        disp::OPEN,
    )
    .unwrap();
    nt.rename("\\docs\\VICTIM.txt", "\\docs\\Moved.txt", false)
        .unwrap();
    assert_eq!(read_all(&nt, h), b"old file\n");
    done(&nt, h);

    // `del` opens with DELETE_ON_CLOSE: the file goes at cleanup.
    let (h, _, _) = open(
        &nt,
        "\\windows\\system32\\KERNEL32.DLL",
        opt::NON_DIRECTORY_FILE | opt::DELETE_ON_CLOSE,
        access::DELETE,
        disp::OPEN,
    )
    .unwrap();
    done(&nt, h);
    assert!(!exists(&nt, "\\WINDOWS\\System32\\kernel32.dll"));
    // DELETE_ON_CLOSE without DELETE access is refused.
    assert_eq!(
        open(&nt, "\\docs\\gone.txt", opt::DELETE_ON_CLOSE, R, disp::OPEN).err(),
        Some(S::INVALID_PARAMETER)
    );
    // Marked for deletion while another handle is open: the name stays
    // until the last handle's cleanup.
    let (h1, _, _) = open(&nt, "\\docs\\gone.txt", 0, R, disp::OPEN).unwrap();
    let (h2, _, _) = open(&nt, "\\docs\\gone.txt", 0, access::DELETE, disp::OPEN).unwrap();
    nt.set_delete(h2, true).unwrap();
    done(&nt, h2);
    assert!(exists(&nt, "\\docs\\gone.txt"));
    assert_eq!(read_all(&nt, h1), b"deleted while open\n");
    done(&nt, h1);
    assert!(!exists(&nt, "\\docs\\gone.txt"));

    // `rmdir` of a non-empty directory is refused, at open and at
    // SetDisposition; an empty one goes.
    let dir_del = opt::DIRECTORY_FILE | opt::DELETE_ON_CLOSE;
    assert_eq!(
        open(&nt, "\\NonEmpty", dir_del, access::DELETE, disp::OPEN).err(),
        Some(S::DIRECTORY_NOT_EMPTY)
    );
    let (h, _, _) = open(
        &nt,
        "\\nonempty",
        opt::DIRECTORY_FILE,
        access::DELETE,
        disp::OPEN,
    )
    .unwrap();
    assert_eq!(nt.set_delete(h, true), Err(S::DIRECTORY_NOT_EMPTY));
    assert_eq!(nt.can_delete(h), Err(S::DIRECTORY_NOT_EMPTY));
    done(&nt, h);
    let (h, _, _) = open(&nt, "\\EMPTYDIR", dir_del, access::DELETE, disp::OPEN).unwrap();
    nt.cleanup(h, cleanup::DELETE).unwrap();
    nt.close(h);
    assert!(!exists(&nt, "\\emptydir"));
    // The root cannot be deleted.
    let (h, _, _) = open(&nt, "\\", opt::DIRECTORY_FILE, access::DELETE, disp::OPEN).unwrap();
    assert_eq!(nt.can_delete(h), Err(S::CANNOT_DELETE));
    done(&nt, h);

    // `echo x > ads.txt:Zone.Identifier` creates the file and the stream;
    // `echo y >> ...` appends.
    let (h, _, act) = open(
        &nt,
        "\\docs\\ads.txt:Zone.Identifier",
        0,
        RW,
        disp::OVERWRITE_IF,
    )
    .unwrap();
    assert_eq!(act, Action::Create { dir: false });
    nt.write(h, 0, b"x\r\n", false, false).unwrap();
    done(&nt, h);
    let (h, _, act) = open(
        &nt,
        "\\DOCS\\ADS.TXT:Zone.Identifier:$DATA",
        0,
        RW,
        disp::OPEN_IF,
    )
    .unwrap();
    assert_eq!(act, Action::Open);
    let (_, info) = nt.write(h, 0, b"y\r\n", true, false).unwrap();
    assert_eq!(info.file_size, 6);
    done(&nt, h);
    assert_eq!(
        content(&nt, "\\docs\\ads.txt:Zone.Identifier"),
        b"x\r\ny\r\n"
    );
    assert_eq!(
        content(&nt, "\\docs\\ads.txt"),
        b"",
        "the unnamed stream is empty"
    );
    // Paging I/O (constrained) never extends; truncating a stream; reads
    // at the end are END_OF_FILE.
    let (h, _, _) = open(&nt, "\\docs\\ads.txt:Zone.Identifier", 0, RW, disp::OPEN).unwrap();
    let (n, info) = nt.write(h, 4, b"abcdef", false, true).unwrap();
    assert_eq!((n, info.file_size), (2, 6));
    assert_eq!(nt.read(h, 6, &mut [0u8; 8]), Err(S::END_OF_FILE));
    let info = nt.set_file_size(h, 5, false).unwrap();
    assert_eq!(info.file_size, 5);
    let info = nt.set_file_size(h, 4096, true).unwrap();
    assert_eq!(
        info.file_size, 5,
        "an allocation size past the end changes nothing"
    );
    let info = nt.set_file_size(h, 8, false).unwrap();
    assert_eq!(info.file_size, 8);
    assert_eq!(read_all(&nt, h), b"x\r\nya\0\0\0");
    nt.set_file_size(h, 6, false).unwrap();
    nt.write(h, 3, b"y\r\n", false, false).unwrap();
    done(&nt, h);
    let (h, _, _) = open(&nt, "\\docs\\New.bin", 0, RW, disp::OPEN).unwrap();
    let (n, info) = nt.write(h, 199_999, b"xyz", false, true).unwrap();
    assert_eq!((n, info.file_size), (1, 200_000));
    nt.write(h, 199_999, &data[199_999..], false, false)
        .unwrap();
    nt.set_basic_info(h, 0, 0, 0, mtime, 0).unwrap();
    done(&nt, h);
    // Stream names ignore case as file names do.
    assert_eq!(
        content(&nt, "\\Docs\\Ads.txt:ZONE.identifier"),
        b"x\r\ny\r\n"
    );
    let r = open(&nt, "\\docs\\ads.txt:zone.identifier", 0, RW, disp::CREATE);
    assert_eq!(r.err(), Some(S::OBJECT_NAME_COLLISION));

    // A new directory with a file in it.
    let (h, info, _) = open(&nt, "\\NewDir", opt::DIRECTORY_FILE, RW, disp::CREATE).unwrap();
    assert_eq!(info.attributes, attrib::DIRECTORY);
    done(&nt, h);
    let (h, _, _) = open(&nt, "\\newdir\\Inner.txt", 0, RW, disp::OPEN_IF).unwrap();
    nt.write(h, 0, b"inner", false, false).unwrap();
    done(&nt, h);

    // Case-insensitive opens of image paths, and the path errors.
    assert_eq!(
        content(&nt, "\\windows\\SYSTEM32\\drivers\\ETC\\HOSTS"),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(
        open(&nt, "\\WINDOWS\\nope\\x", 0, R, disp::OPEN).err(),
        Some(S::OBJECT_PATH_NOT_FOUND)
    );
    assert_eq!(
        open(&nt, "\\docs\\readme.txt\\x", 0, R, disp::OPEN).err(),
        Some(S::OBJECT_PATH_NOT_FOUND)
    );
    assert_eq!(
        open(&nt, "\\docs\\readme.txt\\", 0, R, disp::OPEN).err(),
        Some(S::OBJECT_NAME_INVALID)
    );
    assert_eq!(nt.open_count(), 0);

    // Commit, then check the WIM with wimlib.
    let v = nt.vfs().clone();
    drop(nt);
    let g = v.freeze().unwrap();
    let tree = v.to_new_image().unwrap();
    let lock = wimfs::commit::WimLock::acquire(&fx.wim).unwrap();
    wimfs::commit::append_image(&lock, 1, tree, &Default::default(), &|_, _| {}).unwrap();
    drop(lock);
    drop(g);
    drop(v);
    let wim = fx.wim.to_str().unwrap();
    imagex(&["verify", wim]);
    let listed: BTreeSet<String> = imagex(&["dir", wim, "1"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let mut want: BTreeSet<String> = [
        "/",
        "/WINDOWS",
        "/WINDOWS/System32",
        "/WINDOWS/System32/drivers",
        "/WINDOWS/System32/drivers/etc",
        "/WINDOWS/System32/drivers/etc/hosts",
        "/docs",
        "/docs/New.bin",
        "/docs/readme.txt",
        "/docs/Moved.txt",
        "/docs/ads.txt",
        "/nonempty",
        "/nonempty/x.txt",
        "/twins",
        "/twins/Foo",
        "/twins/foo",
        "/NewDir",
        "/NewDir/Inner.txt",
        "/Big",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    want.extend(big_names().into_iter().map(|n| format!("/Big/{n}")));
    assert_eq!(listed, want, "wimlib-imagex dir after the commit");
    let applied = fx.root.join("applied");
    imagex(&["apply", wim, "1", applied.to_str().unwrap()]);
    let read = |p: &str| std::fs::read(applied.join(p)).unwrap();
    assert_eq!(read("docs/New.bin"), data);
    assert_eq!(read("docs/readme.txt"), b"new readme\r\n");
    assert_eq!(read("docs/Moved.txt"), b"old file\n");
    assert_eq!(read("docs/ads.txt"), b"");
    assert_eq!(read("NewDir/Inner.txt"), b"inner");
    assert_eq!(
        read("WINDOWS/System32/drivers/etc/hosts"),
        b"127.0.0.1 localhost\n"
    );
    // The named stream and the write time, as wimlib reads them.
    let detail = imagex(&["dir", wim, "1", "--detailed", "--path=/docs/ads.txt"]);
    assert!(
        detail.contains("Zone.Identifier"),
        "the named stream in wimlib's listing:\n{detail}"
    );
    let sha = |b: &[u8]| -> String {
        use sha1::Digest;
        sha1::Sha1::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let stream = detail
        .split("Named data stream \"Zone.Identifier\":")
        .nth(1)
        .unwrap_or_default();
    assert!(
        stream.contains(&format!("Hash              = 0x{}", sha(b"x\r\ny\r\n")))
            && stream.contains("Uncompressed size = 6 bytes"),
        "the stream's bytes:\n{detail}"
    );
    let detail = imagex(&["dir", wim, "1", "--detailed", "--path=/docs/readme.txt"]);
    assert!(
        !detail.contains("Named data stream"),
        "the overwrite dropped the stream:\n{detail}"
    );
    // FILETIME 132500000000000000 is 1605526400 s after 1970 (date -d).
    let detail = imagex(&["dir", wim, "1", "--detailed", "--path=/docs/New.bin"]);
    for line in [
        "Last Write Time     = Mon Nov 16 11:33:20 2020 UTC",
        "Uncompressed size = 200000 bytes",
        "FILE_ATTRIBUTE_ARCHIVE is set",
    ] {
        assert!(detail.contains(line), "{line:?} in:\n{detail}");
    }
}

/// Names compared ignoring case, case kept: the exact name wins, then the
/// first in NTFS collation of names equal but for case; the overlay's
/// folded index follows creates, renames and deletes; the Linux (FUSE)
/// lookup stays exact.
#[test]
fn case_insensitive_lookup_both_views() {
    let Some(fx) = fixture() else { return };
    let ro = open_ro(&fx.wim);
    let rw = open_rw(&fx);
    for nt in [&ro, &rw] {
        assert_eq!(content(nt, "\\twins\\foo"), b"lower", "the exact name wins");
        assert_eq!(content(nt, "\\twins\\Foo"), b"upper");
        // "Foo" before "foo": equal upcased, then 'F' (0x46) < 'f' (0x66).
        assert_eq!(content(nt, "\\TWINS\\FOO"), b"upper");
        assert_eq!(content(nt, "\\twins\\fOO"), b"upper");
        assert_eq!(content(nt, "\\big\\A000.TXT"), b"a000.txt");
        let v = nt.vfs();
        let win = v.lookup(1, "WINDOWS").unwrap().ino;
        assert_eq!(
            v.lookup(1, "windows").err(),
            Some(wimfs::vfs::VfsError::NotFound)
        );
        let (name, a) = v.lookup_ci(1, "windows").unwrap();
        assert_eq!((name.as_str(), a.ino), ("WINDOWS", win));
    }
    // The folded index is built (a miss), then kept by every change.
    let v = rw.vfs();
    let big = v.lookup(1, "Big").unwrap().ino;
    assert!(v.lookup_ci(big, "NEWNAME").is_err());
    let cred = wimfs::vfs::Cred::default();
    let (_, fh) = v.create(big, "NewName", 0o644, cred).unwrap();
    v.release(fh).unwrap();
    assert_eq!(v.lookup_ci(big, "newNAME").unwrap().0, "NewName");
    v.rename(
        big,
        "NewName",
        big,
        "Other",
        wimfs::vfs::RenameMode::NoReplace,
    )
    .unwrap();
    assert!(v.lookup_ci(big, "newname").is_err());
    assert_eq!(v.lookup_ci(big, "OTHER").unwrap().0, "Other");
    v.unlink(big, "Other").unwrap();
    assert!(v.lookup_ci(big, "other").is_err());
    v.rename(
        big,
        "a000.txt",
        big,
        "A000.txt",
        wimfs::vfs::RenameMode::NoReplace,
    )
    .unwrap();
    assert_eq!(v.lookup_ci(big, "a000.TXT").unwrap().0, "A000.txt");
    assert_eq!(content(&rw, "\\Big\\a000.txt"), b"a000.txt");
    // Under Windows names the vfs itself refuses a case twin, and so does
    // the NT view (a collision, the existing name is found).
    assert_eq!(
        v.create(big, "A003.TXT", 0o644, cred).err(),
        Some(wimfs::vfs::VfsError::Exists)
    );
    assert_eq!(
        open(&rw, "\\Big\\b001.TXT", 0, RW, disp::CREATE).err(),
        Some(S::OBJECT_NAME_COLLISION)
    );
}

/// The name Windows is told an open has (WinFsp's normalized name): the
/// path with every name as stored, whatever case the caller typed, the
/// stream's name too; a new file keeps the case it was created with.
#[test]
fn normalized_names_are_the_stored_ones() {
    let Some(fx) = fixture() else { return };
    let ro = open_ro(&fx.wim);
    let rw = open_rw(&fx);
    let name = |nt: &NtVfs, p: &str, a: u32, d: u32| {
        let (h, _, _) = open(nt, p, 0, a, d).unwrap();
        let n = nt.normalized_name(h).unwrap();
        done(nt, h);
        n
    };
    for nt in [&ro, &rw] {
        assert_eq!(
            name(nt, r"\windows\SYSTEM32\Drivers\ETC\HOSTS", R, disp::OPEN),
            r"\WINDOWS\System32\drivers\etc\hosts"
        );
        assert_eq!(name(nt, r"\", R, disp::OPEN), r"\");
        assert_eq!(name(nt, r"\BIG\A000.TXT", R, disp::OPEN), r"\Big\a000.txt");
        assert_eq!(name(nt, r"\twins\FOO", R, disp::OPEN), r"\twins\Foo");
    }
    // A new file and a new stream: as created, under the stored parents.
    assert_eq!(
        name(&rw, r"\DOCS\New File.TXT", RW, disp::CREATE),
        r"\docs\New File.TXT"
    );
    assert_eq!(
        name(&rw, r"\docs\new file.txt:Zone.Identifier", RW, disp::CREATE),
        r"\docs\New File.TXT:Zone.Identifier"
    );
    assert_eq!(
        name(&rw, r"\DOCS\NEW FILE.txt:ZONE.IDENTIFIER", R, disp::OPEN),
        r"\docs\New File.TXT:Zone.Identifier"
    );
}

/// A POSIX-names mount may hold names equal but for case; the NT view
/// opens the first in collation order, and the next once it is gone.
#[test]
fn case_twins_made_on_a_posix_mount() {
    let Some(fx) = fixture() else { return };
    let (w, img, cache) = load(&fx.wim);
    let opts = VfsOptions {
        use_unix_data: false,
        windows_names: false,
        ..VfsOptions::default()
    };
    let (v, _) = Vfs::open_rw(w, img.index, cache, opts, &fx.root.join("staging")).unwrap();
    let nt = NtVfs::new(Arc::new(v));
    let v = nt.vfs();
    let docs = v.lookup(1, "docs").unwrap().ino;
    assert!(v.lookup_ci(docs, "TWIN").is_err());
    let cred = wimfs::vfs::Cred::default();
    for (n, body) in [("twin", b"lower"), ("TWIN", b"upper")] {
        let (a, fh) = v.create(docs, n, 0o644, cred).unwrap();
        v.write(a.ino, 0, body).unwrap();
        v.release(fh).unwrap();
    }
    assert_eq!(content(&nt, "\\docs\\Twin"), b"upper");
    assert_eq!(content(&nt, "\\docs\\twin"), b"lower");
    v.unlink(docs, "TWIN").unwrap();
    assert_eq!(content(&nt, "\\docs\\Twin"), b"lower");
    // The NT view never makes a case twin, whatever the mount allows.
    let r = open(&nt, "\\docs\\TWIN", 0, RW, disp::CREATE);
    assert_eq!(r.err(), Some(S::OBJECT_NAME_COLLISION));
    assert_eq!(
        nt.rename("\\docs\\readme.txt", "\\docs\\TWIN", false),
        Err(S::OBJECT_NAME_COLLISION)
    );
}

/// A directory of a few hundred entries read in pages: NTFS order, `.`
/// and `..` first, each page resuming strictly after the last name of the
/// one before, also when names come and go between pages.
#[test]
fn directory_listing_in_pages() {
    let Some(fx) = fixture() else { return };
    let mut want = vec![".".to_string(), "..".to_string()];
    want.extend(ntfs_order(big_names()));
    let ro = open_ro(&fx.wim);
    for page in [1, 7, 50, 1000] {
        assert_eq!(list(&ro, "\\big", page), want, "pages of {page}");
    }
    // The byte order differs: the check above means something.
    let mut bytes = big_names();
    bytes.sort();
    assert_ne!(bytes, want[2..]);
    // The root has no dot entries.
    let root = list(&ro, "\\", 100);
    assert_eq!(
        root,
        ["Big", "docs", "emptydir", "nonempty", "twins", "WINDOWS"]
    );
    // A pattern, ignoring case.
    let (h, _, _) = open(&ro, "\\Big", opt::DIRECTORY_FILE, R, disp::OPEN).unwrap();
    let bs = ro.read_directory(h, Some("b*.TXT"), None, 1000).unwrap();
    assert_eq!(bs.len(), 100);
    assert!(bs.iter().all(|e| e.name.starts_with('B')));
    let one = ro.read_directory(h, Some("B0?1.txt"), None, 1000).unwrap();
    let names: Vec<&str> = one.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["B001.txt", "B031.txt", "B061.txt", "B091.txt"]);
    assert_eq!(one[0].info.file_size, 8);
    assert_eq!(
        ro.read_directory(h, None, Some("_c299.txt"), 10).unwrap(),
        []
    );
    done(&ro, h);

    // Changes between pages on a read-write view.
    let rw = open_rw(&fx);
    let (h, _, _) = open(&rw, "\\Big", opt::DIRECTORY_FILE, R, disp::OPEN).unwrap();
    let first: Vec<String> = rw
        .read_directory(h, None, None, 40)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(first, want[..40]);
    let marker = first.last().unwrap().clone();
    for n in ["0first.txt", "zzz.txt"] {
        let (f, _, _) = open(&rw, &format!("\\Big\\{n}"), 0, RW, disp::CREATE).unwrap();
        done(&rw, f);
    }
    // The marker's own file goes: resuming after it still works.
    let (f, _, _) = open(
        &rw,
        &format!("\\Big\\{marker}"),
        opt::DELETE_ON_CLOSE,
        access::DELETE,
        disp::OPEN,
    )
    .unwrap();
    done(&rw, f);
    let mut rest = Vec::new();
    let mut m = marker.clone();
    loop {
        let es = rw.read_directory(h, None, Some(&m), 33).unwrap();
        let Some(last) = es.last() else { break };
        m = last.name.clone();
        rest.extend(es.into_iter().map(|e| e.name));
    }
    done(&rw, h);
    let mut expect: Vec<String> = want[40..].to_vec();
    expect.push("zzz.txt".into());
    let expect = ntfs_order(expect);
    assert_eq!(rest, expect, "after the marker: zzz.txt, not 0first.txt");
}

/// What an NTFS-sourced image holds, read through the NT view: the
/// security descriptor as set through ntfs-3g, named streams (past 32 KiB,
/// at offsets), hard links with one file id, reparse points with their
/// tags, times; a read-only view refuses every change.
#[test]
fn ntfs_image_read_only() {
    let tmp = common::tempdir();
    let Some(fx) = common::build_ntfs_wim(tmp.path(), &[]) else {
        return;
    };
    let nt = open_ro(&fx.wim);
    let sd = common::custom_security_descriptor();
    let (h, _, _) = open(&nt, "\\ACL.txt", 0, R, disp::OPEN).unwrap();
    assert_eq!(nt.get_security(h).unwrap(), Some(sd.clone()));
    done(&nt, h);
    let (attrs, by_name) = nt.get_security_by_name("\\acl.TXT").unwrap();
    assert_eq!((attrs & attrib::DIRECTORY, by_name), (0, Some(sd)));
    // Named streams, read in odd pieces.
    for (path, name, data) in &fx.ads {
        let p = format!("\\{}:{name}", path.replace('/', "\\"));
        let (h, info, _) = open(&nt, &p, 0, R, disp::OPEN).unwrap();
        assert_eq!(info.file_size, data.len() as u64, "{p}");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 7777];
        while let Ok(n) = nt.read(h, got.len() as u64, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == *data, "{p}");
        done(&nt, h);
    }
    let (h, _, _) = open(&nt, "\\streams.txt", 0, R, disp::OPEN).unwrap();
    let mut s = nt.streams(h).unwrap();
    s.sort();
    assert_eq!(s, [("big".to_string(), 60_000), ("small".to_string(), 11)]);
    done(&nt, h);
    // Hard links: one file id, three links.
    let ids: Vec<FileInfo> = fx.hardlinks[0]
        .iter()
        .map(|p| {
            let (h, i, _) = open(
                &nt,
                &format!("\\{}", p.to_uppercase().replace('/', "\\")),
                0,
                R,
                disp::OPEN,
            )
            .unwrap();
            done(&nt, h);
            i
        })
        .collect();
    assert!(ids
        .iter()
        .all(|i| i.index_number == ids[0].index_number && i.hard_links == 3));
    // Reparse points, opened as themselves.
    let rp = opt::OPEN_REPARSE_POINT;
    let (h, i, _) = open(&nt, "\\junction", rp, R, disp::OPEN).unwrap();
    assert_eq!(
        i.attributes & (attrib::DIRECTORY | attrib::REPARSE_POINT),
        0x410
    );
    assert_eq!(i.reparse_tag, 0xA000_0003, "IO_REPARSE_TAG_MOUNT_POINT");
    done(&nt, h);
    let (h, i, _) = open(&nt, "\\Link-Rel-File", rp, R, disp::OPEN).unwrap();
    assert_eq!(
        (i.reparse_tag, i.file_size),
        (0xA000_000C, 0),
        "IO_REPARSE_TAG_SYMLINK"
    );
    done(&nt, h);
    // Times as set on the NTFS volume.
    for (p, (secs, nsec)) in &fx.mtimes {
        let (h, i, _) = open(
            &nt,
            &format!("\\{}", p.replace('/', "\\")),
            0,
            R,
            disp::OPEN,
        )
        .unwrap();
        let want = wimfs::time::unix_to_filetime(*secs, *nsec as u32);
        assert_eq!(i.last_write_time, want, "{p}");
        done(&nt, h);
    }
    // Read-only: no change of any kind.
    assert_eq!(
        open(&nt, "\\hello.txt", 0, RW, disp::OPEN).err(),
        Some(S::MEDIA_WRITE_PROTECTED)
    );
    assert_eq!(
        open(&nt, "\\new.txt", 0, R, disp::CREATE).err(),
        Some(S::MEDIA_WRITE_PROTECTED)
    );
    assert_eq!(
        nt.rename("\\hello.txt", "\\x.txt", false),
        Err(S::MEDIA_WRITE_PROTECTED)
    );
    assert_eq!(nt.get_volume_info().free_size, 0);
    assert_eq!(nt.open_count(), 0);
}

/// A small model of NT name semantics: names unique ignoring (ASCII)
/// case, case kept as created or renamed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    File(Vec<u8>),
    Dir(std::collections::BTreeMap<String, (String, M)>),
}

fn key(n: &str) -> String {
    n.to_ascii_uppercase()
}

impl M {
    fn dir(&self) -> Option<&std::collections::BTreeMap<String, (String, M)>> {
        match self {
            M::Dir(d) => Some(d),
            M::File(_) => None,
        }
    }
    fn dir_mut(&mut self) -> Option<&mut std::collections::BTreeMap<String, (String, M)>> {
        match self {
            M::Dir(d) => Some(d),
            M::File(_) => None,
        }
    }
    /// The directory at `comps` (OBJECT_PATH_NOT_FOUND where a component
    /// is missing or a file), as a path of keys.
    fn parent_keys(&self, comps: &[String]) -> Result<Vec<String>, S> {
        let mut cur = self;
        let mut keys = Vec::new();
        for c in comps {
            match cur.dir().and_then(|d| d.get(&key(c))) {
                Some((_, n @ M::Dir(_))) => {
                    cur = n;
                    keys.push(key(c));
                }
                _ => return Err(S::OBJECT_PATH_NOT_FOUND),
            }
        }
        Ok(keys)
    }
    fn at(&mut self, keys: &[String]) -> &mut M {
        let mut cur = self;
        for k in keys {
            cur = &mut cur.dir_mut().unwrap().get_mut(k).unwrap().1;
        }
        cur
    }
}

fn comps(p: &str) -> Vec<String> {
    p.split('\\')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The model's answer to the operation, applying it.
fn model_op(m: &mut M, op: &Op) -> Result<(), S> {
    match op {
        Op::Create(p, data) | Op::Mkdir(p, data) => {
            let c = comps(p);
            let (last, parent) = c.split_last().unwrap();
            let keys = m.parent_keys(parent)?;
            let d = m.at(&keys).dir_mut().unwrap();
            if d.contains_key(&key(last)) {
                return Err(S::OBJECT_NAME_COLLISION);
            }
            let node = match op {
                Op::Mkdir(..) => M::Dir(Default::default()),
                _ => M::File(data.clone()),
            };
            d.insert(key(last), (last.clone(), node));
            Ok(())
        }
        Op::Overwrite(p, data) => {
            let c = comps(p);
            let (last, parent) = c.split_last().unwrap();
            let keys = m.parent_keys(parent)?;
            let d = m.at(&keys).dir_mut().unwrap();
            match d.get_mut(&key(last)) {
                None => Err(S::OBJECT_NAME_NOT_FOUND),
                Some((_, M::Dir(_))) => Err(S::FILE_IS_A_DIRECTORY),
                Some((_, f)) => {
                    *f = M::File(data.clone());
                    Ok(())
                }
            }
        }
        Op::Delete(p) => {
            let c = comps(p);
            let (last, parent) = c.split_last().unwrap();
            let keys = m.parent_keys(parent)?;
            let d = m.at(&keys).dir_mut().unwrap();
            match d.get(&key(last)) {
                None => Err(S::OBJECT_NAME_NOT_FOUND),
                Some((_, M::Dir(x))) if !x.is_empty() => Err(S::DIRECTORY_NOT_EMPTY),
                Some(_) => {
                    d.remove(&key(last));
                    Ok(())
                }
            }
        }
        Op::Rename(p, q, replace) => {
            let (pc, qc) = (comps(p), comps(q));
            let (plast, pparent) = pc.split_last().unwrap();
            let (qlast, qparent) = qc.split_last().unwrap();
            let pkeys = m.parent_keys(pparent)?;
            let src_dir = match m.at(&pkeys).dir().unwrap().get(&key(plast)) {
                None => return Err(S::OBJECT_NAME_NOT_FOUND),
                Some((_, n)) => matches!(n, M::Dir(_)),
            };
            let qkeys = m.parent_keys(qparent)?;
            let mut src_keys = pkeys.clone();
            src_keys.push(key(plast));
            if src_dir && qkeys.starts_with(&src_keys) {
                return Err(S::INVALID_PARAMETER);
            }
            let same = pkeys == qkeys && key(plast) == key(qlast);
            let target = m.at(&qkeys).dir().unwrap().get(&key(qlast)).cloned();
            if !same {
                if let Some((_, t)) = &target {
                    if !replace {
                        return Err(S::OBJECT_NAME_COLLISION);
                    }
                    if matches!(t, M::Dir(_)) {
                        return Err(S::ACCESS_DENIED);
                    }
                }
            }
            let (_, node) = m.at(&pkeys).dir_mut().unwrap().remove(&key(plast)).unwrap();
            m.at(&qkeys)
                .dir_mut()
                .unwrap()
                .insert(key(qlast), (qlast.clone(), node));
            Ok(())
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(String, Vec<u8>),
    Mkdir(String, Vec<u8>),
    Overwrite(String, Vec<u8>),
    Delete(String),
    Rename(String, String, bool),
}

/// The NT view's answer to the operation, through the calls a Windows
/// program makes for it.
fn nt_op(nt: &NtVfs, op: &Op) -> Result<(), S> {
    let write = |h: Handle, data: &[u8]| {
        nt.write(h, 0, data, false, false).unwrap();
        done(nt, h);
    };
    match op {
        Op::Create(p, data) => {
            let (h, _, _) = open(nt, p, opt::NON_DIRECTORY_FILE, RW, disp::CREATE)?;
            write(h, data);
        }
        Op::Mkdir(p, _) => {
            let (h, _, _) = open(nt, p, opt::DIRECTORY_FILE, RW, disp::CREATE)?;
            done(nt, h);
        }
        Op::Overwrite(p, data) => {
            let (h, _, _) = open(nt, p, opt::NON_DIRECTORY_FILE, RW, disp::OVERWRITE)?;
            write(h, data);
        }
        Op::Delete(p) => {
            let (h, _, _) = open(nt, p, opt::DELETE_ON_CLOSE, access::DELETE, disp::OPEN)?;
            done(nt, h);
        }
        Op::Rename(p, q, replace) => nt.rename(p, q, *replace)?,
    }
    Ok(())
}

/// The whole tree through the NT view, as a model.
fn nt_tree(nt: &NtVfs, path: &str) -> M {
    let mut d = std::collections::BTreeMap::new();
    let (h, _, _) = open(nt, path, opt::DIRECTORY_FILE, R, disp::OPEN).unwrap();
    let es = nt.read_directory(h, None, None, usize::MAX).unwrap();
    done(nt, h);
    let names: Vec<String> = es.iter().map(|e| e.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| (key(n), n.clone()));
    assert_eq!(names, sorted, "NTFS order in {path}");
    for e in es {
        if e.name == "." || e.name == ".." {
            continue;
        }
        let p = format!("{}\\{}", path.trim_end_matches('\\'), e.name);
        let node = if e.info.attributes & attrib::DIRECTORY != 0 {
            nt_tree(nt, &p)
        } else {
            M::File(content(nt, &p))
        };
        d.insert(key(&e.name), (e.name, node));
    }
    M::Dir(d)
}

/// The tree wimlib applied, as a model.
fn dir_tree(p: &Path) -> M {
    let mut d = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let node = if e.file_type().unwrap().is_dir() {
            dir_tree(&e.path())
        } else {
            M::File(std::fs::read(e.path()).unwrap())
        };
        d.insert(key(&n), (n, node));
    }
    M::Dir(d)
}

/// Random creates, overwrites, deletes and renames (with names in random
/// case) through the NT view and a model of NT semantics side by side;
/// every answer and the final tree must agree, and so must the tree
/// wimlib applies from the commit.
#[test]
fn random_operations_match_a_model_of_nt() {
    let Some(fx) = fixture() else { return };
    let nt = open_rw(&fx);
    // Start from the part of the image with names unique ignoring case.
    for p in ["\\twins\\foo", "\\twins\\Foo", "\\Big", "\\twins"] {
        if p == "\\Big" {
            for n in big_names() {
                nt_op(&nt, &Op::Delete(format!("\\Big\\{n}"))).unwrap();
            }
        }
        nt_op(&nt, &Op::Delete(p.to_string())).unwrap();
    }
    let mut model = nt_tree(&nt, "\\");
    let mut rng = common::Rng::new(10);
    let words = ["alpha", "Beta", "gamma", "d", "docs", "nonempty"];
    let name = |rng: &mut common::Rng| -> String {
        let w = words[rng.index(words.len())];
        match rng.below(3) {
            0 => w.to_ascii_uppercase(),
            1 => w.to_ascii_lowercase(),
            _ => w.to_string(),
        }
    };
    let path = |rng: &mut common::Rng| -> String {
        let depth = 1 + rng.below(3);
        (0..depth).map(|_| format!("\\{}", name(rng))).collect()
    };
    let steps = 1500;
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for step in 0..steps {
        let len = rng.index(3000);
        let data = rng.bytes(len);
        let op = match rng.below(10) {
            0..=2 => Op::Create(path(&mut rng), data),
            3 | 4 => Op::Mkdir(path(&mut rng), data),
            5 => Op::Overwrite(path(&mut rng), data),
            6 | 7 => Op::Delete(path(&mut rng)),
            _ => Op::Rename(path(&mut rng), path(&mut rng), rng.below(2) == 0),
        };
        let want = model_op(&mut model, &op);
        let got = nt_op(&nt, &op);
        assert_eq!(got, want, "step {step}: {op:?}");
        *tally.entry(format!("{:?}", want.err())).or_default() += 1;
        if step % 250 == 0 {
            assert_eq!(nt_tree(&nt, "\\"), model, "step {step}");
        }
    }
    eprintln!("{steps} steps: {tally:?}");
    assert!(
        tally.len() >= 6,
        "the operations reach their outcomes: {tally:?}"
    );
    assert_eq!(nt_tree(&nt, "\\"), model, "at the end");
    // Commit; wimlib verifies the WIM and applies the model's tree.
    let v = nt.vfs().clone();
    drop(nt);
    let g = v.freeze().unwrap();
    let tree = v.to_new_image().unwrap();
    let lock = wimfs::commit::WimLock::acquire(&fx.wim).unwrap();
    wimfs::commit::append_image(&lock, 1, tree, &Default::default(), &|_, _| {}).unwrap();
    drop(lock);
    drop(g);
    drop(v);
    let wim = fx.wim.to_str().unwrap();
    imagex(&["verify", wim]);
    let applied = fx.root.join("applied");
    imagex(&["apply", wim, "1", applied.to_str().unwrap()]);
    assert_eq!(dir_tree(&applied), model, "wimlib apply of the commit");
}

/// Changes to an NTFS-sourced image through the NT view keep what NTFS
/// put there: a renamed file keeps its security descriptor, a stream
/// written through one hard link reads through the others, a junction
/// deleted with delete-on-close goes; wimlib checks the commit.
#[test]
fn ntfs_image_changed_and_committed() {
    let tmp = common::tempdir();
    let Some(src) = common::build_ntfs_wim(tmp.path(), &[]) else {
        return;
    };
    let fx = Fx {
        root: tmp.path().to_path_buf(),
        wim: src.wim.clone(),
        _tmp: tmp,
    };
    let nt = open_rw(&fx);
    let sd = common::custom_security_descriptor();
    nt.rename("\\ACL.TXT", "\\Acl Renamed.txt", false).unwrap();
    let (h, _, _) = open(&nt, "\\acl renamed.TXT", 0, R, disp::OPEN).unwrap();
    assert_eq!(nt.get_security(h).unwrap(), Some(sd.clone()));
    done(&nt, h);
    // A stream of a hard-linked file, written at an offset.
    let (h, _, _) = open(&nt, "\\hello.txt:zone.identifier", 0, RW, disp::OPEN).unwrap();
    nt.write(h, 23, b"4\r\n", false, false).unwrap();
    done(&nt, h);
    let want = b"[ZoneTransfer]\r\nZoneId=4\r\n".to_vec();
    assert_eq!(content(&nt, "\\DIR\\hello-link2.txt:Zone.Identifier"), want);
    // Delete a junction (opened as itself).
    let (h, i, _) = open(
        &nt,
        "\\Junction",
        opt::OPEN_REPARSE_POINT | opt::DELETE_ON_CLOSE,
        access::DELETE,
        disp::OPEN,
    )
    .unwrap();
    assert_eq!(i.reparse_tag, 0xA000_0003);
    done(&nt, h);
    assert!(!exists(&nt, "\\junction"));

    let v = nt.vfs().clone();
    drop(nt);
    let g = v.freeze().unwrap();
    let tree = v.to_new_image().unwrap();
    let lock = wimfs::commit::WimLock::acquire(&fx.wim).unwrap();
    wimfs::commit::append_image(&lock, 1, tree, &Default::default(), &|_, _| {}).unwrap();
    drop(lock);
    drop(g);
    drop(v);
    let wim = fx.wim.to_str().unwrap();
    imagex(&["verify", wim]);
    let listed = imagex(&["dir", wim, "1"]);
    assert!(listed.lines().any(|l| l == "/Acl Renamed.txt"), "{listed}");
    assert!(
        !listed.lines().any(|l| l == "/acl.txt" || l == "/junction"),
        "{listed}"
    );
    let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
    let detail = imagex(&["dir", wim, "1", "--detailed", "--path=/Acl Renamed.txt"]);
    let line = format!("Security Descriptor = {}", hex(&sd));
    assert!(detail.contains(&line), "{line:?} in:\n{detail}");
    let detail = imagex(&["dir", wim, "1", "--detailed", "--path=/dir/hello-link2.txt"]);
    let sha = {
        use sha1::Digest;
        hex(&sha1::Sha1::digest(&want))
    };
    let stream = detail
        .split("Named data stream \"Zone.Identifier\":")
        .nth(1)
        .unwrap_or_default();
    assert!(
        detail.contains("Link Count          = 3")
            && stream.contains(&format!("Hash              = 0x{sha}"))
            && stream.contains(&format!("Uncompressed size = {} bytes", want.len())),
        "the stream written through another link:\n{detail}"
    );
}
