//! The walk over the source tree (see the module above for what lands
//! where).

use super::ntfs::{self, Xattrs};
use super::{CaptureOptions, Captured};
use crate::error::{Error, Result};
use crate::newimage::{Content, ImageBuilder, NodeId, NodeMeta, StreamData};
use crate::reparse::{RP_NOT_FIXED, TAG_SYMLINK};
use crate::time::unix_to_filetime;
use crate::wim::metadata::{attr, tag};
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file's contents, read when the writer hashes and compresses them
/// (many at once, on all cores). The file is opened for each read: a tree
/// of a million files must not hold a million descriptors.
struct FileContent {
    path: PathBuf,
    len: u64,
}

impl Content for FileContent {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let io = |err| Error::Io {
            path: self.path.display().to_string(),
            err,
        };
        let f = std::fs::File::open(&self.path).map_err(io)?;
        crate::sys::read_exact_at(&f, buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                io(std::io::Error::new(
                    e.kind(),
                    "the file shrank while it was being captured",
                ))
            } else {
                io(e)
            }
        })
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |err| Error::Io {
        path: path.display().to_string(),
        err,
    }
}

fn filetime(secs: i64, nsec: i64) -> u64 {
    unix_to_filetime(secs, nsec.clamp(0, 999_999_999) as u32)
}

/// Scan `root` into an image.
pub fn scan(root: &Path, opts: &CaptureOptions) -> Result<Captured> {
    let md = std::fs::metadata(root).map_err(io_err(root))?;
    if !md.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    // Absolute links into the tree are recognised by this prefix.
    let canon = root.canonicalize().map_err(io_err(root))?;
    let is_ntfs = ntfs::is_ntfs3g(root);
    if is_ntfs {
        log::info!(
            "{}: an ntfs-3g mount; its Windows metadata is captured too",
            root.display()
        );
    }
    let x = ntfs::read(root, is_ntfs)?;
    let mut b = ImageBuilder::new(node_meta(&md, &x, opts, attr::DIRECTORY));
    let mut w = Walk {
        opts,
        canon,
        ntfs: is_ntfs,
        links: HashMap::new(),
        out: Captured {
            image: crate::newimage::NewImage {
                security: Vec::new(),
                records: Vec::new(),
                streams: Vec::new(),
            },
            uncompressed: Vec::new(),
            dirs: 1,
            files: 0,
            bytes: 0,
            skipped: Vec::new(),
        },
    };
    let root_id = b.root();
    add_streams(&mut b, root_id, &x, root)?;
    let mut stack = vec![(root.to_path_buf(), String::new(), root_id)];
    while let Some((dir, rel, id)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
        let mut names = Vec::new();
        for e in rd {
            names.push(e.map_err(io_err(&dir))?.file_name());
        }
        // Byte order: the same tree always gives the same image.
        names.sort();
        for os in names {
            let path = dir.join(&os);
            let Some(name) = os.to_str() else {
                return Err(Error::Invalid(format!(
                    "{}: the name is not UTF-8; a WIM holds UTF-16 names",
                    path.display()
                )));
            };
            let r = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if opts.config.excluded(&r) {
                log::info!("excluded by the configuration: {r}");
                continue;
            }
            if let Some(sub) = w.entry(&mut b, id, name, &path, &r)? {
                stack.push((path, r, sub));
            }
        }
    }
    w.out.image = b.finish();
    Ok(w.out)
}

struct Walk<'o> {
    opts: &'o CaptureOptions,
    canon: PathBuf,
    /// The source is an ntfs-3g mount.
    ntfs: bool,
    /// (dev, ino) of files with several names, to the node of the first.
    links: HashMap<(u64, u64), NodeId>,
    out: Captured,
}

fn node_meta(md: &Metadata, x: &Xattrs, opts: &CaptureOptions, kind: u32) -> NodeMeta {
    let mtime = filetime(md.mtime(), md.mtime_nsec());
    let mut tagged = Vec::new();
    if opts.unix_data {
        let mut u = Vec::with_capacity(16);
        u.extend_from_slice(&md.uid().to_le_bytes());
        u.extend_from_slice(&md.gid().to_le_bytes());
        u.extend_from_slice(&md.mode().to_le_bytes());
        u.extend_from_slice(&(md.rdev() as u32).to_le_bytes());
        tagged.push((tag::UNIX_DATA, u));
        if let Some(v) = ntfs::xattr_item(&x.linux) {
            tagged.push((tag::XATTRS, v));
        }
    }
    NodeMeta {
        attributes: x.attributes.unwrap_or(kind),
        // Linux keeps no creation time std can read everywhere; wimlib
        // stores the modification time there too.
        creation_time: x.creation_time.unwrap_or(mtime),
        last_access_time: filetime(md.atime(), md.atime_nsec()),
        last_write_time: mtime,
        security: x.security.clone(),
        short_name: x.short_name.clone().unwrap_or_default(),
        tagged,
    }
}

