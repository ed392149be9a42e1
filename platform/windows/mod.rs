//! WinFsp adapter (winfsp 0.13): a thin translation between WinFsp's
//! callbacks and the NT layer [`crate::ntvfs`]. Each callback turns
//! WinFsp's arguments (UTF-16 paths, raw buffers) into the NT layer's and
//! copies the answer back; NT semantics (case-insensitive lookup, create
//! dispositions, delete-on-close, rename rules, directory markers) live in
//! the NT layer, and this adapter's own choices (the volume, fitting a
//! security descriptor into WinFsp's first query, stream names) in
//! [`crate::platform::winfsp_rules`], all tested on Linux.
//!
//! Why winfsp (GPL-3.0, like wimfs) rather than winfsp_wrs (MIT): it wraps
//! the whole user-mode interface (security by name, streams, reparse
//! points, directory buffers) behind a safe trait and type-checks from
//! Linux with pre-generated bindings; the license is no obstacle here.
//!
//! The host is not `Send` (it holds WinFsp's raw file system pointer), so
//! it lives on its own thread from creation to unmount; the session talks
//! to that thread through a channel.

use crate::nt::create::disposition;
use crate::nt::NtStatus;
use crate::ntvfs::{self, Handle, NtVfs};
use crate::platform::winfsp_rules::{self, SecurityFit};
use crate::session::mountpoint::{self, MountPointRule, Target};
use crate::session::{Adapter, MountIdentity, MountOptions, MountedFs, Unmount};
use crate::vfs::Vfs;
use std::ffi::c_void;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use winfsp::filesystem::{
    DirInfo, DirMarker, FileInfo, FileSecurity, FileSystemContext, ModificationDescriptor,
    OpenFileInfo, StreamInfo, VolumeInfo, WideNameInfo,
};
use winfsp::host::{FileSystemHost, FineGuard, VolumeParams};
use winfsp::{FspError, U16CStr};

/// The type `wimfs mounts` and the registry give WinFsp mounts.
pub const FSTYPE: &str = "wimfs-winfsp";

/// Entries asked of the NT layer per directory page.
const DIR_BATCH: usize = 128;

fn status(s: NtStatus) -> FspError {
    FspError::NTSTATUS(s.as_i32())
}

fn path_of(name: &U16CStr) -> String {
    name.to_string_lossy()
}

fn fill(dst: &mut FileInfo, src: &ntvfs::FileInfo) {
    dst.file_attributes = src.attributes;
    dst.reparse_tag = src.reparse_tag;
    dst.allocation_size = src.allocation_size;
    dst.file_size = src.file_size;
    dst.creation_time = src.creation_time;
    dst.last_access_time = src.last_access_time;
    dst.last_write_time = src.last_write_time;
    dst.change_time = src.change_time;
    dst.index_number = src.index_number;
    // WinFsp documents the field as unimplemented, to be left 0.
    dst.hard_links = 0;
    dst.ea_size = 0;
}

/// A WinFsp error as an I/O error, with its NTSTATUS.
fn io_err(what: &str, e: FspError) -> io::Error {
    io::Error::other(format!("{what}: NTSTATUS {:#010x}", e.to_ntstatus() as u32))
}

/// The file system WinFsp calls into.
struct Context {
    nt: NtVfs,
    /// Told when WinFsp's dispatcher stops on its own (the volume was
    /// taken away), so the session ends.
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl Context {
    /// Report the opened path as the image stores it (WinFsp's normalized
    /// name), when it fits WinFsp's buffer.
    fn normalize(&self, h: Handle, file_info: &mut OpenFileInfo) {
        if let Ok(name) = self.nt.normalized_name(h) {
            if let Some(u) = winfsp_rules::normalized_name(&name, file_info.normalized_name_size())
            {
                file_info.set_normalized_name(&u, None);
            }
        }
    }
}

impl FileSystemContext for Context {
    type FileContext = Handle;

