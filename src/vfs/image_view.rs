//! The read-only view: an image's inodes and dentries as they are in the
//! WIM, answered without locks (nothing changes under a read-only mount).

use super::view::ReadView;
use super::{read_once, Attr, AttrFacts, DirEntry, FileKind, Ino, VfsError, VfsOptions, VfsResult};
use crate::cache::ChunkCache;
use crate::image::{Image, Inode, StreamKind};
use crate::node::list_page;
use crate::nt::upcase;
use crate::overlay::{Data, WinMeta};
use crate::reparse;
use crate::wim::header::flags;
use crate::wim::Wim;
use parking_lot::Mutex;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub(crate) struct ImageView {
    wim: Arc<Wim>,
    image: Arc<Image>,
    cache: Arc<ChunkCache>,
    /// Where the mount is: symlinks fixed up at capture point inside it.
    mount_root: String,
    /// First reachable dentry of each inode (directories have exactly one).
    inode_dentry: Vec<u32>,
    /// POSIX targets of symlink and junction reparse points, by inode
    /// index, decoded on first use (`None`: the reparse data does not
    /// decode, and the inode shows as a file with its data).
    links: HashMap<u32, OnceLock<Option<String>>>,
    /// Per directory dentry, its children by upcased name (the first in
    /// collation order where several differ only in case), built the
    /// first time an NT lookup misses the exact name there: NT callers
    /// ask in any case, but most directories are never asked.
    folded: Mutex<HashMap<u32, Arc<HashMap<String, u32>>>>,
}

impl ImageView {
    pub(crate) fn new(
        wim: Arc<Wim>,
        image: Arc<Image>,
        cache: Arc<ChunkCache>,
        opts: &VfsOptions,
    ) -> ImageView {
        let inode_dentry = image
            .inodes
            .iter()
            .map(|i| i.dentries.first().copied().unwrap_or(u32::MAX))
            .collect();
        // Symlink and junction targets are decoded when first asked for
        // (a kind, a size, a readlink): /usr has thousands, and a mount
        // should not wait for them.
        let links: HashMap<u32, OnceLock<Option<String>>> = image
            .inodes
            .iter()
            .enumerate()
            .filter(|(idx, ino)| {
                *idx != 0
                    && ino.is_reparse()
                    && !ino.dentries.is_empty()
                    && matches!(
                        ino.reparse_tag,
                        reparse::TAG_SYMLINK | reparse::TAG_MOUNT_POINT
                    )
            })
            .map(|(idx, _)| (idx as u32, OnceLock::new()))
            .collect();
        ImageView {
            wim,
            image,
            cache,
            mount_root: opts.mount_root.clone(),
            inode_dentry,
            links,
            folded: Mutex::new(HashMap::new()),
        }
    }

    fn inode(&self, ino: Ino) -> VfsResult<(u32, &Inode)> {
        let idx = ino.checked_sub(1).ok_or(VfsError::NotFound)?;
        let i = u32::try_from(idx).map_err(|_| VfsError::NotFound)?;
        let node = self
            .image
            .inodes
            .get(i as usize)
            .ok_or(VfsError::NotFound)?;
        if node.dentries.is_empty() {
            return Err(VfsError::NotFound);
        }
        Ok((i, node))
    }

    fn dentry_of(&self, idx: u32) -> u32 {
        self.inode_dentry[idx as usize]
    }

    /// The POSIX target of inode `idx` if it is a symlink or junction
    /// whose reparse data decodes.
    fn link_target(&self, idx: u32) -> Option<&str> {
        let cell = self.links.get(&idx)?;
        cell.get_or_init(|| {
            let ino = self.image.inodes.get(idx as usize)?;
            let b = ino.reparse().and_then(|s| s.blob.as_ref())?;
            let data = read_once(&self.cache, b, 1 << 16)
                .map_err(|e| log::error!("reparse data of inode {idx}: {e}"))
                .ok()?;
            let t = reparse::decode(ino.reparse_tag, &data)?;
            let rpfix = self.wim.header.flags & flags::RP_FIX != 0;
            let fixed = rpfix && ino.rp_flags & reparse::RP_NOT_FIXED == 0;
            Some(reparse::posix_target(&t, fixed, &self.mount_root))
        })
        .as_deref()
    }

    fn kind_of(&self, idx: u32, node: &Inode, opts: &VfsOptions) -> FileKind {
        FileKind::classify(
            self.link_target(idx).is_some(),
            node.is_dir(),
            node.special(),
            opts.shows_unix_data(),
        )
    }

    fn attr_of(&self, idx: u32, node: &Inode, opts: &VfsOptions) -> Attr {
        let kind = self.kind_of(idx, node, opts);
        let facts = AttrFacts {
            kind,
            data_size: node.size(),
            link_len: match kind {
                FileKind::Symlink => self.link_target(idx).map_or(0, |s| s.len() as u64),
                _ => 0,
            },
            names: node.nlink(),
            subdirs: if kind == FileKind::Directory {
                self.subdir_count(idx)
            } else {
                0
            },
            attributes: node.attributes,
            creation_time: node.creation_time,
            last_access_time: node.last_access_time,
            last_write_time: node.last_write_time,
            unix: node.unix,
        };
        Attr::of(idx as Ino + 1, &facts, opts)
    }

