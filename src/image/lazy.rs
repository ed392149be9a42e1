//! An image decoded one directory at a time, for read-only mounts.
//!
//! [`super::Image::load`] decodes the whole metadata resource and builds
//! every dentry and inode: right for the verbs that need the whole tree
//! (apply, verify, dir, commit), but a mount of a real `install.wim`
//! image (100k+ entries, 60+ MB of metadata) would wait for all of it and
//! keep it resident. Here a mount reads only the security data and the
//! root entry; a directory's child list is decoded the first time the
//! directory is looked into. A child list is contiguous in the metadata
//! resource (it starts at the directory's `subdir_offset` and runs to an
//! end marker), so only the chunks holding it are decompressed, and
//! memory grows with what was visited.
//!
//! Numbers (the inode numbers a mount shows) must be stable and unique
//! without knowing the whole tree, whatever order directories are decoded
//! in: the root is [`ROOT_NO`]; any other entry is numbered from its
//! offset in the metadata resource (`offset / 8 + 1`: entries are 8-byte
//! aligned, and no offset is below 8). Hard links (dentries of one link
//! group with the same streams and attributes) share the number of the
//! first of them decoded, remembered for the mount's life. Their link
//! count needs every dentry of the group, which only a walk of the whole
//! tree finds: that walk (the census) runs once, and only when a linked
//! file's count is first asked for.

use super::{build_streams, new_inode, Inode, MISSING};
use crate::error::{Error, Result, Section};
use crate::wim::metadata::{self, DentryRecord, Extent, ListEntry};
use crate::wim::{Blob, Wim, ZERO_HASH};
use parking_lot::{Mutex, RwLock};
use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The root's number (FUSE's root inode).
pub const ROOT_NO: u64 = 1;

/// First window read for a child list: most lists are far smaller, and a
/// larger one is read again with a doubled window.
const FIRST_WINDOW: u64 = 16 << 10;

/// Most names a path in a message shows (the deepest ones).
const MAX_PATH_PARTS: usize = 256;

/// Decoded metadata chunks kept for the next lists (neighbouring
/// directories usually share chunks), in bytes; the latest is always kept.
const RECENT_CHUNK_BYTES: usize = 1 << 20;

/// A hard link group as the lazy image tells groups apart: the stored
/// group id and a fingerprint of the streams and attributes (dentries of
/// one group that differ are separate files, as in the full decode).
type LinkKey = (u64, u64);

/// One decoded dentry.
pub struct Entry {
    /// Its inode number (shared by the hard links of one file).
    pub no: u64,
    /// The number of its directory (the root's is its own).
    pub parent: u64,
    pub name: String,
    pub short_name: String,
    pub inode: Inode,
    /// Offset in the metadata resource.
    pub offset: u64,
    /// Offset of its child list (0: none).
    list: u64,
    link: Option<LinkKey>,
    /// The POSIX target of a symlink or junction, for the view that shows
    /// it (decoded on first use; `None` inside: it does not decode).
    pub link_target: OnceLock<Option<String>>,
}

impl Entry {
    /// Is it one of a hard link group (its link count needs the census)?
    pub fn is_linked(&self) -> bool {
        self.link.is_some()
    }
}

/// A decoded directory: its children sorted by name (case-sensitive byte
/// order), exact duplicates dropped.
pub struct Dir {
    pub kids: Vec<Arc<Entry>>,
}

impl Dir {
    /// The child named `name` (exact match).
    pub fn child(&self, name: &str) -> Option<&Arc<Entry>> {
        self.kids
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.kids[i])
    }
}

enum DirState {
    Ok(Arc<Dir>),
    /// Decoding failed: the message, logged once and reported each time.
    Failed(String),
}

