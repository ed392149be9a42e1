//! Extract an image to a directory on a POSIX system.
//!
//! Directories, files, hard links and symlinks (from symlink and junction
//! reparse points) are created first, then every blob is streamed once
//! (in parallel, in on-disk order) into the first file that holds it and
//! copied to the others, named streams become `user.NAME` xattrs, and
//! timestamps are set last (directories deepest first). With UNIX data,
//! FIFOs, devices and sockets (empty files whose UNIX-data mode says what
//! they are) are made with `mknod`, as `wimlib-imagex apply --unix-data`
//! makes them.
//!
//! Nothing is written outside the target: names with `/`, `.` and `..` never
//! get this far, files are created with O_EXCL (which does not follow a
//! symlink), and children of reparse points are not descended into.

use crate::bulk::{for_each_blob, BlobSink};
use crate::error::{Error, Result, Section};
use crate::image::{unix_mode, Image, Special, StreamKind, ROOT};
use crate::reparse;
use crate::wim::bytes::hex;
use crate::wim::{header::flags, Blob, Sha1, Wim};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Restore uid/gid/mode from the UNIX-data tagged item.
    pub unix_data: bool,
    /// Do not create `user.*` xattrs for named data streams.
    pub no_streams: bool,
    /// Extract into a target that already holds files: an entry the image
    /// also has is replaced (a directory is kept and extracted into), the
    /// rest is left as it is. Without it a non-empty target is refused,
    /// because a merge that fails halfway ("File exists") leaves a mix of
    /// both that nobody asked for.
    pub overwrite: bool,
}

#[derive(Debug, Default, Clone)]
pub struct ApplyReport {
    /// Directories made, the target itself included.
    pub dirs: u64,
    /// Files made (regular, and FIFOs/devices/sockets with UNIX data); a
    /// hard link to one already made counts under `hardlinks`.
    pub files: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Bytes of file data written: the sum of the files' sizes.
    pub bytes: u64,
    pub warnings: Vec<String>,
}

/// What to do with one blob's bytes.
#[derive(Default)]
struct Targets {
    files: Vec<PathBuf>,
    xattrs: Vec<(PathBuf, String)>,
    /// Symlinks and junctions whose reparse data this blob is: created when
    /// the data arrives, so apply reads the WIM in one pass.
    links: Vec<Link>,
}

struct Link {
    path: PathBuf,
    tag: u32,
    fixed: bool,
    dir: bool,
    shown: String,
}

/// Whether `target` is a directory with something in it (a missing target
/// has nothing).
fn has_entries(target: &Path) -> Result<bool> {
    match fs::read_dir(target) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        // Not a directory, or unreadable: create_dir_all/canonicalize say so.
        Err(_) => Ok(false),
    }
}

/// Clear `path` for an entry of the image (`--overwrite`): a real
/// directory is kept when a directory is wanted (returns true); a file,
/// symlink or special file is removed (a symlink itself, never what it
/// points to, so nothing outside the target is touched); a directory where
/// the image has a file is refused rather than deleted with its contents.
fn make_room(path: &Path, want_dir: bool) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path, e)),
    };
    if meta.is_dir() {
        if want_dir {
            return Ok(true);
        }
        return Err(io_err(
            path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a directory stands where the image has a file (--overwrite replaces files, \
                 never directories)",
            ),
        ));
    }
    fs::remove_file(path).map_err(|e| io_err(path, e))?;
    Ok(false)
}

fn io_err(p: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: p.display().to_string(),
        err: e,
    }
}

