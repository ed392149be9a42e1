//! The read-only view of a mount: the image as it is in the WIM, decoded
//! one directory at a time ([`LazyImage`]) so that a mount takes the same
//! short time and little memory whatever the image's size.
//!
//! Inode numbers are the lazy image's numbers (from each entry's offset in
//! the metadata resource): a read-write mount (whose overlay numbers
//! inodes in the order they enter its tree) numbers differently, which
//! nothing relies on across the two. A directory whose
//! list does not decode is EIO (logged once by the image, naming it) when
//! it is looked into, and only then.

use super::view::ReadView;
use super::{read_once, Attr, AttrFacts, DirEntry, FileKind, Ino, VfsError, VfsOptions, VfsResult};
use crate::cache::ChunkCache;
use crate::image::lazy::{Entry, LazyImage};
use crate::image::StreamKind;
use crate::node::list_page;
use crate::nt::upcase;
use crate::overlay::{Data, WinMeta};
use crate::reparse;
use crate::wim::header::flags;
use crate::wim::Wim;
use parking_lot::Mutex;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct LazyView {
    image: Arc<LazyImage>,
    cache: Arc<ChunkCache>,
    /// Where the mount is: symlinks fixed up at capture point inside it.
    mount_root: String,
    /// Per directory, its children by upcased name (the first in
    /// collation order where several differ only in case), built the
    /// first time an NT lookup misses the exact name there.
    folded: Mutex<HashMap<u64, Arc<Folded>>>,
}

/// A directory's children by upcased name.
type Folded = HashMap<String, Arc<Entry>>;

impl LazyView {
    pub(crate) fn new(image: Arc<LazyImage>, cache: Arc<ChunkCache>, opts: &VfsOptions) -> Self {
        LazyView {
            image,
            cache,
            mount_root: opts.mount_root.clone(),
            folded: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn image(&self) -> &Arc<LazyImage> {
        &self.image
    }

    fn entry(&self, ino: Ino) -> VfsResult<Arc<Entry>> {
        self.image.entry(ino).ok_or(VfsError::NotFound)
    }

    /// The POSIX target of `e` if it is a symlink or junction whose
    /// reparse data decodes.
    fn link_target<'a>(&self, e: &'a Entry) -> Option<&'a str> {
        let rpfix = self.image.wim().header.flags & flags::RP_FIX != 0;
        link_target(e, &self.cache, rpfix, &self.mount_root)
    }
}

/// The POSIX target of `e` if it is a symlink or junction whose reparse
/// data decodes (worked out once, kept in the entry); `rpfix`: the WIM
/// says absolute targets were fixed up at capture, relative to
/// `mount_root` now. Also what a read-write mount's tree starts from.
pub(crate) fn link_target<'a>(
    e: &'a Entry,
    cache: &ChunkCache,
    rpfix: bool,
    mount_root: &str,
) -> Option<&'a str> {
    let node = &e.inode;
    if e.no == crate::image::lazy::ROOT_NO
        || !node.is_reparse()
        || !matches!(
            node.reparse_tag,
            reparse::TAG_SYMLINK | reparse::TAG_MOUNT_POINT
        )
    {
        return None;
    }
    e.link_target
        .get_or_init(|| {
            let b = node.reparse().and_then(|s| s.blob.as_ref())?;
            let data = read_once(cache, b, 1 << 16)
                .map_err(|err| log::error!("reparse data of inode {}: {err}", e.no))
                .ok()?;
            let t = reparse::decode(node.reparse_tag, &data)?;
            let fixed = rpfix && node.rp_flags & reparse::RP_NOT_FIXED == 0;
            Some(reparse::posix_target(&t, fixed, mount_root))
        })
        .as_deref()
}

impl LazyView {
    fn kind_of(&self, e: &Entry, opts: &VfsOptions) -> FileKind {
        FileKind::classify(
            self.link_target(e).is_some(),
            e.inode.is_dir(),
            e.inode.special(),
            opts.shows_unix_data(),
        )
    }

    fn attr_of(&self, e: &Entry, opts: &VfsOptions) -> VfsResult<Attr> {
        let node = &e.inode;
        let kind = self.kind_of(e, opts);
        let facts = AttrFacts {
            kind,
            data_size: node.size(),
            link_len: match kind {
                FileKind::Symlink => self.link_target(e).map_or(0, |s| s.len() as u64),
                _ => 0,
            },
            names: self.image.nlink(e),
            subdirs: if kind == FileKind::Directory {
                self.subdir_count(e)?
            } else {
                0
            },
            attributes: node.attributes,
            creation_time: node.creation_time,
            last_access_time: node.last_access_time,
            last_write_time: node.last_write_time,
            unix: node.unix,
        };
        Ok(Attr::of(e.no, &facts, opts))
    }

    fn subdir_count(&self, e: &Entry) -> VfsResult<u32> {
        let dir = self.image.children(e)?;
        Ok(dir
            .kids
            .iter()
            .filter(|c| c.inode.is_dir() && self.link_target(c).is_none())
            .count() as u32)
    }

