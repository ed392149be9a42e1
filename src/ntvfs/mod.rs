//! The NT view over the vfs: the handle- and path-based calls WinFsp
//! makes, answered in NT terms (NTSTATUS, FILETIMEs, NT attributes, case-
//! insensitive case-preserving names, named streams as streams), so the
//! Windows adapter is a one-to-one translation with no logic in it, and
//! every rule here is tested on Linux.
//!
//! Paths are parsed by [`crate::nt::path`], creates decided by
//! [`crate::nt::create::decide`], attributes by [`crate::nt::attrib`];
//! this module walks the vfs with [`Vfs::lookup_ci`] and keeps the open
//! handles: which inode and stream each names, by which parent and stored
//! name (for delete-on-close and rename), and which deletions are pending
//! until the last handle of an object is cleaned up (NT keeps a file
//! visible until then).
//!
//! Metadata goes through the vfs's setters (attributes, the four times,
//! security descriptors, reparse points, named streams at offsets of any
//! size); stream renames are still `STATUS_NOT_IMPLEMENTED`.

mod info;
mod status;

pub use info::{DirInfo, FileInfo, VolumeInfo, CLUSTER};
pub use status::from_vfs;

use crate::node::{Attr, FileKind, Ino, VfsError, ROOT_INO};
use crate::nt::create::{self, access, options, Action, Existing};
use crate::nt::path::NtPath;
use crate::nt::{attrib, names, pattern, upcase, NtResult, NtStatus};
use crate::vfs::{Cred, NtTimes, RenameMode, SetAttr, Vfs};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An open file, directory or stream (WinFsp's FileContext).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(pub u64);

/// WinFsp's cleanup flags (`FspCleanup*`).
pub mod cleanup {
    /// Delete the file: the last handle of a file marked for deletion.
    pub const DELETE: u32 = 0x01;
    pub const SET_ALLOCATION_SIZE: u32 = 0x02;
    pub const SET_ARCHIVE_BIT: u32 = 0x10;
    pub const SET_LAST_ACCESS_TIME: u32 = 0x20;
    pub const SET_LAST_WRITE_TIME: u32 = 0x40;
    pub const SET_CHANGE_TIME: u32 = 0x80;
}

/// Time values in a set-basic-info request that mean "leave it".
const KEEP_TIME: [u64; 2] = [0, u64::MAX];
/// Attribute values in a set-basic-info request that mean "leave them"
/// (0, and WinFsp's INVALID_FILE_ATTRIBUTES).
const KEEP_ATTRIBUTES: [u32; 2] = [0, u32::MAX];

/// The object a handle names: an inode, or one of its named streams.
type Object = (Ino, Option<String>);

struct Open {
    ino: Ino,
    /// The directory holding the name it was opened by, and that name as
    /// stored (the root: itself and ""). Kept current across renames.
    parent: Ino,
    name: String,
    stream: Option<String>,
    /// The path it was opened by, every name (and the stream's) as stored:
    /// what a case-insensitive file system reports as the normalized name.
    opened_as: String,
    dir: bool,
    /// The vfs handle of an open file (keeps an unlinked file's data until
    /// the last close); none for directories and streams.
    fh: Option<u64>,
    /// Opened with access that writes data.
    write: bool,
    delete_on_close: bool,
}

impl Open {
    fn object(&self) -> Object {
        (self.ino, self.stream.clone())
    }
}

/// Where a path leads: its directory, and the last name as stored with
/// its attributes when it exists.
struct Resolved {
    parent: Ino,
    /// The directory's path with every name as stored (`""`: the root).
    parent_path: String,
    last: Option<(String, Attr)>,
}

/// The NT view over one [`Vfs`].
pub struct NtVfs {
    vfs: Arc<Vfs>,
    opens: Mutex<HashMap<u64, Open>>,
    /// Objects marked for deletion while other handles were still open:
    /// deleted at the last one's cleanup.
    pending_delete: Mutex<HashSet<Object>>,
    next: AtomicU64,
}

/// Map a vfs result to NT.
fn nt<T>(r: Result<T, VfsError>) -> NtResult<T> {
    r.map_err(|e| from_vfs(&e))
}

/// The xattr that shows a reparse point as a REPARSE_DATA_BUFFER.
const NTFS_REPARSE: &str = "system.ntfs_reparse_data";

/// Split a REPARSE_DATA_BUFFER into tag and data, checking its length
/// field against what follows.
fn reparse_buffer(b: &[u8]) -> NtResult<(u32, &[u8])> {
    let bad = NtStatus::INVALID_PARAMETER;
    let tag = u32::from_le_bytes(b.get(0..4).ok_or(bad)?.try_into().map_err(|_| bad)?);
    let len = u16::from_le_bytes(b.get(4..6).ok_or(bad)?.try_into().map_err(|_| bad)?);
    let data = b.get(8..).ok_or(bad)?;
    if data.len() != len as usize {
        return Err(bad);
    }
    Ok((tag, data))
}

impl NtVfs {
    pub fn new(vfs: Arc<Vfs>) -> NtVfs {
        NtVfs {
            vfs,
            opens: Mutex::new(HashMap::new()),
            pending_delete: Mutex::new(HashSet::new()),
            next: AtomicU64::new(1),
        }
    }

    pub fn vfs(&self) -> &Arc<Vfs> {
        &self.vfs
    }

    /// Open handles (a commit waits for them as for the Linux adapter's).
    pub fn open_count(&self) -> usize {
        self.opens.lock().len()
    }

    // ----- paths ---------------------------------------------------------

    /// Walk `p` case-insensitively. A missing or non-directory
    /// intermediate component is OBJECT_PATH_NOT_FOUND; a missing last
    /// name is `last: None`.
    fn resolve(&self, p: &NtPath) -> NtResult<Resolved> {
        let mut dir = ROOT_INO;
        let mut parent_path = String::new();
        for c in p.parent_components() {
            let a = match self.vfs.lookup_ci(dir, c) {
                Ok((stored, a)) => {
                    parent_path.push('\\');
                    parent_path.push_str(&stored);
                    a
                }
                Err(VfsError::NotFound | VfsError::NotDir) => {
                    return Err(NtStatus::OBJECT_PATH_NOT_FOUND)
                }
                Err(e) => return Err(from_vfs(&e)),
            };
            if a.kind != FileKind::Directory {
                return Err(NtStatus::OBJECT_PATH_NOT_FOUND);
            }
            dir = a.ino;
        }
        let last = match p.file_name() {
            None => Some((String::new(), nt(self.vfs.getattr(ROOT_INO))?)),
            Some(n) => match self.vfs.lookup_ci(dir, n) {
                Ok(x) => Some(x),
                Err(VfsError::NotFound) => None,
                Err(VfsError::NotDir) => return Err(NtStatus::OBJECT_PATH_NOT_FOUND),
                Err(e) => return Err(from_vfs(&e)),
            },
        };
        Ok(Resolved {
            parent: dir,
            parent_path,
            last,
        })
    }

    fn info_of(&self, a: &Attr, stream: Option<&str>) -> NtResult<FileInfo> {
        let tag = if a.attributes & attrib::REPARSE_POINT != 0 {
            nt(self.vfs.reparse_tag(a.ino))?
        } else {
            None
        };
        match stream {
            None => Ok(FileInfo::of(a, tag, FileInfo::data_size(a))),
            Some(s) => {
                // A stream of a directory has a size of its own.
                let size = nt(self.vfs.stream(a.ino, s))?.map_or(0, |x| x.size);
                let mut i = FileInfo::of(a, tag, size);
                i.file_size = size;
                i.allocation_size = size.div_ceil(CLUSTER) * CLUSTER;
                Ok(i)
            }
        }
    }

    /// The stored name of stream `s` of `ino`: the exact name, else the
    /// first in collation order equal to it but for case.
    fn stream_name(&self, ino: Ino, s: &str) -> NtResult<Option<String>> {
        let all = nt(self.vfs.streams(ino))?;
        if all.iter().any(|x| x.name == s) {
            return Ok(Some(s.to_string()));
        }
        Ok(all
            .into_iter()
            .map(|x| x.name)
            .filter(|n| upcase::eq_ci(n, s))
            .min_by(|a, b| upcase::collate(a, b)))
    }

    /// Refuse a new name Windows cannot use before the vfs sees it (the
    /// vfs would answer a bare "invalid"), when the mount keeps Windows
    /// names.
    fn check_new_name(&self, name: &str) -> NtResult<()> {
        if self.vfs.opts.windows_names && names::check_name(name).is_err() {
            return Err(NtStatus::OBJECT_NAME_INVALID);
        }
        Ok(())
    }

    /// Can `a` (named `name` in `parent`, or its stream) be deleted?
    /// Read-only files and the root cannot (CANNOT_DELETE); a directory
    /// with entries is DIRECTORY_NOT_EMPTY.
    fn can_delete_attr(&self, a: &Attr, stream: bool) -> NtResult<()> {
        if a.ino == ROOT_INO && !stream {
            return Err(NtStatus::CANNOT_DELETE);
        }
        if a.attributes & attrib::READONLY != 0 {
            return Err(NtStatus::CANNOT_DELETE);
        }
        if !stream && a.kind == FileKind::Directory {
            let entries = nt(self.vfs.readdir(a.ino, 2, 1))?;
            if !entries.is_empty() {
                return Err(NtStatus::DIRECTORY_NOT_EMPTY);
            }
        }
        Ok(())
    }

    // ----- open, overwrite, cleanup, close -------------------------------

    /// NtCreateFile: open or create `path` (`\dir\file`, `\file:stream`)
    /// as `disposition` and `create_options` say ([`create::decide`]),
    /// with `granted_access` (what the caller was granted; data-writing
    /// access needs a writable file), `attributes` for a new or
    /// overwritten file and an optional security descriptor for a new
    /// one. Returns the handle, its information and the action taken.
    pub fn open(
        &self,
        path: &str,
        create_options: u32,
        granted_access: u32,
        disposition: u32,
        attributes: u32,
        security: Option<&[u8]>,
    ) -> NtResult<(Handle, FileInfo, Action)> {
        let p = NtPath::parse(path)?;
        create::check_delete_on_close(create_options, granted_access)?;
        let r = self.resolve(&p)?;
        // Stream names compare ignoring case too: use the stored one.
        let stream = match (&r.last, &p.stream) {
            (Some((_, a)), Some(s)) => {
                Some(self.stream_name(a.ino, s)?.unwrap_or_else(|| s.clone()))
            }
            (_, s) => s.clone(),
        };
        let existing = match (&r.last, &stream) {
            (None, _) => Existing::None,
            (Some((_, a)), None) if info::is_dir(a) => Existing::Dir,
            (Some(_), None) => Existing::File,
            (Some((_, a)), Some(s)) => match nt(self.vfs.stream(a.ino, s))? {
                Some(_) => Existing::File,
                None => Existing::None,
            },
        };
        let action = create::decide(
            disposition,
            create_options,
            existing,
            p.trailing_sep,
            stream.is_some(),
        )?;
        let writes = granted_access & access::DATA_WRITE != 0;
        let delete_on_close = create_options & options::DELETE_ON_CLOSE != 0;
        if !self.vfs.is_rw()
            && (granted_access & access::MODIFYING != 0 || !matches!(action, Action::Open))
        {
            return Err(NtStatus::MEDIA_WRITE_PROTECTED);
        }
        let (name, attr) = match action {
            Action::Open => {
                let (name, a) = r.last.clone().ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
                if writes && !info::is_dir(&a) && a.attributes & attrib::READONLY != 0 {
                    return Err(NtStatus::ACCESS_DENIED);
                }
                (name, a)
            }
            Action::Create { dir } => {
                if let Some(sd) = security {
                    // Refused before anything is made.
                    crate::nt::security::validate(sd)
                        .map_err(|_| NtStatus::INVALID_SECURITY_DESCR)?;
                }
                self.create(&p, &r, dir, attributes, security)?
            }
            Action::Overwrite | Action::Supersede => {
                let (name, a) = r.last.clone().ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
                if a.attributes & attrib::READONLY != 0 {
                    return Err(NtStatus::ACCESS_DENIED);
                }
                (name, a)
            }
        };
        let dir = stream.is_none() && info::is_dir(&attr);
        if delete_on_close {
            self.can_delete_attr(&attr, stream.is_some())?;
        }
        // Files get a vfs handle (an open file's data outlives its name).
        let fh = if dir || stream.is_some() {
            None
        } else {
            Some(nt(self.vfs.open_file(
                attr.ino,
                writes && self.vfs.is_rw(),
                false,
            ))?)
        };
        let h = Handle(self.next.fetch_add(1, Ordering::Relaxed));
        let mut opened_as = format!("{}\\{name}", r.parent_path);
        if let Some(s) = &stream {
            opened_as.push(':');
            opened_as.push_str(s);
        }
        self.opens.lock().insert(
            h.0,
            Open {
                ino: attr.ino,
                parent: r.parent,
                name,
                stream,
                opened_as,
                dir,
                fh,
                write: writes,
                delete_on_close,
            },
        );
        let info = match action {
            Action::Overwrite | Action::Supersede => {
                match self.overwrite(h, attributes, action == Action::Supersede) {
                    Ok(i) => i,
                    Err(e) => {
                        self.close(h);
                        return Err(e);
                    }
                }
            }
            _ => self.get_file_info(h)?,
        };
        Ok((h, info, action))
    }

    /// Make the new file, directory or stream of `p`, with `security`
    /// (validated by the caller) instead of the parent's descriptor.
    fn create(
        &self,
        p: &NtPath,
        r: &Resolved,
        dir: bool,
        attributes: u32,
        security: Option<&[u8]>,
    ) -> NtResult<(String, Attr)> {
        // What NTFS would store; the vfs gives new files ARCHIVE and new
        // directories DIRECTORY, the rest is set after.
        let want = attrib::for_create(attributes, dir && p.stream.is_none());
        let name = p.file_name().ok_or(NtStatus::OBJECT_NAME_COLLISION)?;
        let a = match &r.last {
            Some((stored, a)) => (stored.clone(), *a),
            None => {
                self.check_new_name(name)?;
                let cred = Cred::default();
                let mut a = match (dir, security) {
                    (true, None) => nt(self.vfs.mkdir(r.parent, name, 0o755, cred))?,
                    (true, Some(sd)) => nt(self
                        .vfs
                        .mkdir_with_security(r.parent, name, 0o755, cred, sd))?,
                    (false, sd) => {
                        let (a, fh) = match sd {
                            None => nt(self.vfs.create(r.parent, name, 0o644, cred))?,
                            Some(sd) => nt(self
                                .vfs
                                .create_with_security(r.parent, name, 0o644, cred, sd))?,
                        };
                        nt(self.vfs.release(fh))?;
                        a
                    }
                };
                if p.stream.is_none() && want != a.attributes & !attrib::NORMAL {
                    a = nt(self.vfs.set_attributes(a.ino, want))?;
                }
                (name.to_string(), a)
            }
        };
        if let Some(s) = &p.stream {
            nt(self.vfs.create_stream(a.1.ino, s))?;
        }
        Ok(a)
    }

    /// Truncate an open file (its named streams go too, as on NTFS) or
    /// stream, and apply the attributes of an overwrite (`supersede`:
    /// replace them).
    pub fn overwrite(&self, h: Handle, attributes: u32, supersede: bool) -> NtResult<FileInfo> {
        let (ino, stream) = self.with(h, |o| (o.ino, o.stream.clone()))?;
        if !self.vfs.is_rw() {
            return Err(NtStatus::MEDIA_WRITE_PROTECTED);
        }
        let a = nt(self.vfs.getattr(ino))?;
        match &stream {
            Some(s) => nt(self.vfs.set_stream_size(ino, s, 0))?,
            None => {
                if info::is_dir(&a) {
                    return Err(NtStatus::FILE_IS_A_DIRECTORY);
                }
                let want = attrib::on_overwrite(a.attributes, attributes, supersede);
                nt(self.vfs.setattr(
                    ino,
                    &SetAttr {
                        size: Some(0),
                        ..SetAttr::default()
                    },
                ))?;
                for s in nt(self.vfs.streams(ino))? {
                    nt(self.vfs.delete_stream(ino, &s.name))?;
                }
                nt(self.vfs.set_attributes(ino, want))?;
            }
        }
        self.get_file_info(h)
    }

    /// Run `f` on the open of `h` (INVALID_HANDLE if there is none).
    fn with<T>(&self, h: Handle, f: impl FnOnce(&Open) -> T) -> NtResult<T> {
        self.opens
            .lock()
            .get(&h.0)
            .map(f)
            .ok_or(NtStatus::INVALID_HANDLE)
    }

    /// Would deleting the object of `h` be allowed (WinFsp's CanDelete)?
    pub fn can_delete(&self, h: Handle) -> NtResult<()> {
        let (ino, stream) = self.with(h, |o| (o.ino, o.stream.is_some()))?;
        let a = nt(self.vfs.getattr(ino))?;
        self.can_delete_attr(&a, stream)
    }

    /// Mark the object of `h` for deletion, or unmark it
    /// (FileDispositionInformation). Marking checks [`Self::can_delete`].
    pub fn set_delete(&self, h: Handle, delete: bool) -> NtResult<()> {
        if delete {
            self.can_delete(h)?;
        }
        let mut opens = self.opens.lock();
        let o = opens.get_mut(&h.0).ok_or(NtStatus::INVALID_HANDLE)?;
        o.delete_on_close = delete;
        Ok(())
    }

    /// The handle's cleanup (the last user handle of it closed). The
    /// object is deleted when `flags` has [`cleanup::DELETE`] or the
    /// handle was opened or marked delete-on-close; while other handles
    /// of it are open the deletion waits for the last one (NT keeps the
    /// name until then).
    pub fn cleanup(&self, h: Handle, flags: u32) -> NtResult<()> {
        let (obj, parent, name, delete, dir) = {
            let mut opens = self.opens.lock();
            let o = opens.get_mut(&h.0).ok_or(NtStatus::INVALID_HANDLE)?;
            let delete = flags & cleanup::DELETE != 0 || o.delete_on_close;
            o.delete_on_close = false;
            (o.object(), o.parent, o.name.clone(), delete, o.dir)
        };
        if !delete {
            self.mark_modified(obj.0, flags);
        }
        let others = self
            .opens
            .lock()
            .iter()
            .any(|(k, o)| *k != h.0 && o.object() == obj);
        {
            let mut pending = self.pending_delete.lock();
            if delete && others {
                pending.insert(obj);
                return Ok(());
            }
            if !(delete || (!others && pending.remove(&obj))) {
                return Ok(());
            }
            pending.remove(&obj);
        }
        let r = match &obj.1 {
            Some(s) => self.vfs.delete_stream(obj.0, s),
            // A junction is a directory to NT but a link to the vfs.
            None if dir
                && self
                    .vfs
                    .getattr(obj.0)
                    .is_ok_and(|a| a.kind == FileKind::Directory) =>
            {
                self.vfs.rmdir(parent, &name)
            }
            None => self.vfs.unlink(parent, &name),
        };
        if let Err(e) = &r {
            log::warn!("NT delete of {name:?} (inode {}) failed: {e}", obj.0);
        }
        nt(r)
    }

    /// Close the handle (after its cleanup).
    pub fn close(&self, h: Handle) {
        let Some(o) = self.opens.lock().remove(&h.0) else {
            return;
        };
        if let Some(fh) = o.fh {
            if let Err(e) = self.vfs.release(fh) {
                log::warn!("closing inode {}: {e}", o.ino);
            }
        }
    }

    // ----- data ----------------------------------------------------------

    /// Read at `offset` into `buf`: the count, END_OF_FILE at or past the
    /// end.
    pub fn read(&self, h: Handle, offset: u64, buf: &mut [u8]) -> NtResult<usize> {
        let (ino, stream, dir) = self.with(h, |o| (o.ino, o.stream.clone(), o.dir))?;
        if dir {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let n = match &stream {
            Some(s) => nt(self.vfs.read_stream(ino, s, offset, buf))?,
            None => nt(self.vfs.read_into(ino, offset, buf))?,
        };
        if n == 0 && !buf.is_empty() {
            return Err(NtStatus::END_OF_FILE);
        }
        Ok(n)
    }

    /// Write `data` at `offset` (at the end when `to_end`); `constrained`
    /// (paging I/O) never extends the file. Returns the count written and
    /// the new information.
    pub fn write(
        &self,
        h: Handle,
        offset: u64,
        data: &[u8],
        to_end: bool,
        constrained: bool,
    ) -> NtResult<(usize, FileInfo)> {
        let (ino, stream, dir, write) =
            self.with(h, |o| (o.ino, o.stream.clone(), o.dir, o.write))?;
        if dir {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        if !write {
            return Err(NtStatus::ACCESS_DENIED);
        }
        let size = self.size_of(ino, stream.as_deref())?;
        let off = if to_end { size } else { offset };
        let len = if constrained {
            size.saturating_sub(off).min(data.len() as u64) as usize
        } else {
            data.len()
        };
        let data = &data[..len];
        if !data.is_empty() {
            match &stream {
                None => {
                    nt(self.vfs.write(ino, off, data))?;
                }
                Some(s) => {
                    nt(self.vfs.write_stream(ino, s, off, data))?;
                }
            }
        }
        Ok((len, self.get_file_info(h)?))
    }

    fn size_of(&self, ino: Ino, stream: Option<&str>) -> NtResult<u64> {
        match stream {
            None => Ok(FileInfo::data_size(&nt(self.vfs.getattr(ino))?)),
            Some(s) => Ok(nt(self.vfs.stream(ino, s))?
                .ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?
                .size),
        }
    }

    /// Set the end of file (`allocation`: the allocation size, which only
    /// truncates when below the end, as NTFS does).
    pub fn set_file_size(&self, h: Handle, size: u64, allocation: bool) -> NtResult<FileInfo> {
        let (ino, stream, dir) = self.with(h, |o| (o.ino, o.stream.clone(), o.dir))?;
        if dir {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let cur = self.size_of(ino, stream.as_deref())?;
        if (allocation && size >= cur) || size == cur {
            return self.get_file_info(h);
        }
        match &stream {
            None => {
                nt(self.vfs.setattr(
                    ino,
                    &SetAttr {
                        size: Some(size),
                        ..SetAttr::default()
                    },
                ))?;
            }
            Some(s) => nt(self.vfs.set_stream_size(ino, s, size))?,
        }
        self.get_file_info(h)
    }

    /// FileBasicInformation: attributes and the four times (0 or all-ones
    /// leave a value as it is). The change time is not kept in a WIM; it
    /// is passed on and the vfs decides.
    /// What NTFS does when the last writer of a handle lets go: WinFsp
    /// asks for it with cleanup flags (only for handles that modified the
    /// file, and without the times the program set itself through that
    /// handle, which WinFsp tracks). The archive bit tells backup tools the
    /// file changed; the times are "now". Failures are logged, not
    /// returned: cleanup cannot fail in NT.
    fn mark_modified(&self, ino: u64, flags: u32) {
        use cleanup::*;
        if flags & (SET_ARCHIVE_BIT | SET_LAST_ACCESS_TIME | SET_LAST_WRITE_TIME | SET_CHANGE_TIME)
            == 0
            || !self.vfs.is_rw()
        {
            return;
        }
        if flags & SET_ARCHIVE_BIT != 0 {
            match self.vfs.getattr(ino) {
                Ok(a) if !info::is_dir(&a) && a.attributes & attrib::ARCHIVE == 0 => {
                    let want = (a.attributes & !attrib::NORMAL) | attrib::ARCHIVE;
                    if let Err(e) = self.vfs.set_attributes(ino, want) {
                        log::warn!("cleanup: setting the archive bit of inode {ino}: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => log::warn!("cleanup: inode {ino}: {e}"),
            }
        }
        let now = crate::time::now_filetime();
        let at = |bit: u32| (flags & bit != 0).then_some(now);
        let times = NtTimes {
            creation: None,
            last_access: at(SET_LAST_ACCESS_TIME),
            last_write: at(SET_LAST_WRITE_TIME),
            change: at(SET_CHANGE_TIME),
        };
        if times != NtTimes::default() {
            if let Err(e) = self.vfs.set_times(ino, &times) {
                log::warn!("cleanup: setting the times of inode {ino}: {e}");
            }
        }
    }

    pub fn set_basic_info(
        &self,
        h: Handle,
        attributes: u32,
        creation_time: u64,
        last_access_time: u64,
        last_write_time: u64,
        change_time: u64,
    ) -> NtResult<FileInfo> {
        let ino = self.with(h, |o| o.ino)?;
        if !self.vfs.is_rw() {
            return Err(NtStatus::MEDIA_WRITE_PROTECTED);
        }
        if !KEEP_ATTRIBUTES.contains(&attributes) {
            let a = nt(self.vfs.getattr(ino))?;
            let want = attrib::set(a.attributes, attributes, info::is_dir(&a));
            if want != a.attributes & !attrib::NORMAL {
                nt(self.vfs.set_attributes(ino, want))?;
            }
        }
        let t = |ft: u64| (!KEEP_TIME.contains(&ft)).then_some(ft);
        let times = NtTimes {
            creation: t(creation_time),
            last_access: t(last_access_time),
            last_write: t(last_write_time),
            change: t(change_time),
        };
        if times != NtTimes::default() {
            nt(self.vfs.set_times(ino, &times))?;
        }
        self.get_file_info(h)
    }

    /// Replace the handle's file's security descriptor with `sd` (the
    /// whole self-relative descriptor; the adapter merges a partial
    /// SetSecurity into the current one first). A malformed one is
    /// INVALID_SECURITY_DESCR and changes nothing.
    pub fn set_security(&self, h: Handle, sd: &[u8]) -> NtResult<()> {
        let ino = self.with(h, |o| o.ino)?;
        if !self.vfs.is_rw() {
            return Err(NtStatus::MEDIA_WRITE_PROTECTED);
        }
        crate::nt::security::validate(sd).map_err(|_| NtStatus::INVALID_SECURITY_DESCR)?;
        nt(self.vfs.set_security(ino, sd))
    }

    // ----- reparse points ------------------------------------------------

    /// A create that makes the new file a reparse point in the same call
    /// (WinFsp's create with a reparse-point extra buffer): created as
    /// [`Self::open`] with CREATE, then given `buffer`; if that fails the
    /// new file goes again, so the create fails whole.
    pub fn create_reparse(
        &self,
        path: &str,
        create_options: u32,
        granted_access: u32,
        attributes: u32,
        security: Option<&[u8]>,
        buffer: &[u8],
    ) -> NtResult<(Handle, FileInfo)> {
        reparse_buffer(buffer)?;
        let (h, _, _) = self.open(
            path,
            create_options,
            granted_access,
            create::disposition::CREATE,
            attributes,
            security,
        )?;
        match self
            .set_reparse(h, buffer)
            .and_then(|_| self.get_file_info(h))
        {
            Ok(info) => Ok((h, info)),
            Err(e) => {
                if let Err(d) = self.cleanup(h, cleanup::DELETE) {
                    log::warn!("{path}: removing the half-made reparse point: {d:?}");
                }
                self.close(h);
                Err(e)
            }
        }
    }

    /// The handle's file's reparse point as a REPARSE_DATA_BUFFER (tag,
    /// data length, reserved, data): NOT_A_REPARSE_POINT when it is none.
    pub fn get_reparse(&self, h: Handle) -> NtResult<Vec<u8>> {
        let ino = self.with(h, |o| o.ino)?;
        let a = nt(self.vfs.getattr(ino))?;
        if a.attributes & attrib::REPARSE_POINT == 0 {
            return Err(NtStatus::NOT_A_REPARSE_POINT);
        }
        match self.vfs.getxattr(ino, NTFS_REPARSE) {
            Ok(v) => Ok(v),
            Err(VfsError::NoAttr) => Err(NtStatus::NOT_A_REPARSE_POINT),
            Err(e) => Err(from_vfs(&e)),
        }
    }

    /// FSCTL_SET_REPARSE_POINT with a REPARSE_DATA_BUFFER: the 8-byte
    /// header's length must match the data that follows.
    pub fn set_reparse(&self, h: Handle, buffer: &[u8]) -> NtResult<()> {
        let ino = self.with(h, |o| o.ino)?;
        if !self.vfs.is_rw() {
            return Err(NtStatus::MEDIA_WRITE_PROTECTED);
        }
        let (tag, data) = reparse_buffer(buffer)?;
        nt(self.vfs.set_reparse(ino, tag, data))
    }

    /// FSCTL_DELETE_REPARSE_POINT: the buffer names the tag to remove (a
    /// different tag is IO_REPARSE_TAG_MISMATCH on NTFS; here
    /// INVALID_PARAMETER) and carries no data.
    pub fn delete_reparse(&self, h: Handle, buffer: &[u8]) -> NtResult<()> {
        let ino = self.with(h, |o| o.ino)?;
        if !self.vfs.is_rw() {
            return Err(NtStatus::MEDIA_WRITE_PROTECTED);
        }
        let (tag, _) = reparse_buffer(buffer)?;
        match nt(self.vfs.reparse_tag(ino))? {
            None => Err(NtStatus::NOT_A_REPARSE_POINT),
            Some(t) if t != tag => Err(NtStatus::INVALID_PARAMETER),
            Some(_) => nt(self.vfs.delete_reparse(ino)),
        }
    }

    // ----- information ---------------------------------------------------

    pub fn get_file_info(&self, h: Handle) -> NtResult<FileInfo> {
        let (ino, stream) = self.with(h, |o| (o.ino, o.stream.clone()))?;
        let a = nt(self.vfs.getattr(ino))?;
        self.info_of(&a, stream.as_deref())
    }

    /// The security descriptor of the handle's file as stored (`None`:
    /// the image keeps none for it).
    pub fn get_security(&self, h: Handle) -> NtResult<Option<Vec<u8>>> {
        let ino = self.with(h, |o| o.ino)?;
        nt(self.vfs.security(ino))
    }

    /// The path the handle was opened by with every name as the image
    /// stores it (`\\Windows\\System32` for `\\WINDOWS\\system32`), the
    /// stream's too: Windows shows programs this name (the normalized
    /// name of an open), so a case-insensitive volume does not echo back
    /// the caller's spelling. As at the open: a later rename of a parent
    /// is not followed.
    pub fn normalized_name(&self, h: Handle) -> NtResult<String> {
        self.with(h, |o| o.opened_as.clone())
    }

    /// WinFsp's GetSecurityByName, asked before an open: the attributes
    /// (as shown) and the descriptor of `path`.
    pub fn get_security_by_name(&self, path: &str) -> NtResult<(u32, Option<Vec<u8>>)> {
        let p = NtPath::parse(path)?;
        let r = self.resolve(&p)?;
        let (_, a) = r.last.ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
        Ok((
            attrib::shown(a.attributes, info::is_dir(&a)),
            nt(self.vfs.security(a.ino))?,
        ))
    }

    /// The named data streams of the handle's file (FileStreamInformation
    /// lists them, with the unnamed one, as `:NAME:$DATA`): name and size.
    pub fn streams(&self, h: Handle) -> NtResult<Vec<(String, u64)>> {
        let ino = self.with(h, |o| o.ino)?;
        Ok(nt(self.vfs.streams(ino))?
            .into_iter()
            .map(|s| (s.name, s.size))
            .collect())
    }

    pub fn get_volume_info(&self) -> VolumeInfo {
        let s = self.vfs.statfs();
        VolumeInfo {
            total_size: s.blocks * s.bsize as u64,
            free_size: s.bfree * s.bsize as u64,
            label: format!("WIM image {}", self.vfs.image.index),
        }
    }

    /// The entries of the directory of `h` matching `pattern` (all when
    /// `None`), in NTFS collation order ([`upcase::collate`]), `.` and
    /// `..` first outside the root, resuming strictly after `marker`
    /// (which need not exist any more), at most `max`.
    pub fn read_directory(
        &self,
        h: Handle,
        pattern: Option<&str>,
        marker: Option<&str>,
        max: usize,
    ) -> NtResult<Vec<DirInfo>> {
        let (ino, dir) = self.with(h, |o| (o.ino, o.dir))?;
        if !dir {
            return Err(NtStatus::NOT_A_DIRECTORY);
        }
        let mut dots = Vec::new();
        let mut names = Vec::new();
        let mut off = 0;
        loop {
            let es = nt(self.vfs.readdir(ino, off, 1024))?;
            let Some(last) = es.last() else { break };
            off = last.next;
            for e in es {
                match e.name.as_str() {
                    "." | ".." if ino == ROOT_INO => {}
                    "." | ".." => dots.push((e.name, e.ino)),
                    _ => names.push((e.name, e.ino)),
                }
            }
        }
        names.sort_by(|a, b| upcase::collate(&a.0, &b.0));
        let skip_dots = match marker {
            None => 0,
            Some(".") => 1,
            Some(_) => dots.len(),
        };
        let start = match marker {
            Some(m) if m != "." && m != ".." => {
                names.partition_point(|(n, _)| upcase::collate(n, m).is_le())
            }
            _ => 0,
        };
        let mut out = Vec::new();
        for (name, e) in dots.iter().skip(skip_dots).chain(names[start..].iter()) {
            if out.len() >= max {
                break;
            }
            if !pattern.is_none_or(|p| pattern::matches(p, name)) {
                continue;
            }
            let a = nt(self.vfs.getattr(*e))?;
            out.push(DirInfo {
                name: name.clone(),
                info: self.info_of(&a, None)?,
            });
        }
        Ok(out)
    }

    // ----- names ---------------------------------------------------------

    /// Is directory `dir` `anc` or below it? Walks `..` up to the root.
    fn is_within(&self, mut dir: Ino, anc: Ino) -> NtResult<bool> {
        for _ in 0..4096 {
            if dir == anc {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = nt(self.vfs.lookup(dir, ".."))?.ino;
        }
        Ok(true)
    }

    /// Rename `path` to `new_path`, replacing an existing target only when
    /// `replace`, with NT's rules: names compare ignoring case, so a
    /// rename that changes only the case is allowed (and one onto itself
    /// does nothing); an existing target is OBJECT_NAME_COLLISION without
    /// `replace`; a directory is never replaced (ACCESS_DENIED), nor a file
    /// that is open. Open handles follow the rename.
    pub fn rename(&self, path: &str, new_path: &str, replace: bool) -> NtResult<()> {
        let (p, q) = (NtPath::parse(path)?, NtPath::parse(new_path)?);
        if p.stream.is_some() || q.stream.is_some() {
            return Err(NtStatus::NOT_IMPLEMENTED);
        }
        if p.is_root() || q.is_root() {
            return Err(NtStatus::ACCESS_DENIED);
        }
        let src = self.resolve(&p)?;
        let (src_name, src_attr) = src.last.ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
        let dst = self.resolve(&q)?;
        let new_name = q.file_name().ok_or(NtStatus::OBJECT_NAME_INVALID)?;
        if src_attr.kind == FileKind::Directory && self.is_within(dst.parent, src_attr.ino)? {
            // Checked first: a replace below drops the target before the
            // rename, which must then not fail.
            return Err(NtStatus::INVALID_PARAMETER);
        }
        match dst.last {
            Some((tname, _)) if dst.parent == src.parent && tname == src_name => {
                // The same entry: a change of case, or nothing.
                if new_name != src_name {
                    self.check_new_name(new_name)?;
                    nt(self.vfs.rename(
                        src.parent,
                        &src_name,
                        dst.parent,
                        new_name,
                        RenameMode::NoReplace,
                    ))?;
                }
            }
            Some((tname, tattr)) => {
                if !replace {
                    return Err(NtStatus::OBJECT_NAME_COLLISION);
                }
                if info::is_dir(&tattr) {
                    return Err(NtStatus::ACCESS_DENIED);
                }
                if self.opens.lock().values().any(|o| o.ino == tattr.ino) {
                    return Err(NtStatus::ACCESS_DENIED);
                }
                self.check_new_name(new_name)?;
                if tname == new_name
                    && tattr.ino != src_attr.ino
                    && src_attr.kind != FileKind::Directory
                {
                    nt(self.vfs.rename(
                        src.parent,
                        &src_name,
                        dst.parent,
                        new_name,
                        RenameMode::Replace,
                    ))?;
                } else {
                    // The target differs in case from the new name, is
                    // another link of the source, or is a file a directory
                    // replaces (the vfs's POSIX rename refuses that): drop
                    // it, then rename.
                    nt(self.vfs.unlink(dst.parent, &tname))?;
                    nt(self.vfs.rename(
                        src.parent,
                        &src_name,
                        dst.parent,
                        new_name,
                        RenameMode::NoReplace,
                    ))?;
                }
            }
            None => {
                self.check_new_name(new_name)?;
                nt(self.vfs.rename(
                    src.parent,
                    &src_name,
                    dst.parent,
                    new_name,
                    RenameMode::NoReplace,
                ))?;
            }
        }
        for o in self.opens.lock().values_mut() {
            if o.parent == src.parent && o.name == src_name {
                o.parent = dst.parent;
                o.name = new_name.to_string();
            }
        }
        Ok(())
    }
}

/// SECURITY_INFORMATION bits of a SetSecurity request.
pub mod security_info {
    pub const OWNER: u32 = 0x1;
    pub const GROUP: u32 = 0x2;
    pub const DACL: u32 = 0x4;
    pub const SACL: u32 = 0x8;
}

/// A SetSecurity request changes only the parts `info` names: the
/// self-relative descriptor made of those parts of `modification` and the
/// others of `current` (both validated; owner and group must end up
/// present). So the vfs stores whole descriptors, as the image does.
pub fn merge_security(current: &[u8], info: u32, modification: &[u8]) -> NtResult<Vec<u8>> {
    use crate::nt::security::validate;
    let bad = NtStatus::INVALID_SECURITY_DESCR;
    validate(current).map_err(|_| bad)?;
    let u16_at = |b: &[u8], at: usize| -> NtResult<usize> {
        Ok(u16::from_le_bytes(b.get(at..at + 2).ok_or(bad)?.try_into().map_err(|_| bad)?) as usize)
    };
    let u32_at = |b: &[u8], at: usize| -> NtResult<usize> {
        Ok(u32::from_le_bytes(b.get(at..at + 4).ok_or(bad)?.try_into().map_err(|_| bad)?) as usize)
    };
    // (offset field, control bits that go with the part, is a SID)
    let parts: [(u32, usize, u16, bool); 4] = [
        (security_info::OWNER, 4, 0x0001, true),
        (security_info::GROUP, 8, 0x0002, true),
        (
            security_info::SACL,
            12,
            0x0010 | 0x0020 | 0x0800 | 0x2000,
            false,
        ),
        (
            security_info::DACL,
            16,
            0x0004 | 0x0008 | 0x0400 | 0x1000,
            false,
        ),
    ];
    let mut control = crate::nt::security::SE_SELF_RELATIVE;
    let mut body = Vec::new();
    let mut offsets = [0u32; 4];
    for (i, (bit, field, bits, sid)) in parts.into_iter().enumerate() {
        let src = if info & bit != 0 {
            modification
        } else {
            current
        };
        let ctl = u16_at(src, 2)? as u16;
        let off = u32_at(src, field)?;
        // An ACL is there only with its PRESENT bit; a SID when non-zero.
        let present = if sid {
            off != 0
        } else {
            ctl & bits & 0x0014 != 0
        };
        control |= ctl & bits;
        if !present {
            control &= !(bits & 0x0014);
            continue;
        }
        if off == 0 {
            // A present null ACL: kept as present with no bytes.
            continue;
        }
        let len = if sid {
            8 + 4 * *src.get(off + 1).ok_or(bad)? as usize
        } else {
            u16_at(src, off + 2)?
        };
        let part = src.get(off..off + len).ok_or(bad)?;
        offsets[i] = (20 + body.len()) as u32;
        body.extend_from_slice(part);
    }
    let mut out = vec![1u8, 0];
    out.extend_from_slice(&control.to_le_bytes());
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.extend_from_slice(&body);
    validate(&out).map_err(|_| bad)?;
    Ok(out)
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    /// owner S-1-5-32-544, group S-1-5-18, DACL with one ACE of `mask`.
    fn sd(owner_rid: u32, mask: u32) -> Vec<u8> {
        let sid = |subs: &[u32]| {
            let mut v = vec![1u8, subs.len() as u8, 0, 0, 0, 0, 0, 5];
            for s in subs {
                v.extend_from_slice(&s.to_le_bytes());
            }
            v
        };
        let owner = sid(&[32, owner_rid]);
        let group = sid(&[18]);
        let everyone = vec![1u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        let mut ace = vec![0u8, 0];
        ace.extend_from_slice(&((8 + everyone.len()) as u16).to_le_bytes());
        ace.extend_from_slice(&mask.to_le_bytes());
        ace.extend_from_slice(&everyone);
        let mut acl = vec![2u8, 0];
        acl.extend_from_slice(&((8 + ace.len()) as u16).to_le_bytes());
        acl.extend_from_slice(&[1, 0, 0, 0]);
        acl.extend_from_slice(&ace);
        let mut out = vec![1u8, 0];
        out.extend_from_slice(&(0x8004u16).to_le_bytes());
        let o = 20u32;
        let g = o + owner.len() as u32;
        let d = g + group.len() as u32;
        for v in [o, g, 0, d] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&owner);
        out.extend_from_slice(&group);
        out.extend_from_slice(&acl);
        crate::nt::security::validate(&out).unwrap();
        out
    }

    #[test]
    fn only_the_named_parts_change() {
        let cur = sd(544, 0x0012_0089);
        let m = sd(545, 0x001f_01ff);
        assert_eq!(merge_security(&cur, 0, &m).unwrap(), cur);
        let all = security_info::OWNER | security_info::GROUP | security_info::DACL;
        assert_eq!(merge_security(&cur, all, &m).unwrap(), m);
        // The DACL from `m`, the owner kept: the owner RID bytes of `cur`
        // and the ACE mask of `m`.
        let d = merge_security(&cur, security_info::DACL, &m).unwrap();
        assert_eq!(d.len(), cur.len());
        assert_eq!(&d[..56], &cur[..56]);
        assert_eq!(&d[56..], &m[56..]);
        let o = merge_security(&cur, security_info::OWNER, &m).unwrap();
        assert_eq!(&o[20..36], &m[20..36]);
        assert_eq!(&o[36..], &cur[36..]);
        assert_eq!(
            merge_security(&cur, security_info::DACL, &m[..30]),
            Err(NtStatus::INVALID_SECURITY_DESCR)
        );
    }
}
