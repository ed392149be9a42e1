//! An opened image as a tree of inodes, built from the metadata resource.
//!
//! Dentries are names; inodes are files. Dentries that share a hard-link
//! group share an inode. Each inode lists its streams: the unnamed data
//! stream, the reparse-point data (for reparse points) and named data
//! streams, each with the size of its blob.

use crate::error::{Error, Result, Section};
use crate::nt::names;
use crate::wim::metadata::{self, attr, tag, DentryRecord};
use crate::wim::{Blob, Sha1, Wim, ZERO_HASH};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

pub mod lazy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Data,
    Reparse,
}

#[derive(Debug, Clone)]
pub struct Stream {
    /// Empty for the unnamed stream.
    pub name: String,
    pub kind: StreamKind,
    pub hash: Sha1,
    pub size: u64,
    /// The blob, when the hash is non-zero and the WIM has it.
    pub blob: Option<Arc<Blob>>,
}

/// wimlib's UNIX-data tagged item: owner, group, mode, device.
///
/// `mode` is a Linux `st_mode` (file type bits included: a FIFO, a device
/// or a socket exists in a WIM only as an empty file whose UNIX data says
/// what it is, which is how `wimlib-imagex capture --unix-data` stores
/// them). `rdev` is the low 32 bits of Linux's `dev_t` (glibc's
/// `makedev` layout: minor bits 0-7, major bits 8-19, minor bits 20-31),
/// which for every major below 4096 and minor below 2^20 is also the
/// encoding the kernel uses in a FUSE attribute and `mknod` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixData {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub rdev: u32,
}

/// File type bits of a UNIX-data mode (Linux values, as wimlib stores
/// them whatever the platform reading the WIM).
pub mod unix_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFSOCK: u32 = 0o140000;
    pub const S_IFLNK: u32 = 0o120000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFBLK: u32 = 0o060000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFCHR: u32 = 0o020000;
    pub const S_IFIFO: u32 = 0o010000;
}

/// A special file a UNIX-data mode can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl Special {
    /// The special file type `mode` names, if it names one.
    pub fn of_mode(mode: u32) -> Option<Special> {
        use unix_mode::*;
        match mode & S_IFMT {
            S_IFIFO => Some(Special::Fifo),
            S_IFCHR => Some(Special::CharDevice),
            S_IFBLK => Some(Special::BlockDevice),
            S_IFSOCK => Some(Special::Socket),
            _ => None,
        }
    }

    /// Its file type bits.
    pub fn mode_bits(self) -> u32 {
        use unix_mode::*;
        match self {
            Special::Fifo => S_IFIFO,
            Special::CharDevice => S_IFCHR,
            Special::BlockDevice => S_IFBLK,
            Special::Socket => S_IFSOCK,
        }
    }

    /// Does it carry a device number?
    pub fn is_device(self) -> bool {
        matches!(self, Special::CharDevice | Special::BlockDevice)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Special::Fifo => "FIFO",
            Special::CharDevice => "character device",
            Special::BlockDevice => "block device",
            Special::Socket => "socket",
        }
    }
}

