//! `split` and `join`: a WIM cut into parts of at most a given size (a
//! split set, `.swm`, for FAT32 media whose files stop at 4 GiB), and a
//! split set put back together.
//!
//! Split copies every resource byte for byte: nothing is decompressed.
//! Part 1 holds the images' metadata, then each part takes the next
//! resources in file order while they fit; a resource bigger than the part
//! size gets a part of its own (a resource is never cut). A solid run (its
//! resources and the blobs inside them) stays in one part. Every part has
//! the WIM's GUID, its part number and the part count, the SPANNED flag,
//! its own blob table (what it holds, with its part number), the whole XML
//! and, when the WIM had one, its own integrity table. Parts are named
//! `OUT.swm`, `OUT2.swm`, `OUT3.swm`, ... as Windows names them.
//!
//! Join is a [`rebuild`](super::rebuild::rebuild) of every image of the
//! set into one file: resources are copied byte for byte there too.

use super::rebuild::{rebuild, RebuildReport, Target};
use super::write::{self, Appender};
use crate::error::{Error, Result};
use crate::wim::blob_table::{self, BlobEntry};
use crate::wim::header::{flags, ResHdr, HEADER_SIZE, SOLID_RESOURCE_MAGIC};
use crate::wim::{xml, Wim};
use std::path::{Path, PathBuf};

/// The default part size: the most a FAT32 file can hold is 4 GiB - 1.
pub const DEFAULT_PART_MIB: u64 = 4095;

/// What a split wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitReport {
    pub parts: Vec<(PathBuf, u64)>,
}

/// The name of part `n` of a split set whose first part is `first`:
/// `x.swm`, `x2.swm`, ...
pub fn part_name(first: &Path, n: usize) -> PathBuf {
    if n == 1 {
        return first.to_path_buf();
    }
    let stem = first
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match first.extension() {
        Some(e) => format!("{stem}{n}.{}", e.to_string_lossy()),
        None => format!("{stem}{n}"),
    };
    first.with_file_name(name)
}

/// Table entries that travel together: one resource, or a solid run's
/// resources with the blobs stored in them.
struct Group {
    entries: Vec<BlobEntry>,
    /// Bytes it takes in a part.
    size: u64,
    metadata: bool,
}

fn is_solid_resource(e: &BlobEntry) -> bool {
    e.reshdr.is_solid() && e.reshdr.uncompressed_size == SOLID_RESOURCE_MAGIC
}

fn groups(wim: &Wim) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut in_run = false;
    for (_, e) in &wim.entries {
        if is_solid_resource(e) {
            if !in_run {
                out.push(Group {
                    entries: Vec::new(),
                    size: 0,
                    metadata: false,
                });
                in_run = true;
            }
        } else if e.reshdr.is_solid() {
            // A blob inside the run just listed: no bytes of its own.
            if let Some(g) = out.last_mut().filter(|_| in_run) {
                g.entries.push(e.clone());
                continue;
            }
        } else {
            in_run = false;
            out.push(Group {
                entries: Vec::new(),
                size: 0,
                metadata: e.reshdr.is_metadata(),
            });
        }
        if let Some(g) = out.last_mut() {
            if is_solid_resource(e) || !e.reshdr.is_solid() {
                g.size += e.reshdr.size_in_wim;
            }
            g.entries.push(e.clone());
        }
    }
    // Once blobs follow a run, the run is over: a solid blob entry after a
    // whole resource starts nothing (the reader would not accept it
    // either), so it was kept with the group before.
    out
}