fn add_streams(b: &mut ImageBuilder, id: NodeId, x: &Xattrs, path: &Path) -> Result<()> {
    for (n, v) in &x.streams {
        let data = if v.is_empty() {
            StreamData::Empty
        } else {
            StreamData::New(Arc::new(v.clone()))
        };
        b.add_named_stream(id, n, data)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

impl Walk<'_> {
    /// Add one entry; returns the node of a directory to descend into.
    fn entry(
        &mut self,
        b: &mut ImageBuilder,
        parent: NodeId,
        name: &str,
        path: &Path,
        rel: &str,
    ) -> Result<Option<NodeId>> {
        let md = std::fs::symlink_metadata(path).map_err(io_err(path))?;
        if self.opts.skip_files.contains(&(md.dev(), md.ino())) {
            log::warn!("{}: the WIM being written; left out", path.display());
            return Ok(None);
        }
        let ft = md.file_type();
        let named = |e: Error| Error::Invalid(format!("{}: {e}", path.display()));
        // Hard links of regular files become one link group; other kinds
        // (a symlink to a directory cannot be one) are stored per name.
        let linked = ft.is_file() && md.nlink() > 1;
        if linked {
            if let Some(&first) = self.links.get(&(md.dev(), md.ino())) {
                b.add_hard_link(parent, name, first).map_err(named)?;
                self.out.files += 1;
                return Ok(None);
            }
        }
        let special = ft.is_fifo() || ft.is_char_device() || ft.is_block_device() || ft.is_socket();
        if special && !self.opts.unix_data {
            log::warn!(
                "{}: a FIFO, device or socket is captured only with --unix-data; left out",
                path.display()
            );
            self.out.skipped.push(rel.to_string());
            return Ok(None);
        }
        let x = ntfs::read(path, self.ntfs)?;
        let id = if ft.is_dir() && x.reparse.is_none() {
            let id = b
                .add_dir(
                    parent,
                    name,
                    &node_meta(&md, &x, self.opts, attr::DIRECTORY),
                )
                .map_err(named)?;
            add_streams(b, id, &x, path)?;
            self.out.dirs += 1;
            return Ok(Some(id));
        } else if ft.is_symlink() || x.reparse.is_some() {
            self.reparse_point(b, parent, name, path, &md, &x)?
        } else {
            let mut kind = 0;
            // Fewer blocks than the size needs: a sparse file, as wimlib
            // marks it.
            if ft.is_file() && md.blocks().saturating_mul(512) < md.len() {
                kind |= attr::SPARSE_FILE;
            }
            let data = if !ft.is_file() || md.len() == 0 {
                StreamData::Empty
            } else {
                let c: Arc<dyn Content> = Arc::new(FileContent {
                    path: path.to_path_buf(),
                    len: md.len(),
                });
                self.out.bytes += md.len();
                if self.opts.config.uncompressed(rel) {
                    self.out.uncompressed.push(c.clone());
                }
                StreamData::New(c)
            };
            b.add_file(parent, name, &node_meta(&md, &x, self.opts, kind), data)
                .map_err(named)?
        };
        add_streams(b, id, &x, path)?;
        self.out.files += 1;
        if linked {
            self.links.insert((md.dev(), md.ino()), id);
        }
        Ok(None)
    }

    fn reparse_point(
        &mut self,
        b: &mut ImageBuilder,
        parent: NodeId,
        name: &str,
        path: &Path,
        md: &Metadata,
        x: &Xattrs,
    ) -> Result<NodeId> {
        let named = |e: Error| Error::Invalid(format!("{}: {e}", path.display()));
        // Does the link name a directory? (Windows tells directory links
        // from file links; a dangling link is a file link.)
        let is_dir = match x.attributes {
            Some(a) => a & attr::DIRECTORY != 0,
            None => std::fs::metadata(path).is_ok_and(|m| m.is_dir()),
        };
        let meta = node_meta(md, x, self.opts, 0);
        if let Some((tag, data)) = &x.reparse {
            let d = if data.is_empty() {
                StreamData::Empty
            } else {
                StreamData::New(Arc::new(data.clone()))
            };
            return b
                .add_reparse_point(parent, name, &meta, *tag, d, is_dir)
                .map_err(named);
        }
        let target = std::fs::read_link(path).map_err(io_err(path))?;
        let Some(t) = target.to_str() else {
            return Err(Error::Invalid(format!(
                "{}: the link target is not UTF-8",
                path.display()
            )));
        };
        let (data, flags) = if !t.starts_with('/') {
            (ntfs::symlink_reparse(&t.replace('/', "\\"), true), 0)
        } else {
            match Path::new(t).strip_prefix(&self.canon) {
                // Into the tree: absolute to the image root.
                Ok(rest) => {
                    let r = rest.to_string_lossy().replace('/', "\\");
                    log::info!(
                        "{}: absolute link target {t} made relative to the image root",
                        path.display()
                    );
                    (ntfs::symlink_reparse(&format!("C:\\{r}"), false), 0)
                }
                Err(_) => (
                    ntfs::symlink_reparse(&format!("C:{}", t.replace('/', "\\")), false),
                    RP_NOT_FIXED,
                ),
            }
        };
        if data.len() > 16 * 1024 {
            return Err(Error::Invalid(format!(
                "{}: the link target is too long for a reparse point",
                path.display()
            )));
        }
        let id = b
            .add_reparse_point(
                parent,
                name,
                &meta,
                TAG_SYMLINK,
                StreamData::New(Arc::new(data)),
                is_dir,
            )
            .map_err(named)?;
        b.set_rp_flags(id, flags).map_err(named)?;
        Ok(id)
    }
}