impl UnixData {
    /// The special file this UNIX data says its (empty, non-directory)
    /// file is.
    pub fn special(&self) -> Option<Special> {
        Special::of_mode(self.mode)
    }
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub attributes: u32,
    pub security_id: i32,
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub reparse_tag: u32,
    pub rp_flags: u16,
    pub link_group: u64,
    pub streams: Vec<Stream>,
    pub unix: Option<UnixData>,
    pub object_id: Option<Vec<u8>>,
    /// Extended attributes tagged item (raw), if any.
    pub xattrs: Option<(u32, Vec<u8>)>,
    /// Reachable dentries naming this inode.
    pub dentries: Vec<u32>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.attributes & attr::DIRECTORY != 0
    }
    pub fn is_reparse(&self) -> bool {
        self.attributes & attr::REPARSE_POINT != 0
    }
    pub fn data(&self) -> Option<&Stream> {
        self.streams
            .iter()
            .find(|s| s.name.is_empty() && s.kind == StreamKind::Data)
    }
    pub fn reparse(&self) -> Option<&Stream> {
        self.streams.iter().find(|s| s.kind == StreamKind::Reparse)
    }
    pub fn named(&self) -> impl Iterator<Item = &Stream> {
        self.streams.iter().filter(|s| !s.name.is_empty())
    }
    pub fn stream(&self, name: &str) -> Option<&Stream> {
        if name.is_empty() {
            return self.data();
        }
        self.named()
            .find(|s| s.name == name)
            .or_else(|| self.named().find(|s| s.name.eq_ignore_ascii_case(name)))
    }
    pub fn size(&self) -> u64 {
        self.data().map_or(0, |s| s.size)
    }
    pub fn nlink(&self) -> u32 {
        self.dentries.len() as u32
    }
    /// The special file (FIFO, device, socket) the UNIX data says this is:
    /// only for a file that is neither a directory nor a reparse point.
    pub fn special(&self) -> Option<Special> {
        if self.is_dir() || self.is_reparse() {
            return None;
        }
        self.unix.as_ref().and_then(UnixData::special)
    }
}

#[derive(Debug, Clone)]
pub struct Dentry {
    pub name: String,
    pub short_name: String,
    pub parent: u32,
    pub inode: u32,
    /// Children sorted by name (case-sensitive byte order).
    pub children: Vec<u32>,
}

pub struct Image {
    pub index: u32,
    pub security: Vec<Vec<u8>>,
    /// `dentries[0]` is the root.
    pub dentries: Vec<Dentry>,
    /// `inodes[0]` is the root's.
    pub inodes: Vec<Inode>,
    pub warnings: Vec<String>,
}

pub const ROOT: u32 = 0;

/// Warning text for a stream whose blob is not in the WIM.
pub const MISSING: &str = "its data is missing from the WIM (blob not in the blob table)";

impl Image {
    /// Load image `index` (1-based) of `wim`.
    pub fn load(wim: &Wim, index: u32) -> Result<Image> {
        let raw = wim.read_metadata(index)?;
        let md = metadata::parse(&raw).map_err(|e| Error::Within {
            section: Section::Metadata,
            what: format!("image {index} metadata"),
            source: Box::new(e),
        })?;
        // The raw resource is no longer needed: free it before the tree is
        // built, which keeps a mount's peak memory down.
        drop(raw);
        Ok(Self::from_metadata(wim, index, md))
    }