    fn get_security_by_name(
        &self,
        file_name: &U16CStr,
        security_descriptor: Option<&mut [c_void]>,
        _reparse_point_resolver: impl FnOnce(&U16CStr) -> Option<FileSecurity>,
    ) -> winfsp::Result<FileSecurity> {
        let path = path_of(file_name);
        let (attributes, sd) = self.nt.get_security_by_name(&path).map_err(status)?;
        let sd = sd.unwrap_or_default();
        let size = match security_descriptor {
            None => sd.len(),
            Some(buf) => match winfsp_rules::fit_security(&sd, buf.len()) {
                SecurityFit::Whole => crate::sys::copy_to_void(buf, &sd),
                SecurityFit::WithoutSacl(t) => crate::sys::copy_to_void(buf, &t),
                SecurityFit::TooLarge { needed } => {
                    log::warn!(
                        "{path}: its security descriptor ({needed} bytes without the SACL) does \
                         not fit WinFsp's first query ({} bytes); access denied",
                        buf.len()
                    );
                    return Err(status(NtStatus::ACCESS_DENIED));
                }
            },
        };
        Ok(FileSecurity {
            reparse: false,
            sz_security_descriptor: size as u64,
            attributes,
        })
    }

    fn open(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        granted_access: u32,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Handle> {
        let (h, info, _) = self
            .nt
            .open(
                &path_of(file_name),
                winfsp_rules::options_only(create_options),
                granted_access,
                disposition::OPEN,
                0,
                None,
            )
            .map_err(status)?;
        fill(file_info.as_mut(), &info);
        self.normalize(h, file_info);
        Ok(h)
    }

    fn close(&self, context: Handle) {
        self.nt.close(context);
    }

    fn create(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        granted_access: u32,
        file_attributes: u32,
        security_descriptor: Option<&[c_void]>,
        _allocation_size: u64,
        extra_buffer: Option<&[u8]>,
        extra_buffer_is_reparse_point: bool,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Handle> {
        if let (Some(buf), true) = (extra_buffer, extra_buffer_is_reparse_point) {
            let (h, info) = self
                .nt
                .create_reparse(
                    &path_of(file_name),
                    winfsp_rules::options_only(create_options),
                    granted_access,
                    file_attributes,
                    security_descriptor.map(crate::sys::void_bytes),
                    buf,
                )
                .map_err(status)?;
            fill(file_info.as_mut(), &info);
            self.normalize(h, file_info);
            return Ok(h);
        }
        let (h, info, _) = self
            .nt
            .open(
                &path_of(file_name),
                winfsp_rules::options_only(create_options),
                granted_access,
                disposition::CREATE,
                file_attributes,
                security_descriptor.map(crate::sys::void_bytes),
            )
            .map_err(status)?;
        fill(file_info.as_mut(), &info);
        self.normalize(h, file_info);
        Ok(h)
    }

    fn cleanup(&self, context: &Handle, _file_name: Option<&U16CStr>, flags: u32) {
        if let Err(e) = self.nt.cleanup(*context, flags) {
            log::warn!("cleanup of handle {}: {e}", context.0);
        }
    }

    fn flush(&self, context: Option<&Handle>, file_info: &mut FileInfo) -> winfsp::Result<()> {
        if let Some(h) = context {
            fill(file_info, &self.nt.get_file_info(*h).map_err(status)?);
        }
        Ok(())
    }

    fn get_file_info(&self, context: &Handle, file_info: &mut FileInfo) -> winfsp::Result<()> {
        fill(file_info, &self.nt.get_file_info(*context).map_err(status)?);
        Ok(())
    }

    fn get_security(
        &self,
        context: &Handle,
        security_descriptor: Option<&mut [c_void]>,
    ) -> winfsp::Result<u64> {
        let sd = self
            .nt
            .get_security(*context)
            .map_err(status)?
            .unwrap_or_default();
        match security_descriptor {
            // This query's buffer is WinFsp's whole response buffer, far
            // larger than a descriptor: too small only for a damaged one.
            Some(buf) if buf.len() < sd.len() => Err(status(NtStatus::BUFFER_OVERFLOW)),
            Some(buf) => Ok(crate::sys::copy_to_void(buf, &sd) as u64),
            None => Ok(sd.len() as u64),
        }
    }

    fn set_security(
        &self,
        context: &Handle,
        security_information: u32,
        modification_descriptor: ModificationDescriptor,
    ) -> winfsp::Result<()> {
        let m = crate::sys::modification_bytes(&modification_descriptor)
            .ok_or(status(NtStatus::INVALID_SECURITY_DESCR))?;
        let cur = self
            .nt
            .get_security(*context)
            .map_err(status)?
            // A file the image keeps no descriptor for takes the whole
            // new one (which must then be complete).
            .unwrap_or_else(|| m.clone());
        let sd = ntvfs::merge_security(&cur, security_information, &m).map_err(status)?;
        self.nt.set_security(*context, &sd).map_err(status)
    }

    fn get_reparse_point(
        &self,
        context: &Handle,
        _file_name: &U16CStr,
        buffer: &mut [u8],
    ) -> winfsp::Result<u64> {
        let r = self.nt.get_reparse(*context).map_err(status)?;
        let dst = buffer
            .get_mut(..r.len())
            .ok_or(status(NtStatus::BUFFER_TOO_SMALL))?;
        dst.copy_from_slice(&r);
        Ok(r.len() as u64)
    }

    fn set_reparse_point(
        &self,
        context: &Handle,
        _file_name: &U16CStr,
        buffer: &[u8],
    ) -> winfsp::Result<()> {
        self.nt.set_reparse(*context, buffer).map_err(status)
    }

    fn delete_reparse_point(
        &self,
        context: &Handle,
        _file_name: &U16CStr,
        buffer: &[u8],
    ) -> winfsp::Result<()> {
        self.nt.delete_reparse(*context, buffer).map_err(status)
    }

    fn overwrite(
        &self,
        context: &Handle,
        file_attributes: u32,
        replace_file_attributes: bool,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self
            .nt
            .overwrite(*context, file_attributes, replace_file_attributes)
            .map_err(status)?;
        fill(file_info, &info);
        Ok(())
    }

    fn read_directory(
        &self,
        context: &Handle,
        pattern: Option<&U16CStr>,
        marker: DirMarker,
        buffer: &mut [u8],
    ) -> winfsp::Result<u32> {
        let pattern = pattern.map(path_of);
        let mut after = marker.inner().map(String::from_utf16_lossy);
        let mut cursor = 0u32;
        loop {
            let page = self
                .nt
                .read_directory(*context, pattern.as_deref(), after.as_deref(), DIR_BATCH)
                .map_err(status)?;
            for e in &page {
                let mut d: DirInfo = DirInfo::new();
                if d.set_name(&e.name).is_err() {
                    // Longer than Windows allows (255 UTF-16 units): not
                    // listable here, the rest of the directory still is.
                    log::warn!("{:?}: name too long to list on Windows", e.name);
                    continue;
                }
                fill(d.file_info_mut(), &e.info);
                if !d.append_to_buffer(buffer, &mut cursor) {
                    // Full: WinFsp asks again after the last entry given.
                    return Ok(cursor);
                }
            }
            if page.len() < DIR_BATCH {
                DirInfo::<255>::finalize_buffer(buffer, &mut cursor);
                return Ok(cursor);
            }
            after = page.last().map(|e| e.name.clone());
        }
    }

    fn rename(
        &self,
        _context: &Handle,
        file_name: &U16CStr,
        new_file_name: &U16CStr,
        replace_if_exists: bool,
    ) -> winfsp::Result<()> {
        self.nt
            .rename(
                &path_of(file_name),
                &path_of(new_file_name),
                replace_if_exists,
            )
            .map_err(status)
    }

    fn set_basic_info(
        &self,
        context: &Handle,
        file_attributes: u32,
        creation_time: u64,
        last_access_time: u64,
        last_write_time: u64,
        last_change_time: u64,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self
            .nt
            .set_basic_info(
                *context,
                file_attributes,
                creation_time,
                last_access_time,
                last_write_time,
                last_change_time,
            )
            .map_err(status)?;
        fill(file_info, &info);
        Ok(())
    }

    fn set_delete(
        &self,
        context: &Handle,
        _file_name: &U16CStr,
        delete_file: bool,
    ) -> winfsp::Result<()> {
        self.nt.set_delete(*context, delete_file).map_err(status)
    }

    fn set_file_size(
        &self,
        context: &Handle,
        new_size: u64,
        set_allocation_size: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self
            .nt
            .set_file_size(*context, new_size, set_allocation_size)
            .map_err(status)?;
        fill(file_info, &info);
        Ok(())
    }

    fn read(&self, context: &Handle, buffer: &mut [u8], offset: u64) -> winfsp::Result<u32> {
        let n = self.nt.read(*context, offset, buffer).map_err(status)?;
        Ok(n as u32)
    }

    fn write(
        &self,
        context: &Handle,
        buffer: &[u8],
        offset: u64,
        write_to_eof: bool,
        constrained_io: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<u32> {
        let (n, info) = self
            .nt
            .write(*context, offset, buffer, write_to_eof, constrained_io)
            .map_err(status)?;
        fill(file_info, &info);
        Ok(n as u32)
    }

    fn get_volume_info(&self, out_volume_info: &mut VolumeInfo) -> winfsp::Result<()> {
        let v = self.nt.get_volume_info();
        out_volume_info.total_size = v.total_size;
        out_volume_info.free_size = v.free_size;
        out_volume_info.set_volume_label(&v.label);
        Ok(())
    }

    fn get_stream_info(&self, context: &Handle, buffer: &mut [u8]) -> winfsp::Result<u32> {
        let info = self.nt.get_file_info(*context).map_err(status)?;
        let named = self.nt.streams(*context).map_err(status)?;
        let is_dir = info.attributes & crate::nt::attrib::DIRECTORY != 0;
        let mut cursor = 0u32;
        for (name, size) in winfsp_rules::stream_entries(is_dir, info.file_size, &named) {
            let mut s: StreamInfo = StreamInfo::new();
            s.set_name(&name)?;
            s.stream_size = size;
            s.stream_alloc_size = size.div_ceil(ntvfs::CLUSTER) * ntvfs::CLUSTER;
            if !s.append_to_buffer(buffer, &mut cursor) {
                return Ok(cursor);
            }
        }
        StreamInfo::<255>::finalize_buffer(buffer, &mut cursor);
        Ok(cursor)
    }

    fn dispatcher_stopped(&self, normally: bool) {
        if !normally {
            log::warn!("WinFsp stopped serving the volume");
        }
        if let Ok(mut s) = self.stop.lock() {
            if let Some(tx) = s.take() {
                let _ = tx.send(());
            }
        }
    }
}

/// The volume parameters of [`winfsp_rules::volume`].
fn volume_params(rw: bool) -> VolumeParams {
    let c = winfsp_rules::volume(rw);
    let mut p = VolumeParams::new();
    p.sector_size(c.sector_size)
        .sectors_per_allocation_unit(c.sectors_per_allocation_unit)
        .max_component_length(c.max_component_length)
        .case_sensitive_search(c.case_sensitive_search)
        .case_preserved_names(c.case_preserved_names)
        .unicode_on_disk(c.unicode_on_disk)
        .persistent_acls(c.persistent_acls)
        .reparse_points(c.reparse_points)
        .reparse_points_access_check(c.reparse_points_access_check)
        .named_streams(c.named_streams)
        .read_only_volume(c.read_only_volume)
        .pass_query_directory_pattern(c.pass_query_directory_pattern)
        .post_cleanup_when_modified_only(c.post_cleanup_when_modified_only)
        .file_info_timeout(c.info_timeout_ms)
        .dir_info_timeout(c.info_timeout_ms)
        .volume_info_timeout(c.info_timeout_ms)
        .security_timeout(c.info_timeout_ms)
        .stream_info_timeout(c.info_timeout_ms)
        .filesystem_name(c.filesystem_name);
    p
}

/// State shared by the host thread and the session.
struct Shared {
    /// Ends the host thread's wait: unmount.
    stop: Mutex<Option<mpsc::Sender<()>>>,
    /// The volume is gone (the host thread finished).
    done: AtomicBool,
}

/// A live WinFsp mount.
pub struct Mounted {
    shared: Arc<Shared>,
    ident: MountIdentity,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The empty folder removed to mount there (put back by the host
    /// thread at unmount, by the registry if this process is killed).
    replaced: Option<PathBuf>,
}

struct Unmounter(Arc<Shared>);

impl Unmount for Unmounter {
    fn unmount(&self) -> io::Result<bool> {
        let tx = self.0.stop.lock().ok().and_then(|mut s| s.take());
        Ok(tx.is_some_and(|tx| tx.send(()).is_ok()))
    }

    /// A WinFsp volume is this process's and nobody else's: it is ours
    /// until the host thread has taken it down.
    fn still_ours(&self) -> bool {
        !self.0.done.load(Ordering::SeqCst)
    }
}

impl MountedFs for Mounted {
    fn unmounter(&self) -> Arc<dyn Unmount> {
        Arc::new(Unmounter(self.shared.clone()))
    }

    fn identity(&self) -> MountIdentity {
        self.ident.clone()
    }

    fn replaced_folder(&self) -> Option<PathBuf> {
        self.replaced.clone()
    }

    fn run(mut self: Box<Self>) -> io::Result<()> {
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| io::Error::other("the WinFsp host thread panicked"))?;
        }
        Ok(())
    }
}

/// What the host thread starts from.
struct HostStart {
    nt: NtVfs,
    rw: bool,
    target: Target,
    threads: usize,
    /// Whether the volume is up (or why not).
    ready: mpsc::Sender<io::Result<()>>,
    /// Unmount when something arrives (or every sender is gone).
    stop_rx: mpsc::Receiver<()>,
    /// For the dispatcher's own stop.
    stop_tx: mpsc::Sender<()>,
    shared: Arc<Shared>,
}

/// Create, mount and start the host on its own thread; it stays there
/// until told to stop, then unmounts and puts back a folder it removed.
fn host_thread(h: HostStart) {
    let HostStart {
        nt,
        rw,
        target,
        threads,
        ready,
        stop_rx,
        stop_tx,
        shared,
    } = h;
    let ctx = Context {
        nt,
        stop: Mutex::new(Some(stop_tx)),
    };
    let mp = target.mount_point();
    let started = (|| -> io::Result<FileSystemHost<Context, FineGuard>> {
        let mut host: FileSystemHost<Context, FineGuard> =
            FileSystemHost::new(volume_params(rw), ctx)
                .map_err(|e| io_err("cannot create the WinFsp file system", e.into()))?;
        host.mount(mp.as_os_str())
            .map_err(|e| io_err(&format!("cannot mount at {}", mp.display()), e.into()))?;
        if let Err(e) = host.start_with_threads(threads as u32) {
            host.unmount();
            return Err(io_err("cannot start the WinFsp dispatcher", e.into()));
        }
        Ok(host)
    })();
    let restore = || {
        if let Target::Folder {
            path,
            was_empty_dir: true,
        } = &target
        {
            if let Err(e) = std::fs::create_dir(path) {
                log::warn!("cannot put back the empty folder {}: {e}", path.display());
            }
        }
    };
    let mut host = match started {
        Ok(h) => {
            let _ = ready.send(Ok(()));
            h
        }
        Err(e) => {
            restore();
            shared.done.store(true, Ordering::SeqCst);
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = stop_rx.recv();
    host.stop();
    host.unmount();
    drop(host);
    restore();
    shared.done.store(true, Ordering::SeqCst);
}

/// The WinFsp adapter as a mount session sees it.
pub struct WinFsp;

impl Adapter for WinFsp {
    fn fstype(&self) -> &str {
        FSTYPE
    }

    fn check_available(&self) -> Result<(), String> {
        winfsp::winfsp_init().map(|_| ()).map_err(|_| {
            "WinFsp is not installed (winfsp-x64.dll cannot be loaded): install it from \
             https://winfsp.dev/rel/"
                .to_string()
        })
    }

    fn mount(
        &self,
        vfs: Arc<Vfs>,
        dir: &Path,
        opts: &MountOptions,
    ) -> io::Result<Box<dyn MountedFs>> {
        self.check_available().map_err(io::Error::other)?;
        let target = mountpoint::plan(dir).map_err(io::Error::other)?;
        let replaced = match &target {
            Target::Folder {
                path,
                was_empty_dir: true,
            } => {
                // WinFsp creates the mount folder itself.
                std::fs::remove_dir(path)?;
                Some(path.clone())
            }
            _ => None,
        };
        let rw = vfs.is_rw();
        let nt = NtVfs::new(vfs);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            stop: Mutex::new(Some(stop_tx.clone())),
            done: AtomicBool::new(false),
        });
        let pid = std::process::id();
        let ident = MountIdentity {
            mount_point: target.mount_point(),
            mount_id: u64::from(pid),
            dev: (0, pid),
        };
        let threads = opts.threads;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wimfs-winfsp".into())
            .spawn(move || {
                host_thread(HostStart {
                    nt,
                    rw,
                    target,
                    threads,
                    ready: ready_tx,
                    stop_rx,
                    stop_tx,
                    shared: sh,
                })
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Box::new(Mounted {
                shared,
                ident,
                thread: Some(thread),
                replaced,
            })),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(io::Error::other("the WinFsp host thread ended early")),
        }
    }

    fn mount_error_hint(&self, e: &io::Error) -> &'static str {
        // Setting the mount point is what fails when the drive letter or
        // folder is taken; other failures say enough themselves.
        if e.to_string().starts_with("cannot mount at") {
            " (is the drive letter or folder already in use?)"
        } else {
            ""
        }
    }

    /// Only the daemon can take its volume down: it is asked over its
    /// control pipe (a read-write mount after `exit` said what to do with
    /// the changes); a read-only daemon without one (it could not create
    /// it) has nothing to keep and is ended.
    fn unmount_path(&self, dir: &Path, _lazy: bool) -> io::Result<()> {
        use crate::session::control::{self, Request};
        let m = crate::session::registry::live_mounts()
            .into_iter()
            .find(|m| Path::new(&m.mountpoint) == dir)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no wimfs daemon of yours serves {}", dir.display()),
                )
            })?;
        match &m.socket {
            Some(sock) => match control::request(Path::new(sock), &Request::unmount()) {
                Ok(r) if r.ok => Ok(()),
                Ok(r) => Err(io::Error::other(
                    r.error.unwrap_or_else(|| "the daemon refused".into()),
                )),
                // The daemon may end before its answer is read.
                Err(crate::session::SessionError::NoAnswer(_)) => Ok(()),
                Err(e) => Err(io::Error::other(crate::session::error_text(&e))),
            },
            None => crate::sys::terminate_process(m.pid),
        }
    }

    /// WinFsp volumes are in no mount table: the mount at `dir` is the one
    /// a live daemon of this user's recorded there.
    fn mount_at(&self, dir: &Path) -> Option<crate::sys::MountEntry> {
        let dir = PathBuf::from(dir);
        crate::session::registry::live_mounts()
            .into_iter()
            .find(|m| Path::new(&m.mountpoint) == dir)
            .map(|m| crate::sys::MountEntry {
                mount_id: u64::from(m.pid),
                dev: (0, m.pid),
                mount_point: dir.clone(),
                fstype: FSTYPE.into(),
                source: crate::session::spec::fsname(Path::new(&m.wim), m.image),
            })
    }

    fn unmount_through_daemon(&self) -> bool {
        true
    }

    fn mount_point_rule(&self) -> MountPointRule {
        MountPointRule::DriveOrNewFolder
    }
}
