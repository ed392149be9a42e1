//! `capture` and `append`: a directory tree scanned by [`crate::capture`]
//! written as an image, into a new WIM (a temporary file beside it, renamed
//! into place, so a failed capture leaves whatever was there) or appended
//! to an existing one (only the blobs it lacks are stored; the old header
//! stays valid until the new one lands).

use super::add_image::add_new_image;
use super::rebuild::{create_temp, new_guid};
use super::writer::{Format, WimWriter};
use super::{Phase, WimLock};
use crate::capture::{CaptureOptions, Captured};
use crate::error::{Error, Result};
use crate::newimage::Content;
use crate::wim::header::{flags, Compression};
use crate::wim::{Sha1, ZERO_HASH};
use rayon::prelude::*;
use sha1::Digest;
use std::path::Path;

pub use super::SOLID_CHUNK;
/// Chunk size of XPRESS and LZX resources: WIMGAPI's default (other sizes
/// in wimlib-made images have broken Windows Setup).
pub const DEFAULT_CHUNK: u32 = 32 << 10;

/// What to make of the captured tree.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    /// Image name (default: the directory's name).
    pub name: Option<String>,
    pub description: Option<String>,
    /// `<FLAGS>` of the image's XML (the edition ID, e.g. "Professional").
    pub flags: Option<String>,
    /// Codec of a new WIM (an append uses the WIM's own).
    pub compression: Compression,
    /// Chunk size of a new WIM (default [`DEFAULT_CHUNK`], or
    /// [`SOLID_CHUNK`] for solid).
    pub chunk_size: Option<u32>,
    /// LZMS solid resources, like an ESD file.
    pub solid: bool,
    /// Make the image the one the WIM boots.
    pub boot: bool,
    /// Write an integrity table.
    pub check: bool,
    pub options: CaptureOptions,
}

impl Default for CaptureSpec {
    fn default() -> Self {
        CaptureSpec {
            name: None,
            description: None,
            flags: None,
            compression: Compression::Lzx,
            chunk_size: None,
            solid: false,
            boot: false,
            check: false,
            options: CaptureOptions::default(),
        }
    }
}

/// What a capture did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CaptureReport {
    pub image: u32,
    pub name: String,
    pub dirs: u64,
    pub files: u64,
    /// Bytes of file data captured.
    pub bytes: u64,
    /// Size of the WIM afterwards.
    pub file_size: u64,
    /// Bytes the WIM grew by.
    pub bytes_added: u64,
    /// Paths left out (special files without UNIX data).
    pub skipped: Vec<String>,
}

/// The chunk size: given, or the default of the format; checked to be a
/// power of two the codec can use.
fn chunk_size(spec: &CaptureSpec) -> Result<u32> {
    let codec = if spec.solid {
        Compression::Lzms
    } else {
        spec.compression
    };
    let cs = spec.chunk_size.unwrap_or(match codec {
        _ if spec.solid => SOLID_CHUNK,
        // wimlib's LZMS default for non-solid resources.
        Compression::Lzms => 128 << 10,
        _ => DEFAULT_CHUNK,
    });
    // The sizes each codec's window allows.
    let (min, max) = match codec {
        Compression::Lzms => (32 << 10, 1 << 30),
        Compression::Lzx => (32 << 10, 2 << 20),
        Compression::Xpress => (4 << 10, 64 << 10),
        Compression::None => (4 << 10, 1 << 30),
    };
    if !cs.is_power_of_two() || !(min..=max).contains(&cs) {
        return Err(Error::Invalid(format!(
            "chunk size {cs}: it must be a power of two from {min} to {max} for this compression"
        )));
    }
    Ok(cs)
}

fn image_name(dir: &Path, spec: &CaptureSpec) -> String {
    spec.name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "Image".into())
    })
}

/// Write the scanned tree into `w` as a new image; set its flags and boot
/// index.
fn write_image(
    w: &mut WimWriter,
    cap: Captured,
    name: &str,
    spec: &CaptureSpec,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> Result<u32> {
    // Files the configuration wants uncompressed go first, raw: the
    // image's own store then finds them present.
    if !cap.uncompressed.is_empty() {
        let hashed: Vec<(Sha1, &dyn Content)> = cap
            .uncompressed
            .par_iter()
            .map(|c| Ok((hash(c.as_ref())?, c.as_ref())))
            .collect::<Result<_>>()?;
        w.store_blobs_raw(&hashed, &|n| progress(Phase::Writing, n))?;
    }
    let index = add_new_image(w, cap.image, name, spec.description.as_deref(), progress)?;
    if let Some(f) = &spec.flags {
        w.update_image_xml(index, &mut |e| e.set_child_text("FLAGS", f));
    }
    if spec.boot {
        w.set_boot_index(index);
    }
    // Absolute links into the tree were made relative to the image root.
    w.add_header_flags(flags::RP_FIX);
    Ok(index)
}

fn hash(c: &dyn Content) -> Result<Sha1> {
    let size = c.len();
    if size == 0 {
        return Ok(ZERO_HASH);
    }
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; (4u64 << 20).min(size) as usize];
    let mut p = 0;
    while p < size {
        let n = ((size - p) as usize).min(buf.len());
        c.read_at(p, &mut buf[..n])?;
        h.update(&buf[..n]);
        p += n as u64;
    }
    Ok(h.finalize().into())
}