#[derive(Default)]
struct State {
    /// Every decoded entry by number (of a hard link group, the first).
    entries: HashMap<u64, Arc<Entry>>,
    /// Decoded (or failed) directories by number.
    dirs: HashMap<u64, DirState>,
    /// Offsets of every decoded entry: an entry reached twice is a cycle.
    offsets: HashSet<u64>,
    /// Number and dentries seen so far of each hard link group.
    groups: HashMap<LinkKey, (u64, u32)>,
}

/// (resource id, chunk index) and the chunk's bytes.
type RecentChunk = ((u64, u64), Arc<Vec<u8>>);

/// Reads byte ranges of an image's metadata resource, decoding only the
/// chunks that hold them.
struct MetaSource {
    blob: Arc<Blob>,
    size: u64,
    /// Recently decoded chunks, the latest first.
    recent: Mutex<VecDeque<RecentChunk>>,
    /// Bytes of the resource read so far (windows, re-reads included).
    read: AtomicU64,
}

impl MetaSource {
    fn chunk(&self, r: &crate::wim::resource::Resource, c: u64) -> Result<Arc<Vec<u8>>> {
        let key = (r.id, c);
        if let Some((_, b)) = self.recent.lock().iter().find(|(k, _)| *k == key) {
            return Ok(b.clone());
        }
        let data = Arc::new(r.read_chunk(c)?);
        let mut q = self.recent.lock();
        q.push_front((key, data.clone()));
        let mut total = 0;
        let keep = q
            .iter()
            .take_while(|(_, b)| {
                total += b.len();
                total <= RECENT_CHUNK_BYTES
            })
            .count()
            .max(1);
        q.truncate(keep);
        Ok(data)
    }

    /// Bytes `[start, end)` of the resource (`end` is capped at its size).
    fn read(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        let end = end.min(self.size);
        let want = end.saturating_sub(start);
        let mut out = Vec::with_capacity(want as usize);
        for s in self.blob.segments(start, want) {
            let r = &s.resource;
            if r.is_raw() {
                let at = out.len();
                out.resize(at + s.len as usize, 0);
                r.source
                    .read_exact_at(&mut out[at..], r.reshdr.offset + s.offset)?;
                continue;
            }
            let cs = u64::from(r.chunk_size.max(1));
            for c in s.offset / cs..=(s.offset + s.len - 1) / cs {
                let data = self.chunk(r, c)?;
                let cstart = c * cs;
                let a = s.offset.max(cstart) - cstart;
                let e = (s.offset + s.len).min(cstart + data.len() as u64) - cstart;
                out.extend_from_slice(data.get(a as usize..e as usize).unwrap_or_default());
            }
        }
        if out.len() as u64 != want {
            return Err(Error::corrupt(
                Section::Metadata,
                Some(start),
                "metadata resource is short",
            ));
        }
        self.read.fetch_add(want, Ordering::Relaxed);
        Ok(out)
    }

    /// Run `parse` on a window of the resource from `start`, widening the
    /// window (doubling it) while the parse fails and the resource has
    /// more bytes: only an error on a window that reaches the resource's
    /// end is the resource's.
    fn with_window<T>(&self, start: u64, parse: impl Fn(&[u8]) -> Result<T>) -> Result<T> {
        let mut len = FIRST_WINDOW;
        loop {
            let end = start.saturating_add(len).min(self.size);
            let buf = self.read(start, end)?;
            match parse(&buf) {
                Ok(v) => return Ok(v),
                Err(e) if end >= self.size => return Err(e),
                Err(_) => len = len.saturating_mul(2),
            }
        }
    }
}

/// An image whose directories are decoded when first looked into.
pub struct LazyImage {
    pub index: u32,
    wim: Arc<Wim>,
    src: MetaSource,
    security: Vec<Vec<u8>>,
    root: Arc<Entry>,
    state: RwLock<State>,
    /// Dentries per hard link group, counted over the whole tree once.
    census: OnceLock<Option<HashMap<LinkKey, u32>>>,
    decoded: AtomicUsize,
}

fn offset_no(offset: u64) -> u64 {
    offset / 8 + 1
}