    fn subdir_count(&self, idx: u32) -> u32 {
        let d = self.dentry_of(idx);
        self.image.dentries[d as usize]
            .children
            .iter()
            .filter(|&&c| {
                let ci = self.image.dentries[c as usize].inode;
                let n = &self.image.inodes[ci as usize];
                n.is_dir() && self.link_target(ci).is_none()
            })
            .count() as u32
    }

    /// The child of directory dentry `d` NT semantics finds for `name`.
    fn child_ci(&self, d: u32, name: &str) -> Option<u32> {
        if let Some(c) = self.image.child(d, name) {
            return Some(c);
        }
        let index = {
            let mut cache = self.folded.lock();
            cache
                .entry(d)
                .or_insert_with(|| Arc::new(self.fold_children(d)))
                .clone()
        };
        index.get(&upcase::fold(name)).copied()
    }

    fn fold_children(&self, d: u32) -> HashMap<String, u32> {
        let kids = &self.image.dentries[d as usize].children;
        let mut m: HashMap<String, u32> = HashMap::with_capacity(kids.len());
        for &c in kids {
            let n = &self.image.dentries[c as usize].name;
            match m.entry(upcase::fold(n)) {
                Entry::Vacant(v) => {
                    v.insert(c);
                }
                Entry::Occupied(mut o) => {
                    let cur = &self.image.dentries[*o.get() as usize].name;
                    if upcase::collate(n, cur).is_lt() {
                        o.insert(c);
                    }
                }
            }
        }
        m
    }

    fn dir_dentry(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<u32> {
        let (idx, node) = self.inode(ino)?;
        if self.kind_of(idx, node, opts) != FileKind::Directory {
            return Err(VfsError::NotDir);
        }
        Ok(self.dentry_of(idx))
    }
}

impl ReadView for ImageView {
    fn getattr(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<Attr> {
        let (idx, node) = self.inode(ino)?;
        Ok(self.attr_of(idx, node, opts))
    }

    fn kind(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<FileKind> {
        let (idx, node) = self.inode(ino)?;
        Ok(self.kind_of(idx, node, opts))
    }

    fn lookup(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<Attr> {
        let d = self.dir_dentry(parent, opts)?;
        let c = match name {
            "." => d,
            ".." => self.image.dentries[d as usize].parent,
            _ => self.image.child(d, name).ok_or(VfsError::NotFound)?,
        };
        self.getattr(self.image.dentries[c as usize].inode as Ino + 1, opts)
    }

    fn lookup_ci(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<(String, Attr)> {
        let d = self.dir_dentry(parent, opts)?;
        let c = self.child_ci(d, name).ok_or(VfsError::NotFound)?;
        let cd = &self.image.dentries[c as usize];
        Ok((cd.name.clone(), self.getattr(cd.inode as Ino + 1, opts)?))
    }

    fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        max: usize,
        opts: &VfsOptions,
    ) -> VfsResult<Vec<DirEntry>> {
        let d = self.dir_dentry(ino, opts)?;
        let dn = &self.image.dentries[d as usize];
        let parent = self.image.dentries[dn.parent as usize].inode as Ino + 1;
        Ok(list_page(
            ino,
            parent,
            dn.children.len(),
            offset,
            max,
            |i| {
                let cd = &self.image.dentries[dn.children[i] as usize];
                let ci = cd.inode;
                (
                    ci as Ino + 1,
                    self.kind_of(ci, &self.image.inodes[ci as usize], opts),
                    cd.name.clone(),
                )
            },
        ))
    }

    fn readlink(&self, ino: Ino) -> VfsResult<String> {
        let (idx, _) = self.inode(ino)?;
        self.link_target(idx)
            .map(str::to_string)
            .ok_or(VfsError::NotLink)
    }

    fn data(&self, ino: Ino) -> VfsResult<Option<Data>> {
        let (idx, node) = self.inode(ino)?;
        // Whether UNIX data is shown does not matter here: only
        // directories are refused.
        if self.kind_of(idx, node, &VfsOptions::default()) == FileKind::Directory {
            return Err(VfsError::IsDir);
        }
        Ok(node.data().map(Data::from_stream))
    }

    fn named_stream(&self, ino: Ino, name: &str) -> VfsResult<Option<Data>> {
        let (_, node) = self.inode(ino)?;
        Ok(node.named().find(|s| s.name == name).map(Data::from_stream))
    }

    fn named_streams(&self, ino: Ino) -> VfsResult<Vec<(String, Data)>> {
        let (_, node) = self.inode(ino)?;
        Ok(node
            .named()
            .filter(|s| s.kind == StreamKind::Data)
            .map(|s| (s.name.clone(), Data::from_stream(s)))
            .collect())
    }

    fn linux_xattrs(&self, ino: Ino) -> VfsResult<Option<(u32, Vec<u8>)>> {
        Ok(self.inode(ino)?.1.xattrs.clone())
    }

    fn win_meta(&self, ino: Ino) -> VfsResult<WinMeta> {
        let (idx, node) = self.inode(ino)?;
        let short = &self.image.dentries[self.dentry_of(idx) as usize].short_name;
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
            short_name: (!short.is_empty()).then(|| short.clone()),
            xattrs: node.xattrs.clone(),
        })
    }

    fn inode_count(&self) -> u64 {
        self.image.inodes.len() as u64
    }

    fn wim(&self) -> Arc<Wim> {
        self.wim.clone()
    }

    fn free_space(&self) -> Option<u64> {
        None
    }
}