    /// The directory `ino` is, or NotDir.
    fn dir(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<Arc<Entry>> {
        let e = self.entry(ino)?;
        if self.kind_of(&e, opts) != FileKind::Directory {
            return Err(VfsError::NotDir);
        }
        Ok(e)
    }

    /// The entry a child stands for: of hard links, the first decoded
    /// (the inode's attributes are that dentry's, as in the full decode).
    fn inode_entry(&self, c: &Arc<Entry>) -> Arc<Entry> {
        if c.is_linked() {
            self.image.entry(c.no).unwrap_or_else(|| c.clone())
        } else {
            c.clone()
        }
    }

    fn child_ci(&self, d: &Entry, name: &str) -> VfsResult<Option<Arc<Entry>>> {
        let dir = self.image.children(d)?;
        if let Some(c) = dir.child(name) {
            return Ok(Some(c.clone()));
        }
        let index = {
            let mut cache = self.folded.lock();
            cache
                .entry(d.no)
                .or_insert_with(|| {
                    let mut m: HashMap<String, Arc<Entry>> = HashMap::with_capacity(dir.kids.len());
                    for c in &dir.kids {
                        match m.entry(upcase::fold(&c.name)) {
                            MapEntry::Vacant(v) => {
                                v.insert(c.clone());
                            }
                            MapEntry::Occupied(mut o) => {
                                if upcase::collate(&c.name, &o.get().name).is_lt() {
                                    o.insert(c.clone());
                                }
                            }
                        }
                    }
                    Arc::new(m)
                })
                .clone()
        };
        Ok(index.get(&upcase::fold(name)).cloned())
    }
}

impl ReadView for LazyView {
    fn getattr(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<Attr> {
        let e = self.entry(ino)?;
        self.attr_of(&e, opts)
    }

    fn kind(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<FileKind> {
        let e = self.entry(ino)?;
        Ok(self.kind_of(&e, opts))
    }

    fn lookup(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<Attr> {
        let d = self.dir(parent, opts)?;
        let c = match name {
            "." => d,
            ".." => self.entry(d.parent)?,
            _ => {
                let c = self.image.child(&d, name)?.ok_or(VfsError::NotFound)?;
                self.inode_entry(&c)
            }
        };
        self.attr_of(&c, opts)
    }

    fn lookup_ci(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<(String, Attr)> {
        let d = self.dir(parent, opts)?;
        let c = self.child_ci(&d, name)?.ok_or(VfsError::NotFound)?;
        Ok((c.name.clone(), self.attr_of(&self.inode_entry(&c), opts)?))
    }

    fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        max: usize,
        opts: &VfsOptions,
    ) -> VfsResult<Vec<DirEntry>> {
        let d = self.dir(ino, opts)?;
        let dir = self.image.children(&d)?;
        Ok(list_page(ino, d.parent, dir.kids.len(), offset, max, |i| {
            let c = &dir.kids[i];
            (
                c.no,
                self.kind_of(&self.inode_entry(c), opts),
                c.name.clone(),
            )
        }))
    }

    fn readlink(&self, ino: Ino) -> VfsResult<String> {
        let e = self.entry(ino)?;
        self.link_target(&e)
            .map(str::to_string)
            .ok_or(VfsError::NotLink)
    }

    fn data(&self, ino: Ino) -> VfsResult<Option<Data>> {
        let e = self.entry(ino)?;
        // Whether UNIX data is shown does not matter here: only
        // directories are refused.
        if self.kind_of(&e, &VfsOptions::default()) == FileKind::Directory {
            return Err(VfsError::IsDir);
        }
        Ok(e.inode.data().map(Data::from_stream))
    }

    fn named_stream(&self, ino: Ino, name: &str) -> VfsResult<Option<Data>> {
        let e = self.entry(ino)?;
        let found = e
            .inode
            .named()
            .find(|s| s.name == name)
            .map(Data::from_stream);
        Ok(found)
    }

    fn named_streams(&self, ino: Ino) -> VfsResult<Vec<(String, Data)>> {
        let e = self.entry(ino)?;
        Ok(e.inode
            .named()
            .filter(|s| s.kind == StreamKind::Data)
            .map(|s| (s.name.clone(), Data::from_stream(s)))
            .collect())
    }

    fn linux_xattrs(&self, ino: Ino) -> VfsResult<Option<(u32, Vec<u8>)>> {
        Ok(self.entry(ino)?.inode.xattrs.clone())
    }

    fn win_meta(&self, ino: Ino) -> VfsResult<WinMeta> {
        let e = self.entry(ino)?;
        let node = &e.inode;
        Ok(WinMeta {
            attributes: node.attributes,
            creation_time: node.creation_time,
            security: self
                .image
                .security_descriptor(node.security_id)
                .map(<[u8]>::to_vec),
            reparse: node
                .is_reparse()
                .then(|| (node.reparse_tag, node.reparse().map(Data::from_stream))),
            short_name: (!e.short_name.is_empty()).then(|| e.short_name.clone()),
            xattrs: node.xattrs.clone(),
        })
    }

    fn inode_count(&self) -> u64 {
        self.image.count_hint()
    }

    fn wim(&self) -> Arc<Wim> {
        self.image.wim().clone()
    }

    fn free_space(&self) -> Option<u64> {
        None
    }
}