impl LazyImage {
    /// Open image `index` (1-based) of `wim`: reads the security data and
    /// the root entry, nothing else.
    pub fn open(wim: Arc<Wim>, index: u32) -> Result<LazyImage> {
        let blob = wim
            .metadata
            .get((index as usize).wrapping_sub(1))
            .ok_or_else(|| Error::NoSuchImage(index.to_string()))?
            .clone();
        if blob.size > crate::wim::MAX_TABLE_SIZE {
            // As `Wim::read_metadata` refuses it: a window is never allowed
            // to grow past a sane size.
            return Err(Error::corrupt(
                Section::Metadata,
                None,
                format!(
                    "metadata resource of image {index} claims {} bytes",
                    blob.size
                ),
            ));
        }
        let within = |e: Error| Error::Within {
            section: Section::Metadata,
            what: format!("image {index} metadata"),
            source: Box::new(e),
        };
        let src = MetaSource {
            size: blob.size,
            blob,
            recent: Mutex::new(VecDeque::new()),
            read: AtomicU64::new(0),
        };
        let (security, root_off) = src
            .with_window(0, metadata::parse_security)
            .map_err(within)?;
        let root = src
            .with_window(root_off, |b| metadata::parse_root(b, root_off, root_off))
            .map_err(within)?;
        let ListEntry { mut record, subdir } = root;
        let mut w = Vec::new();
        let streams = build_streams(&wim, &record, &mut w);
        for m in w {
            log::warn!("/: {m}");
        }
        let root = Arc::new(Entry {
            no: ROOT_NO,
            parent: ROOT_NO,
            name: String::new(),
            short_name: std::mem::take(&mut record.short_name),
            inode: new_inode(&mut record, streams),
            offset: root_off,
            list: subdir,
            link: None,
            link_target: OnceLock::new(),
        });
        let mut state = State::default();
        state.entries.insert(ROOT_NO, root.clone());
        state.offsets.insert(root_off);
        Ok(LazyImage {
            index,
            wim,
            src,
            security,
            root,
            state: RwLock::new(state),
            census: OnceLock::new(),
            decoded: AtomicUsize::new(0),
        })
    }

    pub fn wim(&self) -> &Arc<Wim> {
        &self.wim
    }

    pub fn root(&self) -> &Arc<Entry> {
        &self.root
    }

    /// The decoded entry numbered `no` (`None`: no such number, or its
    /// directory was not decoded yet).
    pub fn entry(&self, no: u64) -> Option<Arc<Entry>> {
        self.state.read().entries.get(&no).cloned()
    }

    /// How many directories have been decoded (mount-time laziness is
    /// tested through it).
    pub fn decoded_dirs(&self) -> usize {
        self.decoded.load(Ordering::Relaxed)
    }

    /// Bytes of the metadata resource read so far, re-reads included: what
    /// a walk costs, so tests can bound it on hostile images.
    pub fn metadata_bytes_read(&self) -> u64 {
        self.src.read.load(Ordering::Relaxed)
    }

    /// How many entries are decoded now.
    pub fn decoded_entries(&self) -> usize {
        self.state.read().entries.len()
    }

    /// The image's security descriptors, by id.
    pub fn security_table(&self) -> &[Vec<u8>] {
        &self.security
    }

    /// Size of the image's metadata resource: every entry's offset is
    /// below it.
    pub fn metadata_size(&self) -> u64 {
        self.src.size
    }