/// Apply `image` of `wim` into `target`. `progress(bytes)` is called as
/// data is written.
pub fn apply(
    wim: &Wim,
    image: &Image,
    target: &Path,
    opts: &ApplyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ApplyReport> {
    if !opts.overwrite && has_entries(target)? {
        return Err(Error::TargetNotEmpty(target.display().to_string()));
    }
    fs::create_dir_all(target).map_err(|e| io_err(target, e))?;
    let root_abs = fs::canonicalize(target).map_err(|e| io_err(target, e))?;
    let mut rep = ApplyReport {
        warnings: image.warnings.clone(),
        ..Default::default()
    };
    let rpfix = wim.header.flags & flags::RP_FIX != 0;
    let mut paths: Vec<Option<PathBuf>> = vec![None; image.dentries.len()];
    let mut first_path: HashMap<u32, PathBuf> = HashMap::new();
    let mut targets: HashMap<Sha1, Targets> = HashMap::new();
    let mut blobs: HashMap<Sha1, Arc<Blob>> = HashMap::new();
    let mut order: Vec<u32> = Vec::new();
    paths[ROOT as usize] = Some(root_abs.clone());
    let mut stack = vec![ROOT];
    while let Some(d) = stack.pop() {
        let Some(path) = paths[d as usize].clone() else {
            continue;
        };
        order.push(d);
        let ino_idx = image.dentries[d as usize].inode;
        let ino = &image.inodes[ino_idx as usize];
        if d != ROOT {
            if let Some(first) = first_path.get(&ino_idx) {
                if opts.overwrite {
                    make_room(&path, false)?;
                }
                fs::hard_link(first, &path).map_err(|e| io_err(&path, e))?;
                rep.hardlinks += 1;
                continue;
            }
            first_path.insert(ino_idx, path.clone());
        }
        // With --overwrite, what stands at this path goes (a directory the
        // image also has as a directory stays), so each create below finds
        // the way clear and still uses O_EXCL.
        let link = ino.is_reparse()
            && matches!(
                ino.reparse_tag,
                reparse::TAG_SYMLINK | reparse::TAG_MOUNT_POINT
            );
        let kept_dir = d != ROOT && opts.overwrite && make_room(&path, ino.is_dir() && !link)?;
        if ino.is_reparse() && d != ROOT {
            let is_link = matches!(
                ino.reparse_tag,
                reparse::TAG_SYMLINK | reparse::TAG_MOUNT_POINT
            );
            if let (true, Some(s)) = (is_link, ino.reparse().filter(|s| s.blob.is_some())) {
                if let Some(b) = &s.blob {
                    targets.entry(s.hash).or_default().links.push(Link {
                        path: path.clone(),
                        tag: ino.reparse_tag,
                        fixed: rpfix && ino.rp_flags & reparse::RP_NOT_FIXED == 0,
                        dir: ino.is_dir(),
                        shown: image.path(d),
                    });
                    blobs.insert(s.hash, b.clone());
                    rep.symlinks += 1;
                }
                if !image.dentries[d as usize].children.is_empty() {
                    rep.warnings.push(format!(
                        "{}: reparse point has children; not extracted",
                        image.path(d)
                    ));
                }
                continue;
            }
            if ino.is_dir() {
                rep.warnings.push(format!(
                    "{}: reparse point (tag {:#x}) extracted as a plain directory",
                    image.path(d),
                    ino.reparse_tag
                ));
            } else {
                rep.warnings.push(format!(
                    "{}: reparse point (tag {:#x}) extracted as a plain file",
                    image.path(d),
                    ino.reparse_tag
                ));
            }
        }
        if ino.is_dir() {
            if d != ROOT && !kept_dir {
                fs::create_dir(&path).map_err(|e| io_err(&path, e))?;
            }
            rep.dirs += 1;
            for &c in image.dentries[d as usize].children.iter().rev() {
                paths[c as usize] = Some(path.join(&image.dentries[c as usize].name));
                stack.push(c);
            }
        } else if let Some((sp, u)) = ino.special().zip(ino.unix).filter(|_| opts.unix_data) {
            // A FIFO, device or socket stored as an empty file with UNIX
            // data (as `wimlib-imagex capture --unix-data` stores them).
            rep.files += 1;
            let ty = u.mode & unix_mode::S_IFMT;
            if let Err(e) = crate::sys::make_node(&path, ty | (u.mode & 0o7777), u64::from(u.rdev))
            {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(io_err(&path, e));
                }
                rep.warnings.push(format!(
                    "{}: cannot create the {}{}: {e}; extracted as an empty file",
                    image.path(d),
                    sp.describe(),
                    device_number(sp, u.rdev),
                ));
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_err(&path, e))?;
            }
            if ino.size() > 0 {
                rep.warnings.push(format!(
                    "{}: the {} has {} bytes of data in the WIM; not extracted",
                    image.path(d),
                    sp.describe(),
                    ino.size()
                ));
            }
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            rep.files += 1;
            if let Some(s) = ino.data() {
                if let Some(b) = &s.blob {
                    targets.entry(s.hash).or_default().files.push(path.clone());
                    blobs.insert(s.hash, b.clone());
                } else if s.size > 0 || s.hash != crate::wim::ZERO_HASH {
                    return Err(Error::MissingBlob(format!(
                        "{} (file {})",
                        hex(&s.hash),
                        image.path(d)
                    )));
                }
            }
        }
        if !opts.no_streams {
            for s in ino.named().filter(|s| s.kind == StreamKind::Data) {
                match &s.blob {
                    Some(b) => {
                        targets
                            .entry(s.hash)
                            .or_default()
                            .xattrs
                            .push((path.clone(), s.name.clone()));
                        blobs.insert(s.hash, b.clone());
                    }
                    None if s.hash == crate::wim::ZERO_HASH => {
                        set_xattr(&path, &s.name, &[], &mut rep.warnings)
                    }
                    None => {
                        return Err(Error::MissingBlob(format!(
                            "{} (stream {}:{})",
                            hex(&s.hash),
                            image.path(d),
                            s.name
                        )))
                    }
                }
            }
        }
    }

    // Stream the data.
    let blob_list: Vec<Arc<Blob>> = blobs.into_values().collect();
    let targets = Arc::new(targets);
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let written = std::sync::atomic::AtomicU64::new(0);
    let root_str = Arc::new(root_abs.to_string_lossy().into_owned());
    let errors = for_each_blob(&blob_list, |b| {
        let t = targets
            .get(&b.hash)
            .ok_or_else(|| Error::Internal("untargeted blob".into()))?;
        let _ = t;
        // The file is opened at the first write: a solid chunk starts
        // thousands of blobs at once, and each must not hold a descriptor
        // until its bytes arrive.
        let file = None;
        Ok(Box::new(ApplySink {
            hash: b.hash,
            root: root_str.clone(),
            hasher: sha1::Digest::new(),
            size: b.size,
            file,
            buf: Vec::new(),
            targets: targets.clone(),
            warnings: warnings.clone(),
            progress,
            written: &written,
            seen: 0,
        }) as Box<dyn BlobSink + '_>)
    });
    if let Some((h, e)) = errors.into_iter().next() {
        return Err(match e {
            Error::HashMismatch(_) => e,
            other => Error::Blob {
                hash: hex(&h),
                source: Box::new(other),
            },
        });
    }
    rep.bytes = written.load(std::sync::atomic::Ordering::Relaxed);
    rep.warnings.extend(warnings.lock().drain(..));

    // Metadata last: ownership/mode, then timestamps, deepest first.
    for &d in order.iter().rev() {
        let Some(p) = &paths[d as usize] else {
            continue;
        };
        let ino = image.inode_of(d);
        if opts.unix_data {
            if let Some(u) = ino.unix {
                set_owner_mode(p, u.uid, u.gid, u.mode, &mut rep.warnings);
            }
        }
        set_times(
            p,
            ino.last_access_time,
            ino.last_write_time,
            &mut rep.warnings,
        );
    }
    Ok(rep)
}