/// Split the WIM at `src` into parts of at most `part_size` bytes (a
/// resource bigger than that gets a part of its own), the first at
/// `first` (see [`part_name`] for the others). Existing part files are
/// refused, so a split never overwrites anything.
pub fn split(
    src: &Path,
    first: &Path,
    part_size: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SplitReport> {
    let wim = Wim::open(src, &[])?;
    if wim.header.total_parts != 1 {
        return Err(Error::Unsupported(
            "splitting a WIM that is already split; join it first".into(),
        ));
    }
    let source = wim
        .part_source(1)
        .ok_or_else(|| Error::Other("internal: no part 1".into()))?
        .clone();
    // Metadata first (part 1 must hold every image's metadata), then the
    // data in file order.
    let mut gs = groups(&wim);
    gs.sort_by_key(|g| {
        (
            !g.metadata,
            g.entries
                .iter()
                .find(|e| !e.reshdr.is_solid() || is_solid_resource(e))
                .map_or(0, |e| e.reshdr.offset),
        )
    });
    let mut parts: Vec<Vec<Group>> = vec![Vec::new()];
    let mut used = HEADER_SIZE as u64;
    for g in gs {
        // Metadata never leaves part 1; data that does not fit starts a
        // new part unless the current one is still empty.
        let cur = parts.len() - 1;
        if !g.metadata && !parts[cur].is_empty() && used + g.size > part_size {
            parts.push(Vec::new());
            used = HEADER_SIZE as u64;
        }
        used += g.size;
        let last = parts.len() - 1;
        parts[last].push(g);
    }
    let total = parts.len();
    if total > u16::MAX as usize {
        return Err(Error::Invalid(format!(
            "{total} parts: a split set holds at most {}",
            u16::MAX
        )));
    }
    let names: Vec<PathBuf> = (1..=total).map(|n| part_name(first, n)).collect();
    for n in &names {
        if n.exists() {
            return Err(Error::Other(format!(
                "{} exists; a split does not overwrite files",
                n.display()
            )));
        }
    }
    let xml_root = wim.xml.clone().unwrap_or_else(|| xml::Element::new("WIM"));
    let integrity = wim.header.integrity.size_in_wim > 0;
    let mut report = SplitReport { parts: Vec::new() };
    let mut written: Vec<PathBuf> = Vec::new();
    let res = (|| -> Result<()> {
        for (k, part) in parts.into_iter().enumerate() {
            let path = &names[k];
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|err| Error::Io {
                    path: path.display().to_string(),
                    err,
                })?;
            written.push(path.clone());
            let mut out = Appender {
                file: &file,
                pos: HEADER_SIZE as u64,
                path: path.display().to_string(),
            };
            out.write_at(&[0u8; HEADER_SIZE], 0)?;
            let mut table = Vec::new();
            let mut boot_metadata = ResHdr::default();
            let mut meta_seen = 0u32;
            for g in part {
                for e in g.entries {
                    let mut e = e;
                    e.part_number = (k + 1) as u16;
                    if is_solid_resource(&e) || !e.reshdr.is_solid() {
                        e.reshdr.offset =
                            copy(&*source, e.reshdr.offset, e.reshdr.size_in_wim, &mut out)?;
                        progress(e.reshdr.size_in_wim);
                    }
                    if e.reshdr.is_metadata() && !e.reshdr.is_solid() {
                        meta_seen += 1;
                        if meta_seen == wim.header.boot_index {
                            boot_metadata = e.reshdr;
                        }
                    }
                    table.push(e);
                }
            }
            let bt = blob_table::write(&table);
            let bt_off = out.write(&bt)?;
            let xb = xml::encode(&xml_root);
            let x_off = out.write(&xb)?;
            let i_rh = if integrity {
                write::append_integrity(&mut out, bt_off + bt.len() as u64)?
            } else {
                ResHdr::default()
            };
            let mut h = wim.header.clone();
            h.flags = (h.flags | flags::SPANNED) & !flags::WRITE_IN_PROGRESS;
            h.part_number = (k + 1) as u16;
            h.total_parts = total as u16;
            h.blob_table = ResHdr {
                size_in_wim: bt.len() as u64,
                flags: crate::wim::header::resflags::METADATA,
                offset: bt_off,
                uncompressed_size: bt.len() as u64,
            };
            h.xml = ResHdr {
                size_in_wim: xb.len() as u64,
                // 0x2, "metadata": what ImageX and wimlib put on the XML of
                // every part (it holds no file data).
                flags: crate::wim::header::resflags::METADATA,
                offset: x_off,
                uncompressed_size: xb.len() as u64,
            };
            h.integrity = i_rh;
            h.boot_metadata = boot_metadata;
            out.write_at(&h.write(), 0)?;
            file.sync_all()?;
            report.parts.push((path.clone(), out.pos));
        }
        Ok(())
    })();
    if let Err(e) = res {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    Ok(report)
}

/// Copy `len` bytes at `off` of `src` to the end of `out`; returns where
/// they landed.
fn copy(src: &dyn crate::io::ReadAt, off: u64, len: u64, out: &mut Appender) -> Result<u64> {
    let at = out.pos;
    let mut buf = vec![0u8; (8u64 << 20).min(len.max(1)) as usize];
    let mut p = 0;
    while p < len {
        let n = ((len - p) as usize).min(buf.len());
        src.read_exact_at(&mut buf[..n], off + p)?;
        out.write(&buf[..n])?;
        p += n as u64;
    }
    Ok(at)
}

/// Join the split set `parts` (any order; every part needed) into one WIM
/// at `dst` (replaced once complete).
pub fn join(
    parts: &[PathBuf],
    dst: &Path,
    check: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RebuildReport> {
    let (first, rest) = parts
        .split_first()
        .ok_or_else(|| Error::Invalid("no parts to join".into()))?;
    let wim = Wim::open(first, rest)?;
    let images: Vec<u32> = (1..=wim.image_count()).collect();
    rebuild(
        &wim,
        &images,
        dst,
        Target::same_as(&wim),
        true,
        check,
        progress,
    )
}