    pub fn security_descriptor(&self, id: i32) -> Option<&[u8]> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.security.get(i))
            .map(|v| v.as_slice())
    }

    /// Files and directories the image holds, as its XML says (a hint:
    /// counting them would decode the whole tree).
    pub fn count_hint(&self) -> u64 {
        self.wim
            .info(self.index)
            .map(|i| {
                i.dir_count
                    .unwrap_or(0)
                    .saturating_add(i.file_count.unwrap_or(0))
            })
            .filter(|&n| n > 0)
            .unwrap_or_else(|| self.decoded_entries() as u64)
    }

    /// Full path of a decoded entry (for messages).
    pub fn path(&self, e: &Entry) -> String {
        Self::path_in(&self.state.read(), e)
    }

    fn path_in(st: &State, e: &Entry) -> String {
        let mut parts = vec![e.name.clone()];
        let mut cur = e.parent;
        let mut guard = 0;
        while cur != ROOT_NO {
            let Some(p) = st.entries.get(&cur) else { break };
            if guard == MAX_PATH_PARTS {
                // A message names the deepest part of a hostile tree's path:
                // walking all of it for each would make a walk quadratic.
                parts.push("…".into());
                break;
            }
            parts.push(p.name.clone());
            cur = p.parent;
            guard += 1;
        }
        if e.no == ROOT_NO {
            return "/".into();
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// The children of directory `e`, decoded on first use. A directory
    /// whose list does not decode is an error each time it is asked for
    /// (logged once, naming it), never a panic; the rest of the image
    /// stays readable.
    pub fn children(&self, e: &Entry) -> Result<Arc<Dir>> {
        if let Some(d) = self.known(e.no) {
            return d;
        }
        let path = PathOf {
            image: self,
            entry: e,
            text: OnceCell::new(),
        };
        // Offsets of the entries the list's last reading reached.
        let scanned = RefCell::new(Vec::new());
        let built = self.decode(e, &path, &scanned);
        let mut st = self.state.write();
        // Another thread may have decoded it meanwhile: theirs stands.
        if let Some(d) = st.dirs.get(&e.no) {
            return dir_result(d);
        }
        let dir = built.and_then(|kids| Self::place(&mut st, e.no, kids));
        match dir {
            Ok(d) => {
                // What a mount decoded, and when (`-vv` shows it): laziness
                // is visible from outside too.
                log::debug!(
                    "decoded directory {} ({} entries)",
                    path.get_with(&st),
                    d.kids.len()
                );
                self.decoded.fetch_add(1, Ordering::Relaxed);
                st.dirs.insert(e.no, DirState::Ok(d.clone()));
                Ok(d)
            }
            Err(err) => {
                // The entries this list reached are claimed all the same:
                // another list reaching them is refused at the first one,
                // so directories pointing at the entries of one list one
                // after another cost one window each, not a scan to where
                // the entries were first claimed (quadratic).
                st.offsets.extend(scanned.into_inner());
                let msg = format!("directory {}: {err}", path.get_with(&st));
                log::error!("{msg}");
                st.dirs.insert(e.no, DirState::Failed(msg.clone()));
                Err(Error::corrupt(Section::Metadata, None, msg))
            }
        }
    }

    fn known(&self, no: u64) -> Option<Result<Arc<Dir>>> {
        self.state.read().dirs.get(&no).map(dir_result)
    }

    /// Child `name` of directory `e` (exact match).
    pub fn child(&self, e: &Entry, name: &str) -> Result<Option<Arc<Entry>>> {
        Ok(self.children(e)?.child(name).cloned())
    }

    /// Resolve a `/`-separated path by exact names, decoding the
    /// directories on it (and only those).
    pub fn lookup(&self, path: &str) -> Result<Option<Arc<Entry>>> {
        let mut cur = self.root.clone();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            match self.child(&cur, comp)? {
                Some(c) => cur = c,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// The link count of `e`'s inode: 1 unless it is hard-linked; then the
    /// census says (it walks the whole tree once; should that fail, the
    /// count is that of the links decoded so far).
    pub fn nlink(&self, e: &Entry) -> u32 {
        let Some(key) = e.link else { return 1 };
        let census = self.census.get_or_init(|| match self.count_links() {
            Ok(m) => Some(m),
            Err(err) => {
                log::error!("image {}: counting hard links: {err}", self.index);
                None
            }
        });
        match census.as_ref().and_then(|m| m.get(&key)) {
            Some(&n) => n,
            None => self
                .state
                .read()
                .groups
                .get(&key)
                .map_or(1, |&(_, seen)| seen.max(1)),
        }
    }

    /// Read and decode the child list of `e` into entries (numbers not
    /// yet assigned), sorted and de-duplicated.
    fn decode(&self, e: &Entry, path: &PathOf, scanned: &RefCell<Vec<u64>>) -> Result<Vec<Entry>> {
        if e.list == 0 {
            return Ok(Vec::new());
        }
        // An entry already claimed by another list is a cycle: refused as
        // the list is measured, before any of it is decoded.
        let (list, warnings) = self.read_list(e.list, |off| {
            let mut s = scanned.borrow_mut();
            if off == e.list {
                // A wider window: the list is measured again from its start.
                s.clear();
            }
            if self.state.read().offsets.contains(&off) {
                return Err(cycle(off));
            }
            s.push(off);
            Ok(())
        })?;
        for w in warnings {
            log::warn!("{w} in directory {:?}", path.get());
        }
        let mut kids = Vec::with_capacity(list.len());
        for ListEntry { mut record, subdir } in list {
            let mut w = Vec::new();
            let link = link_key(&record);
            let streams = build_streams(&self.wim, &record, &mut w);
            let name = std::mem::take(&mut record.name);
            let inode = new_inode(&mut record, streams);
            for m in w {
                log::warn!("{}/{name}: {m}", path.get());
            }
            for s in &inode.streams {
                if s.hash != ZERO_HASH && s.blob.is_none() {
                    let sfx = if s.name.is_empty() {
                        String::new()
                    } else {
                        format!(":{}", s.name)
                    };
                    log::warn!("{}/{name}{sfx}: {MISSING}", path.get());
                }
            }
            kids.push(Entry {
                no: 0,
                parent: e.no,
                name,
                short_name: std::mem::take(&mut record.short_name),
                inode,
                offset: record.offset,
                list: subdir,
                link,
                link_target: OnceLock::new(),
            });
        }
        for dup in sort_dedup(&mut kids, |k| k.name.as_str()) {
            log::warn!(
                "duplicate name {dup:?} in directory {:?}; keeping the first",
                path.get()
            );
        }
        Ok(kids)
    }

    /// Read and decode the child list at `list_off`: the window grows
    /// (doubling, so each read is at most twice one that held data) only
    /// while the list runs past it, and the list is decoded once, from the
    /// window that holds all of it. `seen` may refuse an entry's offset.
    fn read_list(
        &self,
        list_off: u64,
        mut seen: impl FnMut(u64) -> Result<()>,
    ) -> Result<(Vec<ListEntry>, Vec<String>)> {
        // Entries are 8-byte aligned (their lengths are rounded up to 8):
        // a list elsewhere would give entries numbers (`offset / 8`) that
        // another entry has.
        if !list_off.is_multiple_of(8) {
            return Err(Error::corrupt(
                Section::Metadata,
                Some(list_off),
                format!("child list at offset {list_off:#x} is not 8-byte aligned"),
            ));
        }
        let size = self.src.size;
        let mut len = FIRST_WINDOW;
        loop {
            let end = list_off.saturating_add(len).min(size);
            let buf = self.src.read(list_off, end)?;
            match metadata::list_extent(&buf, list_off, list_off, &mut seen)? {
                Extent::Ends(e) => {
                    let b = buf.get(..(e - list_off) as usize).unwrap_or_default();
                    let mut w = Vec::new();
                    let l = metadata::parse_list(b, list_off, list_off, &mut w)?;
                    return Ok((l, w));
                }
                Extent::Needs(n) if n > size => {
                    return Err(Error::corrupt(
                        Section::Metadata,
                        Some(list_off),
                        format!(
                            "child list at offset {list_off:#x} runs past the end of the \
                             metadata resource ({size} bytes)"
                        ),
                    ));
                }
                Extent::Needs(_) => len = len.saturating_mul(2),
            }
        }
    }

    /// Number the new entries and enter them (under the state lock): an
    /// entry already decoded elsewhere means a cycle.
    fn place(st: &mut State, parent: u64, kids: Vec<Entry>) -> Result<Arc<Dir>> {
        if let Some(k) = kids.iter().find(|k| st.offsets.contains(&k.offset)) {
            return Err(cycle(k.offset));
        }
        let mut out = Vec::with_capacity(kids.len());
        for mut k in kids {
            st.offsets.insert(k.offset);
            let own = offset_no(k.offset);
            let mut first = true;
            k.no = match k.link {
                None => own,
                Some(key) => {
                    let g = st.groups.entry(key).or_insert((own, 0));
                    g.1 += 1;
                    first = g.1 == 1;
                    g.0
                }
            };
            k.parent = parent;
            let k = Arc::new(k);
            if first {
                st.entries.insert(k.no, k.clone());
            }
            out.push(k);
        }
        Ok(Arc::new(Dir { kids: out }))
    }

    /// Walk the whole tree (reading lists, keeping nothing) and count the
    /// reachable dentries of every hard link group.
    fn count_links(&self) -> Result<HashMap<LinkKey, u32>> {
        let t = std::time::Instant::now();
        let mut counts: HashMap<LinkKey, u32> = HashMap::new();
        let mut seen: HashSet<u64> = HashSet::new();
        seen.insert(self.root.offset);
        // Lists read: directories sharing an (empty) list read it once.
        let mut lists: HashSet<u64> = HashSet::new();
        let mut work = vec![self.root.list];
        while let Some(list) = work.pop() {
            if list == 0 || !lists.insert(list) {
                continue;
            }
            let (entries, _) = self.read_list(list, |off| {
                if seen.contains(&off) {
                    return Err(cycle(off));
                }
                Ok(())
            })?;
            let mut kids: Vec<(String, Option<LinkKey>, u64)> = Vec::new();
            for ListEntry { mut record, subdir } in entries {
                if !seen.insert(record.offset) {
                    return Err(Error::corrupt(
                        Section::Metadata,
                        Some(record.offset),
                        "directory cycle",
                    ));
                }
                let key = link_key(&record);
                kids.push((std::mem::take(&mut record.name), key, subdir));
            }
            sort_dedup(&mut kids, |k| k.0.as_str());
            for (_, key, subdir) in kids {
                if let Some(k) = key {
                    *counts.entry(k).or_insert(0) += 1;
                }
                work.push(subdir);
            }
        }
        log::debug!(
            "image {}: hard link census of {} entries in {:?}",
            self.index,
            seen.len(),
            t.elapsed()
        );
        Ok(counts)
    }
}

/// A directory's path for messages, built only when one is needed: it
/// walks up to the root, which for every directory decoded would make a
/// walk of a deep tree quadratic.
struct PathOf<'a> {
    image: &'a LazyImage,
    entry: &'a Entry,
    text: OnceCell<String>,
}

impl PathOf<'_> {
    fn get(&self) -> &str {
        self.text.get_or_init(|| self.image.path(self.entry))
    }

    /// The same, with the state already locked (by this thread).
    fn get_with(&self, st: &State) -> &str {
        self.text.get_or_init(|| LazyImage::path_in(st, self.entry))
    }
}

fn cycle(offset: u64) -> Error {
    Error::corrupt(
        Section::Metadata,
        Some(offset),
        format!("directory cycle: the entry at offset {offset:#x} is reached twice"),
    )
}

fn dir_result(d: &DirState) -> Result<Arc<Dir>> {
    match d {
        DirState::Ok(d) => Ok(d.clone()),
        DirState::Failed(m) => Err(Error::corrupt(Section::Metadata, None, m.clone())),
    }
}

/// The hard link group a dentry belongs to, if it can share one (as in
/// the full decode: not directories, not reparse points, not group 0).
/// Dentries of one group are one file only if their attributes and
/// stream entries are the same (the full decode compares them with the
/// group's first; a fingerprint gives the same answer whatever order
/// directories are decoded in, and the census computes it from the
/// record alone, without looking up a blob).
fn link_key(r: &DentryRecord) -> Option<LinkKey> {
    if r.is_dir() || r.is_reparse() || r.link_group == 0 {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.attributes.hash(&mut h);
    r.hash.hash(&mut h);
    for s in &r.streams {
        s.name.hash(&mut h);
        s.hash.hash(&mut h);
    }
    Some((r.link_group, h.finish()))
}

/// Sort by name (stable: of equal names the first stored stays first) and
/// drop exact duplicates; returns the names dropped.
fn sort_dedup<T>(v: &mut Vec<T>, name: impl Fn(&T) -> &str) -> Vec<String> {
    v.sort_by(|a, b| name(a).cmp(name(b)));
    let mut dups = Vec::new();
    v.dedup_by(|c, last| {
        let dup = name(c) == name(last);
        if dup {
            dups.push(name(c).to_string());
        }
        dup
    });
    dups
}

#[cfg(test)]
mod tests {
    use crate::wim::metadata::{self, attr, DentryRecord};

    fn rec(parent: u32, name: &str, attributes: u32) -> DentryRecord {
        DentryRecord {
            parent,
            name: name.into(),
            attributes,
            security_id: -1,
            ..DentryRecord::default()
        }
    }

    /// A root with a directory `big` of 40 files and a file beside it.
    fn sample() -> Vec<u8> {
        let mut v = vec![rec(0, "", attr::DIRECTORY), rec(0, "big", attr::DIRECTORY)];
        for i in 0..40 {
            v.push(rec(1, &format!("file number {i:02}"), attr::ARCHIVE));
        }
        v.push(rec(0, "top.txt", attr::ARCHIVE));
        metadata::write(&[vec![1, 2, 3]], &v)
    }

    /// The list of `big`, decoded from windows of every length that start
    /// at it: the whole list or an error, never a panic, never a shorter
    /// list; a window that starts later than the list is an error too.
    #[test]
    fn a_child_list_decodes_from_a_window_or_fails_cleanly() {
        let buf = sample();
        let (sec, root_off) = metadata::parse_security(&buf).unwrap();
        assert_eq!(sec, vec![vec![1, 2, 3]]);
        let root = metadata::parse_root(&buf[root_off as usize..], root_off, root_off).unwrap();
        let mut w = Vec::new();
        let top = metadata::parse_list(&buf, 0, root.subdir, &mut w).unwrap();
        let names: Vec<_> = top.iter().map(|e| e.record.name.as_str()).collect();
        assert_eq!(names, ["big", "top.txt"]);
        let list = top[0].subdir;
        assert_ne!(list, 0);
        assert_eq!(top[1].subdir, 0);
        let full = metadata::parse_list(&buf, 0, list, &mut w).unwrap();
        assert_eq!(full.len(), 40);
        assert!(w.is_empty(), "{w:?}");
        let mut whole_at = None;
        for end in list as usize..=buf.len() {
            let win = &buf[list as usize..end];
            match metadata::parse_list(win, list, list, &mut Vec::new()) {
                Ok(got) => {
                    assert_eq!(got.len(), 40, "window to {end}");
                    assert_eq!(got[39].record.name, "file number 39");
                    assert_eq!(got[7].record.offset, full[7].record.offset);
                    whole_at.get_or_insert(end);
                }
                Err(_) => assert!(
                    whole_at.is_none(),
                    "window to {end} failed after one worked"
                ),
            }
        }
        assert!(whole_at.is_some());
        assert!(metadata::parse_list(&buf[list as usize + 8..], list + 8, list, &mut w).is_err());
    }
}