struct ApplySink<'a> {
    hash: Sha1,
    root: Arc<String>,
    /// SHA-1 of what was written, checked at the end: apply never leaves
    /// corrupt data behind silently.
    hasher: sha1::Sha1,
    size: u64,
    file: Option<File>,
    buf: Vec<u8>,
    targets: Arc<HashMap<Sha1, Targets>>,
    warnings: Arc<Mutex<Vec<String>>>,
    progress: &'a (dyn Fn(u64) + Sync),
    written: &'a std::sync::atomic::AtomicU64,
    seen: u64,
}

/// Named streams larger than this do not fit in an xattr on common
/// filesystems (ext4 allows one block); they are reported, not applied.
const MAX_XATTR: u64 = 64 << 10;

impl BlobSink for ApplySink<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.seen += data.len() as u64;
        sha1::Digest::update(&mut self.hasher, data);
        if self.file.is_none() {
            if let Some(p) = self.targets[&self.hash].files.first() {
                self.file = Some(
                    OpenOptions::new()
                        .write(true)
                        .open(p)
                        .map_err(|e| io_err(p, e))?,
                );
            }
        }
        if let Some(f) = &mut self.file {
            f.write_all(data).map_err(|err| Error::WriteBlob {
                hash: hex(&self.hash),
                err,
            })?;
        }
        let t = &self.targets[&self.hash];
        if (!t.xattrs.is_empty() || !t.links.is_empty()) && self.size <= MAX_XATTR {
            self.buf.extend_from_slice(data);
        }
        (self.progress)(data.len() as u64);
        // What the extracted files hold: a blob shared by several files
        // counts once per file (each gets a copy), reparse data and named
        // streams do not count.
        let landed = data.len() as u64 * t.files.len() as u64;
        self.written
            .fetch_add(landed, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<()> {
        if self.seen != self.size {
            return Err(Error::corrupt(
                Section::Resource,
                None,
                format!(
                    "blob {} gave {} of {} bytes",
                    hex(&self.hash),
                    self.seen,
                    self.size
                ),
            ));
        }
        let t = &self.targets[&self.hash];
        if sha1::Digest::finalize(self.hasher).as_slice() != self.hash {
            let first = t
                .files
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(Error::HashMismatch(format!(
                "{} (the data of {first} is corrupt in the WIM)",
                hex(&self.hash)
            )));
        }
        drop(self.file);
        if let Some(first) = t.files.first() {
            for other in &t.files[1..] {
                fs::copy(first, other).map_err(|e| io_err(other, e))?;
            }
        }
        let mut w = Vec::new();
        for l in &t.links {
            match reparse::decode(l.tag, &self.buf) {
                Some(lt) => {
                    let tgt = reparse::posix_target(&lt, l.fixed, &self.root);
                    std::os::unix::fs::symlink(&tgt, &l.path).map_err(|e| io_err(&l.path, e))?;
                }
                None => {
                    w.push(format!(
                        "{}: reparse data (tag {:#x}) unreadable; extracted as a plain {}",
                        l.shown,
                        l.tag,
                        if l.dir { "directory" } else { "file" }
                    ));
                    if l.dir {
                        fs::create_dir(&l.path).map_err(|e| io_err(&l.path, e))?;
                    } else {
                        OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&l.path)
                            .map_err(|e| io_err(&l.path, e))?;
                    }
                }
            }
        }
        for (p, name) in &t.xattrs {
            if self.size > MAX_XATTR {
                w.push(format!(
                    "{}: named stream {name:?} ({} bytes) too large for an xattr; skipped",
                    p.display(),
                    self.size
                ));
                continue;
            }
            set_xattr(p, name, &self.buf, &mut w);
        }
        self.warnings.lock().extend(w);
        Ok(())
    }
}