    pub fn from_metadata(wim: &Wim, index: u32, md: metadata::Metadata) -> Image {
        let mut warnings = md.warnings;
        let mut recs = md.dentries;
        let n = recs.len();
        // One inode per record, built in parallel (blob lookups and the
        // moves out of the records are most of the load time); hard links
        // are merged afterwards.
        let make = |r: &mut DentryRecord| {
            let mut w = Vec::new();
            let streams = build_streams(wim, r, &mut w);
            (new_inode(r, streams), w)
        };
        let (mut inodes, notes): (Vec<Inode>, Vec<Vec<String>>) = if n < crate::PARALLEL_MIN {
            recs.iter_mut().map(make).unzip()
        } else {
            recs.par_iter_mut().with_min_len(256).map(make).unzip()
        };
        warnings.extend(notes.into_iter().flatten());
        let mut dentries: Vec<Dentry> = Vec::with_capacity(n);
        let mut keep = vec![true; n];
        let mut groups: HashMap<u64, u32> = HashMap::new();
        for (i, r) in recs.iter_mut().enumerate() {
            let linkable = !r.is_dir() && !r.is_reparse() && r.link_group != 0 && i != 0;
            let mut ino = i as u32;
            if linkable {
                match groups.get(&r.link_group) {
                    None => {
                        groups.insert(r.link_group, i as u32);
                    }
                    Some(&existing) => {
                        let (e, c) = (&inodes[existing as usize], &inodes[i]);
                        let same = e.streams.len() == c.streams.len()
                            && e.streams
                                .iter()
                                .zip(&c.streams)
                                .all(|(a, b)| a.hash == b.hash && a.name == b.name)
                            && e.attributes == c.attributes;
                        if same {
                            ino = existing;
                            keep[i] = false;
                        } else {
                            warnings.push(format!(
                                "hard link group {:#x}: {:?} differs from the other links; treated as a separate file",
                                r.link_group, r.name
                            ));
                        }
                    }
                }
            }
            dentries.push(Dentry {
                name: std::mem::take(&mut r.name),
                short_name: std::mem::take(&mut r.short_name),
                parent: if i == 0 { 0 } else { r.parent },
                inode: ino,
                children: Vec::new(),
            });
        }
        drop(recs);
        // Drop the inodes merged into a link group, renumbering in place.
        let mut new_index = vec![u32::MAX; n];
        let mut next = 0u32;
        for (i, k) in keep.iter().enumerate() {
            if *k {
                new_index[i] = next;
                next += 1;
            }
        }
        let mut it = keep.iter();
        inodes.retain(|_| it.next().copied().unwrap_or(false));
        for d in &mut dentries {
            d.inode = new_index[d.inode as usize];
        }
        // Children lists, sorted, exact duplicates dropped.
        let mut kids: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, d) in dentries.iter().enumerate().skip(1) {
            if (d.parent as usize) < n {
                kids[d.parent as usize].push(i as u32);
            }
        }
        let sort_dir = |(p, list): (usize, &mut Vec<u32>)| {
            let name = |i: &u32| dentries[*i as usize].name.as_str();
            // Stable: of equal names, the first stored stays.
            list.sort_by(|a, b| name(a).cmp(name(b)));
            let mut w = Vec::new();
            list.dedup_by(|c, last| {
                let dup = name(c) == name(last);
                if dup {
                    w.push(format!(
                        "duplicate name {:?} in directory {:?}; keeping the first",
                        name(c),
                        dentries[p].name
                    ));
                }
                dup
            });
            w
        };
        let dups: Vec<String> = if n < crate::PARALLEL_MIN {
            kids.iter_mut().enumerate().flat_map(sort_dir).collect()
        } else {
            kids.par_iter_mut()
                .enumerate()
                .with_min_len(256)
                .flat_map_iter(sort_dir)
                .collect()
        };
        warnings.extend(dups);
        for (i, k) in kids.into_iter().enumerate() {
            dentries[i].children = k;
        }
        // Reachability decides link counts.
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            let ino = dentries[d as usize].inode as usize;
            inodes[ino].dentries.push(d);
            stack.extend(dentries[d as usize].children.iter().copied());
        }
        for ino in &mut inodes {
            ino.dentries.sort_unstable();
        }
        let img = Image {
            index,
            security: md.security,
            dentries,
            inodes,
            warnings,
        };
        let missing: Vec<String> = img
            .missing_blobs()
            .map(|(d, s)| {
                let sfx = if s.name.is_empty() {
                    String::new()
                } else {
                    format!(":{}", s.name)
                };
                format!("{}{sfx}: {}", img.path(d), MISSING)
            })
            .collect();
        Image {
            warnings: [img.warnings, missing].concat(),
            ..img
        }
    }

    /// An image with only a root directory: what a read-only mount's
    /// [`crate::vfs::Vfs::image`] holds, whose tree is decoded lazily
    /// ([`lazy::LazyImage`]) and never built whole.
    pub fn placeholder(index: u32) -> Image {
        Image {
            index,
            security: Vec::new(),
            dentries: vec![Dentry {
                name: String::new(),
                short_name: String::new(),
                parent: ROOT,
                inode: 0,
                children: Vec::new(),
            }],
            inodes: vec![Inode {
                attributes: attr::DIRECTORY,
                security_id: -1,
                creation_time: 0,
                last_access_time: 0,
                last_write_time: 0,
                reparse_tag: 0,
                rp_flags: 0,
                link_group: 0,
                streams: Vec::new(),
                unix: None,
                object_id: None,
                xattrs: None,
                dentries: vec![ROOT],
            }],
            warnings: Vec::new(),
        }
    }

    /// Streams of reachable files whose blob the WIM lacks (a split WIM
    /// part not given, or a damaged blob table), with a dentry naming each.
    pub fn missing_blobs(&self) -> impl Iterator<Item = (u32, &Stream)> {
        self.inodes
            .iter()
            .filter(|i| !i.dentries.is_empty())
            .flat_map(|i| {
                i.streams
                    .iter()
                    .filter(|s| s.hash != ZERO_HASH && s.blob.is_none())
                    .map(move |s| (i.dentries[0], s))
            })
    }

    pub fn inode_of(&self, d: u32) -> &Inode {
        &self.inodes[self.dentries[d as usize].inode as usize]
    }

    /// Child of directory dentry `d` named `name` (exact match).
    pub fn child(&self, d: u32, name: &str) -> Option<u32> {
        let kids = &self.dentries.get(d as usize)?.children;
        kids.binary_search_by(|&c| self.dentries[c as usize].name.as_str().cmp(name))
            .ok()
            .map(|i| kids[i])
    }

    /// Resolve a path (`/` or `\` separated); exact match first, then a
    /// case-insensitive one as Windows would.
    pub fn lookup(&self, path: &str) -> Option<u32> {
        let mut d = ROOT;
        for comp in path.split(['/', '\\']).filter(|c| !c.is_empty()) {
            d = match self.child(d, comp) {
                Some(c) => c,
                None => *self.dentries[d as usize]
                    .children
                    .iter()
                    .find(|&&c| self.dentries[c as usize].name.eq_ignore_ascii_case(comp))?,
            };
        }
        Some(d)
    }

    /// Full path of a dentry, `/`-separated, starting with `/`.
    pub fn path(&self, d: u32) -> String {
        let mut parts = Vec::new();
        let mut cur = d;
        let mut guard = 0;
        while cur != ROOT && guard < 100_000 {
            parts.push(self.dentries[cur as usize].name.as_str());
            cur = self.dentries[cur as usize].parent;
            guard += 1;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// Every reachable dentry, parents before children.
    pub fn walk(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.dentries.len());
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            out.push(d);
            stack.extend(self.dentries[d as usize].children.iter().rev().copied());
        }
        out
    }

    /// Names in the image Windows could not create (see
    /// [`crate::nt::names`]), each with its path (`PATH:STREAM` for a named
    /// stream) and the rule it breaks: for `verify`, which warns about
    /// them. Of two names in a directory that differ only in case, the
    /// second in name order is reported, naming the first.
    pub fn windows_name_problems(&self) -> Vec<(String, names::Rule)> {
        let mut out = Vec::new();
        let mut seen_inode = vec![false; self.inodes.len()];
        for d in self.walk() {
            let dn = &self.dentries[d as usize];
            if d != ROOT {
                if let Err(r) = names::check_name(&dn.name) {
                    out.push((self.path(d), r));
                }
            }
            let mut folded: HashMap<String, u32> = HashMap::new();
            for &c in &dn.children {
                let name = &self.dentries[c as usize].name;
                match folded.entry(names::upcase(name)) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(c);
                    }
                    std::collections::hash_map::Entry::Occupied(o) => {
                        let first = self.dentries[*o.get() as usize].name.clone();
                        out.push((self.path(c), names::Rule::CaseCollision(first)));
                    }
                }
            }
            let ino = dn.inode as usize;
            if std::mem::replace(&mut seen_inode[ino], true) {
                continue;
            }
            let mut streams: Vec<&str> = Vec::new();
            for s in self.inodes[ino].named() {
                let at = || format!("{}:{}", self.path(d), s.name);
                if let Err(r) = names::check_stream_name(&s.name) {
                    out.push((at(), r));
                } else if let Some(o) = streams.iter().find(|o| names::same_name(o, &s.name)) {
                    out.push((at(), names::Rule::CaseCollision(o.to_string())));
                }
                streams.push(&s.name);
            }
        }
        out
    }

    pub fn security_descriptor(&self, id: i32) -> Option<&[u8]> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.security.get(i))
            .map(|v| v.as_slice())
    }
}