/// Told what the scan found before the data is read (a progress bar then
/// knows its length), and how many bytes were hashed or written since.
pub trait Progress: Sync {
    fn scanned(&self, _cap: &Captured) {}
    fn bytes(&self, _phase: Phase, _n: u64) {}
}

/// No progress shown.
impl Progress for () {}

/// Capture `dir` into a new WIM at `wim` (replacing any file there once
/// the new one is complete).
pub fn capture(
    dir: &Path,
    wim: &Path,
    spec: &CaptureSpec,
    progress: &dyn Progress,
) -> Result<CaptureReport> {
    let progress_bytes = |p: Phase, n: u64| progress.bytes(p, n);
    let cs = chunk_size(spec)?;
    let compression = if spec.solid {
        Compression::Lzms
    } else {
        spec.compression
    };
    let mut options = spec.options.clone();
    // The file the new WIM replaces is not captured into it.
    options.skip_files.extend(crate::sys::path_id(wim).ok());
    let cap = crate::capture::scan(dir, &options)?;
    progress.scanned(&cap);
    let mut rep = report(&cap, image_name(dir, spec));
    let (file, tmp) = create_temp(wim)?;
    let res = (|| -> Result<u64> {
        let format = Format {
            compression,
            // The header of a solid WIM gives LZMS's usual non-solid
            // chunk size, as wimlib's `--solid` writes it.
            chunk_size: if spec.solid { 128 << 10 } else { cs },
            solid: spec.solid,
            solid_chunk_size: cs,
        };
        let mut w = WimWriter::create(&file, &tmp, format, new_guid(), spec.check)?;
        rep.image = write_image(&mut w, cap, &rep.name, spec, &progress_bytes)?;
        Ok(w.finish(&mut |_| Ok(()))?.file_size)
    })();
    let size = match res {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Still our file at the temporary name (not swapped for a symlink)?
    let ours = crate::sys::file_id(&file).ok();
    if ours.is_none() || crate::sys::link_id(&tmp).ok() != ours {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Other(format!(
            "{}: the temporary file was replaced while it was written",
            tmp.display()
        )));
    }
    std::fs::rename(&tmp, wim).map_err(|err| Error::Io {
        path: wim.display().to_string(),
        err,
    })?;
    if let Some(d) = wim.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(d) {
            let _ = d.sync_all();
        }
    }
    rep.file_size = size;
    rep.bytes_added = size;
    Ok(rep)
}

/// Capture `dir` as a new image of the existing WIM `wim` (its own
/// compression and chunk size; only the blobs it lacks are stored). An
/// image name the WIM already has is refused, as wimlib refuses it.
pub fn append(
    dir: &Path,
    wim: &Path,
    spec: &CaptureSpec,
    progress: &dyn Progress,
) -> Result<CaptureReport> {
    let progress_bytes = |p: Phase, n: u64| progress.bytes(p, n);
    let lock = WimLock::acquire(wim)?;
    let name = image_name(dir, spec);
    {
        let w = lock.open_wim()?;
        if let Some(x) = w
            .image_info
            .iter()
            .find(|x| x.name.as_deref() == Some(name.as_str()))
        {
            return Err(Error::Other(format!(
                "{} already has an image named \"{name}\" (image {}); give another name",
                wim.display(),
                x.index
            )));
        }
    }
    let mut options = spec.options.clone();
    // The WIM appended to grows while the tree is read: never captured.
    options
        .skip_files
        .extend(crate::sys::file_id(&lock.file).ok());
    let cap = crate::capture::scan(dir, &options)?;
    progress.scanned(&cap);
    let mut rep = report(&cap, name);
    let mut w = WimWriter::append(&lock, spec.check)?;
    let before = crate::commit::described_end(
        w.base()
            .ok_or_else(|| Error::Other("internal: an append without its WIM".into()))?,
    );
    rep.image = write_image(&mut w, cap, &rep.name, spec, &progress_bytes)?;
    let done = w.finish(&mut |_| Ok(()))?;
    rep.file_size = done.file_size;
    rep.bytes_added = done.file_size.saturating_sub(before);
    Ok(rep)
}

fn report(cap: &Captured, name: String) -> CaptureReport {
    CaptureReport {
        image: 0,
        name,
        dirs: cap.dirs,
        files: cap.files,
        bytes: cap.bytes,
        file_size: 0,
        bytes_added: 0,
        skipped: cap.skipped.clone(),
    }
}