/// ` (MAJOR:MINOR)` for a device, from the UNIX-data `rdev` (glibc's
/// `dev_t` layout, low 32 bits), else nothing.
fn device_number(sp: Special, rdev: u32) -> String {
    if !sp.is_device() {
        return String::new();
    }
    let major = (rdev >> 8) & 0xfff;
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    format!(" ({major}:{minor})")
}

fn cpath(p: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).ok()
}

fn set_xattr(p: &Path, name: &str, val: &[u8], warnings: &mut Vec<String>) {
    let (Some(_), Ok(_)) = (cpath(p), std::ffi::CString::new(format!("user.{name}"))) else {
        warnings.push(format!(
            "{}: cannot name xattr for stream {name:?}",
            p.display()
        ));
        return;
    };
    // The names were checked above (no NUL), so an error here is the OS's.
    if let Err(e) = crate::sys::set_xattr_nofollow(p, &format!("user.{name}"), val) {
        warnings.push(format!(
            "{}: cannot set xattr user.{name}: {e}",
            p.display()
        ));
    }
}

/// FILETIME (100 ns since 1601) to Unix (seconds, nanoseconds).
fn filetime_to_unix(ft: u64) -> (i64, i64) {
    const EPOCH_DIFF: i64 = 116_444_736_000_000_000;
    let t = ft as i64 - EPOCH_DIFF;
    (t.div_euclid(10_000_000), t.rem_euclid(10_000_000) * 100)
}

fn set_times(p: &Path, atime: u64, mtime: u64, warnings: &mut Vec<String>) {
    // A path the OS cannot name is skipped quietly, as always.
    if cpath(p).is_none() {
        return;
    }
    if let Err(e) =
        crate::sys::set_times_nofollow(p, filetime_to_unix(atime), filetime_to_unix(mtime))
    {
        warnings.push(format!("{}: cannot set times: {e}", p.display()));
    }
}

fn set_owner_mode(p: &Path, uid: u32, gid: u32, mode: u32, warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    if cpath(p).is_none() {
        return;
    }
    // std's lchown and set_permissions are the lchown and chmod calls.
    if let Err(e) = std::os::unix::fs::lchown(p, Some(uid), Some(gid)) {
        warnings.push(format!("{}: cannot chown: {e}", p.display()));
    }
    let is_link = fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    if !is_link {
        if let Err(e) = fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o7777)) {
            warnings.push(format!("{}: cannot chmod: {e}", p.display()));
        }
    }
}