/// The inode a record describes; its tagged items move out of the record.
fn new_inode(r: &mut DentryRecord, streams: Vec<Stream>) -> Inode {
    let unix = r.tagged(tag::UNIX_DATA).filter(|t| t.len() >= 16).map(|t| {
        let u = |i: usize| u32::from_le_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
        UnixData {
            uid: u(0),
            gid: u(4),
            mode: u(8),
            rdev: u(12),
        }
    });
    let xattrs = r
        .tagged
        .iter_mut()
        .find(|(k, _)| *k == tag::XATTRS || *k == tag::LINUX_XATTRS)
        .map(|(k, v)| (*k, std::mem::take(v)));
    let object_id = r
        .tagged
        .iter_mut()
        .find(|(k, _)| *k == tag::OBJECT_ID)
        .map(|(_, v)| std::mem::take(v));
    Inode {
        attributes: r.attributes,
        security_id: r.security_id,
        creation_time: r.creation_time,
        last_access_time: r.last_access_time,
        last_write_time: r.last_write_time,
        reparse_tag: r.reparse_tag,
        rp_flags: r.rp_flags,
        link_group: r.link_group,
        streams,
        unix,
        object_id,
        xattrs,
        dentries: Vec::new(),
    }
}

/// Assign stream roles as Windows does: the dentry's own hash and unnamed
/// extra entries are, in order, the reparse data (for reparse points) and
/// the unnamed data stream; named entries are named data streams.
fn build_streams(wim: &Wim, r: &DentryRecord, warnings: &mut Vec<String>) -> Vec<Stream> {
    let roles = StreamRoles::of(r, warnings);
    let mut pre = Vec::new();
    if let Some(h) = roles.reparse {
        pre.push(mk_stream(wim, String::new(), StreamKind::Reparse, h));
    }
    if let Some(h) = roles.data {
        pre.push(mk_stream(wim, String::new(), StreamKind::Data, h));
    }
    for (name, h) in roles.named {
        pre.push(mk_stream(wim, name, StreamKind::Data, h));
    }
    pre
}

