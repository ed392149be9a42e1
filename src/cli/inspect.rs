//! The verbs that read a WIM without mounting it.

use super::progress;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use wimfs::cache::ChunkCache;
use wimfs::image::{Image, Inode, StreamKind};
use wimfs::wim::bytes::hex;
use wimfs::wim::header::flags;
use wimfs::wim::metadata::attr;
use wimfs::wim::Wim;

fn guid(g: &[u8; 16]) -> String {
    hex(g)
}

pub fn info(w: &Wim, image: Option<&str>, json: bool, check: bool) -> Result<i32> {
    let h = &w.header;
    let only = image.map(|s| w.resolve_image(s)).transpose()?;
    let integrity = if check && h.integrity.size_in_wim > 0 {
        let r = wimfs::verify::verify(w, &|_| {});
        Some(r.integrity.unwrap_or(false))
    } else {
        None
    };
    if json {
        let images: Vec<_> = w
            .image_info
            .iter()
            .filter(|i| only.is_none_or(|o| o == i.index))
            .collect();
        let v = serde_json::json!({
            "path": w.path.display().to_string(),
            "guid": guid(&h.guid),
            "version": h.version,
            "part_number": h.part_number,
            "total_parts": h.total_parts,
            "image_count": w.image_count(),
            "boot_index": h.boot_index,
            "compression": w.compression.name(),
            "chunk_size": w.chunk_size,
            "flags": flags::names(h.flags),
            "has_integrity_table": h.integrity.size_in_wim > 0,
            "integrity_ok": integrity,
            "size": w.parts.iter().map(|p| p.source.len()).sum::<u64>(),
            "blob_count": w.blobs.len(),
            "metadata_count": metadata_resources(w),
            "images": images,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    outln!("WIM Information:");
    outln!("----------------");
    outln!("Path:           {}", w.path.display());
    outln!("GUID:           0x{}", guid(&h.guid));
    outln!("Version:        {:#x}", h.version);
    outln!("Image Count:    {}", w.image_count());
    outln!("Compression:    {}", w.compression.name());
    outln!("Chunk Size:     {} bytes", w.chunk_size);
    outln!("Part Number:    {}/{}", h.part_number, h.total_parts);
    outln!("Boot Index:     {}", h.boot_index);
    outln!(
        "Size:           {} bytes",
        w.parts.iter().map(|p| p.source.len()).sum::<u64>()
    );
    // The same split `verify` reports: file data blobs, then the images'
    // metadata resources (which verify hashes too).
    outln!(
        "Blobs:          {} (+ {} image metadata)",
        w.blobs.len(),
        metadata_resources(w)
    );
    outln!(
        "Integrity Info: {}",
        match integrity {
            Some(true) => "yes (verified)",
            Some(false) => "yes (MISMATCH)",
            None if h.integrity.size_in_wim > 0 => "yes",
            None => "no",
        }
    );
    outln!("Attributes:     {}", flags::names(h.flags).join(", "));
    for i in w
        .image_info
        .iter()
        .filter(|i| only.is_none_or(|o| o == i.index))
    {
        outln!();
        outln!("Index:                  {}", i.index);
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        outln!("Name:                   {}", opt(&i.name));
        outln!("Description:            {}", opt(&i.description));
        if i.display_name.is_some() {
            outln!("Display Name:           {}", opt(&i.display_name));
        }
        outln!("Directory Count:        {}", i.dir_count.unwrap_or(0));
        outln!("File Count:             {}", i.file_count.unwrap_or(0));
        outln!("Total Bytes:            {}", i.total_bytes.unwrap_or(0));
        outln!("Hard Link Bytes:        {}", i.hard_link_bytes.unwrap_or(0));
        if let Some(t) = i.creation_time {
            outln!(
                "Creation Time:          {}",
                wimfs::time::format_filetime(t)
            );
        }
        if let Some(t) = i.last_modification_time {
            outln!(
                "Last Modification Time: {}",
                wimfs::time::format_filetime(t)
            );
        }
        if let Some(win) = &i.windows {
            if let Some(p) = &win.product_name {
                outln!("Product Name:           {p}");
            }
            if let Some(e) = &win.edition_id {
                outln!("Edition ID:             {e}");
            }
            if let Some(v) = &win.version {
                outln!("Windows Version:        {v}");
            }
            if let Some(a) = win.arch {
                outln!(
                    "Architecture:           {}",
                    match a {
                        0 => "x86",
                        5 => "ARM",
                        6 => "IA-64",
                        9 => "x86_64",
                        12 => "ARM64",
                        _ => "unknown",
                    }
                );
            }
            if !win.languages.is_empty() {
                outln!("Languages:              {}", win.languages.join(" "));
            }
        }
    }
    if integrity == Some(false) {
        eprintln!("wimfs: integrity table does not match the file");
        return Ok(1);
    }
    Ok(0)
}

/// Image metadata resources stored in the WIM (an image with no metadata
/// resource, as a fresh `wimlib-imagex` empty image has, has none).
fn metadata_resources(w: &Wim) -> usize {
    w.metadata
        .iter()
        .filter(|b| b.hash != wimfs::wim::ZERO_HASH)
        .count()
}

fn load(w: &Wim, idx: u32) -> Result<Image> {
    let img = Image::load(w, idx)?;
    for warn in &img.warnings {
        log::warn!("{warn}");
    }
    Ok(img)
}

fn attr_names(a: u32) -> String {
    let t = [
        (attr::READONLY, "READONLY"),
        (attr::HIDDEN, "HIDDEN"),
        (attr::SYSTEM, "SYSTEM"),
        (attr::DIRECTORY, "DIRECTORY"),
        (attr::ARCHIVE, "ARCHIVE"),
        (attr::NORMAL, "NORMAL"),
        (0x100, "TEMPORARY"),
        (attr::SPARSE_FILE, "SPARSE_FILE"),
        (attr::REPARSE_POINT, "REPARSE_POINT"),
        (attr::COMPRESSED, "COMPRESSED"),
        (0x1000, "OFFLINE"),
        (0x2000, "NOT_CONTENT_INDEXED"),
        (attr::ENCRYPTED, "ENCRYPTED"),
    ];
    let v: Vec<&str> = t
        .iter()
        .filter(|(b, _)| a & b != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("{a:#010x} {}", v.join("|"))
}

fn link_target(cache: &ChunkCache, ino: &Inode) -> Option<String> {
    let b = ino.reparse()?.blob.as_ref()?;
    let mut data = vec![0u8; b.size.min(1 << 16) as usize];
    cache.read_blob(b, 0, &mut data).ok()?;
    let t = wimfs::reparse::decode(ino.reparse_tag, &data)?;
    Some(if t.substitute.is_empty() {
        t.print
    } else {
        t.substitute
    })
}

pub fn dir(w: &Wim, image: u32, path: Option<&str>, detailed: bool) -> Result<i32> {
    let img = load(w, image)?;
    let start = match path {
        Some(p) => img
            .lookup(p)
            .with_context(|| format!("{p}: no such file or directory in the image"))?,
        None => wimfs::image::ROOT,
    };
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    // One cache for the whole listing: reparse data of a solid WIM shares chunks.
    let cache = ChunkCache::new(64 << 20);
    let mut stack = vec![start];
    // Every `?` below is a write to stdout: a closed pipe ends the
    // listing quietly (see `stdout_failed`).
    let listed = (|| -> std::io::Result<()> {
        while let Some(d) = stack.pop() {
            let ino = img.inode_of(d);
            let p = img.path(d);
            if !detailed {
                writeln!(out, "{p}")?;
            } else {
                writeln!(
                    out,
                    "----------------------------------------------------------------"
                )?;
                writeln!(out, "Full Path         = \"{p}\"")?;
                let dn = &img.dentries[d as usize];
                if !dn.short_name.is_empty() {
                    writeln!(out, "Short Name        = \"{}\"", dn.short_name)?;
                }
                writeln!(out, "Attributes        = {}", attr_names(ino.attributes))?;
                writeln!(out, "Security ID       = {}", ino.security_id)?;
                writeln!(out, "Link Count        = {}", ino.nlink())?;
                writeln!(
                    out,
                    "Creation Time     = {}",
                    wimfs::time::format_filetime(ino.creation_time)
                )?;
                writeln!(
                    out,
                    "Last Write Time   = {}",
                    wimfs::time::format_filetime(ino.last_write_time)
                )?;
                writeln!(
                    out,
                    "Last Access Time  = {}",
                    wimfs::time::format_filetime(ino.last_access_time)
                )?;
                if ino.is_reparse() {
                    writeln!(out, "Reparse Tag       = {:#010x}", ino.reparse_tag)?;
                    if let Some(t) = link_target(&cache, ino) {
                        writeln!(out, "Reparse Target    = \"{t}\"")?;
                    }
                }
                if let Some(u) = ino.unix {
                    writeln!(
                        out,
                        "UNIX Data         = uid:{} gid:{} mode:0{:o} rdev:{}",
                        u.uid, u.gid, u.mode, u.rdev
                    )?;
                }
                for s in &ino.streams {
                    let kind = match (s.kind, s.name.is_empty()) {
                        (StreamKind::Reparse, _) => "reparse data".to_string(),
                        (_, true) => "data".to_string(),
                        (_, false) => format!("stream \"{}\"", s.name),
                    };
                    writeln!(
                        out,
                        "  {kind:<20} size {:>12}  sha1 {}",
                        s.size,
                        hex(&s.hash)
                    )?;
                }
            }
            if !ino.is_reparse() || d == start {
                stack.extend(img.dentries[d as usize].children.iter().rev().copied());
            }
        }
        out.flush()
    })();
    if let Err(e) = listed {
        super::stdout_failed(e);
    }
    Ok(0)
}

pub fn cat(w: &Wim, image: u32, path: &str) -> Result<i32> {
    let img = load(w, image)?;
    let (d, stream) = match img.lookup(path) {
        Some(d) => (d, ""),
        None => match path.rsplit_once(':') {
            Some((p, s)) => (
                img.lookup(p)
                    .with_context(|| format!("{p}: no such file in the image"))?,
                s,
            ),
            None => bail!("{path}: no such file in the image"),
        },
    };
    let ino = img.inode_of(d);
    if ino.is_dir() && stream.is_empty() {
        bail!("{path}: is a directory");
    }
    let s = ino
        .stream(stream)
        .with_context(|| format!("{path}: no stream named {stream:?}"))?;
    let Some(blob) = s.blob.clone() else {
        if s.size == 0 && s.hash == wimfs::wim::ZERO_HASH {
            return Ok(0);
        }
        bail!(
            "{path}: its data (blob {}) is not in this WIM",
            hex(&s.hash)
        );
    };
    struct Out(std::io::Stdout);
    impl wimfs::bulk::BlobSink for Out {
        fn write(&mut self, d: &[u8]) -> wimfs::Result<()> {
            self.0.lock().write_all(d).map_err(wimfs::Error::from)
        }
        fn finish(self: Box<Self>) -> wimfs::Result<()> {
            self.0.lock().flush().map_err(wimfs::Error::from)
        }
    }
    let errs = wimfs::bulk::for_each_blob(&[blob], |_| {
        Ok(Box::new(Out(std::io::stdout())) as Box<dyn wimfs::bulk::BlobSink>)
    });
    if let Some((_, e)) = errs.into_iter().next() {
        if let wimfs::Error::RawIo(io) = &e {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
        }
        bail!("{path}: {e}");
    }
    Ok(0)
}

/// The flags of `wimfs apply`, on every platform (the applier's own
/// options exist only where it does).
#[derive(Clone, Copy)]
#[cfg_attr(not(unix), allow(dead_code))]
pub struct ApplyHow {
    pub unix_data: bool,
    pub no_streams: bool,
    pub overwrite: bool,
}

/// `wimfs apply` where the applier exists (it creates Unix files; the
/// Windows applier comes with the WinFsp work).
#[cfg(not(unix))]
pub fn apply(_w: &Wim, _index: u32, dir: &Path, _how: ApplyHow) -> Result<i32> {
    anyhow::bail!(
        "cannot apply to {}: `wimfs apply` is not available on this platform yet",
        dir.display()
    )
}

/// `wimfs apply`: extract, then say what was extracted (a silent success
/// left users checking the directory by hand).
#[cfg(unix)]
pub fn apply(w: &Wim, index: u32, dir: &Path, how: ApplyHow) -> Result<i32> {
    let opts = wimfs::apply::ApplyOptions {
        unix_data: how.unix_data,
        no_streams: how.no_streams,
        overwrite: how.overwrite,
    };
    let started = std::time::Instant::now();
    let img = Image::load(w, index)?;
    let total: u64 = {
        let mut seen = std::collections::HashSet::new();
        img.inodes
            .iter()
            .filter(|i| !i.dentries.is_empty())
            .flat_map(|i| i.streams.iter())
            .filter(|s| s.kind == StreamKind::Data && seen.insert(s.hash))
            .map(|s| s.size)
            .sum()
    };
    let pb = progress(total, "apply");
    let rep = wimfs::apply::apply(w, &img, dir, &opts, &|n| pb.inc(n))
        .with_context(|| format!("applying image {index} to {}", dir.display()))?;
    pb.finish_and_clear();
    for warn in &rep.warnings {
        log::warn!("{warn}");
    }
    outln!("{}", apply_summary(index, dir, &rep, started.elapsed()));
    Ok(0)
}

/// The line `apply` ends with: what it made, how many bytes, how long.
#[cfg(unix)]
fn apply_summary(
    index: u32,
    dir: &Path,
    rep: &wimfs::apply::ApplyReport,
    took: std::time::Duration,
) -> String {
    let n = |k: u64, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
    format!(
        "applied image {index} to {}: {}, {}, {}, {}, {} in {:.1} s",
        dir.display(),
        n(rep.files, "file", "files"),
        n(rep.dirs, "directory", "directories"),
        n(rep.symlinks, "symlink", "symlinks"),
        n(rep.hardlinks, "hard link", "hard links"),
        n(rep.bytes, "byte", "bytes"),
        took.as_secs_f64()
    )
}

pub fn verify(w: &Wim, json: bool) -> Result<i32> {
    let pb = progress(wimfs::verify::total_bytes(w), "verify");
    let rep = wimfs::verify::verify(w, &|n| pb.inc(n));
    pb.finish_and_clear();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        for warn in &rep.warnings {
            log::warn!("{warn}");
        }
        for p in &rep.problems {
            eprintln!("wimfs: verify: {p}");
        }
        if rep.ok() {
            outln!(
                "{}: OK ({} blobs + {} image metadata, {} bytes checked{})",
                w.path.display(),
                rep.blobs_checked - rep.metadata_checked,
                rep.metadata_checked,
                rep.bytes_checked,
                match rep.integrity {
                    Some(true) => ", integrity table OK",
                    _ => "",
                }
            );
        } else {
            eprintln!(
                "wimfs: verify: {}: {} problem(s) found",
                w.path.display(),
                rep.problems.len()
            );
        }
    }
    Ok(if rep.ok() { 0 } else { 1 })
}