/// Which of a dentry's stream hashes is its reparse data, its unnamed data
/// and its named streams: the one reading of a record's streams, for
/// inodes made from it and for records copied as they are.
pub struct StreamRoles {
    pub reparse: Option<Sha1>,
    pub data: Option<Sha1>,
    pub named: Vec<(String, Sha1)>,
}

impl StreamRoles {
    pub fn of(r: &DentryRecord, warnings: &mut Vec<String>) -> StreamRoles {
        let mut unnamed: Vec<Sha1> = Vec::new();
        if r.streams.is_empty() || r.hash != ZERO_HASH {
            unnamed.push(r.hash);
        }
        let mut named = Vec::new();
        // Names taken, in a set: a hostile entry has up to 65,535 stream
        // entries, and comparing each with every earlier one is quadratic
        // (seconds per entry).
        let mut names: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for s in &r.streams {
            if s.name.is_empty() {
                unnamed.push(s.hash);
            } else if !names.insert(s.name.as_str()) {
                warnings.push(format!(
                    "{:?}: duplicate stream {:?} ignored",
                    r.name, s.name
                ));
            } else {
                named.push((s.name.clone(), s.hash));
            }
        }
        let mut it = unnamed.into_iter();
        let reparse = if r.is_reparse() { it.next() } else { None };
        let data = if !r.is_dir() || r.is_reparse() {
            it.next()
        } else {
            None
        };
        StreamRoles {
            reparse,
            data,
            named,
        }
    }
}

fn mk_stream(wim: &Wim, name: String, kind: StreamKind, hash: Sha1) -> Stream {
    let blob = if hash == ZERO_HASH {
        None
    } else {
        wim.blob(&hash)
    };
    Stream {
        size: blob.as_ref().map_or(0, |b| b.size),
        name,
        kind,
        hash,
        blob,
    }
}
