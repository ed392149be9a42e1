//! Build a [`NewImage`] from scratch, node by node, without assembling raw
//! dentry records: the builder keeps the rules a WIM's metadata has (the
//! root first, parents before children, one name per directory entry, the
//! same streams on every name of a hard-linked file, a link group shared by
//! those names and by nothing else, security descriptors stored once and
//! referenced by index, reparse data apart from the file's data).
//!
//! A capture walks a directory tree and calls it; tests build images with
//! it; [`crate::commit::writer::WimWriter`] writes the result.

use super::{EntryStreams, NewImage, StreamData};
use crate::error::{Error, Result};
use crate::wim::metadata::{attr, DentryRecord};
use crate::wim::ZERO_HASH;
use std::collections::{HashMap, HashSet};

/// A node of the image being built (an index into its records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(usize);

/// What a file or directory carries besides its name and streams.
#[derive(Debug, Clone, Default)]
pub struct NodeMeta {
    /// FILE_ATTRIBUTE_* bits; DIRECTORY and REPARSE_POINT are set by the
    /// builder from what is added. Zero for a file means NORMAL.
    pub attributes: u32,
    /// Windows FILETIMEs.
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    /// A self-relative security descriptor (stored once per image however
    /// many files share it).
    pub security: Option<Vec<u8>>,
    /// The DOS 8.3 name, if any.
    pub short_name: String,
    /// Tagged items (object ID, UNIX data, ...) as (tag, bytes).
    pub tagged: Vec<(u32, Vec<u8>)>,
}

/// Builds a [`NewImage`].
pub struct ImageBuilder {
    security: Vec<Vec<u8>>,
    security_ids: HashMap<Vec<u8>, i32>,
    records: Vec<DentryRecord>,
    streams: Vec<EntryStreams>,
    /// Names taken in each directory (as given: WIM names are case
    /// sensitive, as on a case-sensitive capture source).
    names: HashMap<usize, HashSet<String>>,
    /// For each record, the record that holds its link group's streams.
    link_of: HashMap<usize, usize>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new(NodeMeta::default())
    }
}

impl ImageBuilder {
    /// An image holding only its root directory, described by `root`.
    pub fn new(root: NodeMeta) -> ImageBuilder {
        let mut b = ImageBuilder {
            security: Vec::new(),
            security_ids: HashMap::new(),
            records: Vec::new(),
            streams: Vec::new(),
            names: HashMap::new(),
            link_of: HashMap::new(),
        };
        let rec = b.record(0, String::new(), &root, attr::DIRECTORY);
        b.records.push(rec);
        b.streams.push(EntryStreams::default());
        b
    }

    /// The root directory.
    pub fn root(&self) -> NodeId {
        NodeId(0)
    }

    fn record(&mut self, parent: usize, name: String, m: &NodeMeta, kind: u32) -> DentryRecord {
        let security_id = match &m.security {
            None => -1,
            Some(sd) => match self.security_ids.get(sd) {
                Some(&id) => id,
                None => {
                    let id = self.security.len() as i32;
                    self.security.push(sd.clone());
                    self.security_ids.insert(sd.clone(), id);
                    id
                }
            },
        };
        let mut attributes = (m.attributes & !(attr::DIRECTORY | attr::REPARSE_POINT)) | kind;
        if attributes == 0 {
            attributes = attr::NORMAL;
        }
        DentryRecord {
            parent: parent as u32,
            offset: 0,
            name,
            short_name: m.short_name.clone(),
            attributes,
            security_id,
            creation_time: m.creation_time,
            last_access_time: m.last_access_time,
            last_write_time: m.last_write_time,
            hash: ZERO_HASH,
            reparse_tag: 0,
            rp_flags: 0,
            link_group: 0,
            streams: Vec::new(),
            tagged: m.tagged.clone(),
        }
    }

    /// Check that `parent` is a directory that has no entry `name` yet, and
    /// take the name.
    fn take_name(&mut self, parent: NodeId, name: &str) -> Result<()> {
        let p = self
            .records
            .get(parent.0)
            .ok_or_else(|| Error::Other(format!("image builder: no node {}", parent.0)))?;
        if !p.is_dir() || p.is_reparse() {
            return Err(Error::Other(format!(
                "image builder: \"{}\" is not a directory",
                p.name
            )));
        }
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(Error::Other(format!(
                "image builder: \"{name}\" cannot be a file name"
            )));
        }
        if !self
            .names
            .entry(parent.0)
            .or_default()
            .insert(name.to_string())
        {
            return Err(Error::Other(format!(
                "image builder: \"{name}\" exists already in \"{}\"",
                self.records[parent.0].name
            )));
        }
        Ok(())
    }

    fn push(&mut self, rec: DentryRecord, streams: EntryStreams) -> NodeId {
        self.records.push(rec);
        self.streams.push(streams);
        NodeId(self.records.len() - 1)
    }

    /// Add a directory.
    pub fn add_dir(&mut self, parent: NodeId, name: &str, meta: &NodeMeta) -> Result<NodeId> {
        self.take_name(parent, name)?;
        let rec = self.record(parent.0, name.into(), meta, attr::DIRECTORY);
        Ok(self.push(rec, EntryStreams::default()))
    }

    /// Add a regular file whose unnamed stream is `data`.
    pub fn add_file(
        &mut self,
        parent: NodeId,
        name: &str,
        meta: &NodeMeta,
        data: StreamData,
    ) -> Result<NodeId> {
        self.take_name(parent, name)?;
        let rec = self.record(parent.0, name.into(), meta, 0);
        Ok(self.push(
            rec,
            EntryStreams {
                data: Some(data),
                ..Default::default()
            },
        ))
    }

    /// Add a reparse point (a symbolic link, a junction, ...) with tag
    /// `tag` and reparse data `reparse` (without its 8-byte header); a
    /// directory reparse point when `dir`.
    pub fn add_reparse_point(
        &mut self,
        parent: NodeId,
        name: &str,
        meta: &NodeMeta,
        tag: u32,
        reparse: StreamData,
        dir: bool,
    ) -> Result<NodeId> {
        self.take_name(parent, name)?;
        let kind = attr::REPARSE_POINT | if dir { attr::DIRECTORY } else { 0 };
        let mut rec = self.record(parent.0, name.into(), meta, kind);
        rec.reparse_tag = tag;
        Ok(self.push(
            rec,
            EntryStreams {
                data: Some(StreamData::Empty),
                reparse: Some(reparse),
                named: Vec::new(),
            },
        ))
    }

    /// Set the reparse flags of the reparse point `node` (a capture marks
    /// absolute symlinks it could not make relative to the image root with
    /// [`crate::reparse::RP_NOT_FIXED`], so an apply leaves them as they
    /// are).
    pub fn set_rp_flags(&mut self, node: NodeId, flags: u16) -> Result<()> {
        let head = self.link_of.get(&node.0).copied().unwrap_or(node.0);
        match self.records.get_mut(head) {
            Some(r) if r.is_reparse() => {
                r.rp_flags = flags;
                Ok(())
            }
            _ => Err(Error::Other(format!(
                "image builder: node {} is not a reparse point",
                node.0
            ))),
        }
    }

    /// Add another name for the file `target` (a hard link): both names
    /// then show one file, with one set of streams and metadata.
    pub fn add_hard_link(&mut self, parent: NodeId, name: &str, target: NodeId) -> Result<NodeId> {
        let t = self
            .records
            .get(target.0)
            .ok_or_else(|| Error::Other(format!("image builder: no node {}", target.0)))?;
        if t.is_dir() || target.0 == 0 {
            return Err(Error::Other(format!(
                "image builder: \"{}\" is a directory; it cannot have another name",
                t.name
            )));
        }
        self.take_name(parent, name)?;
        let head = self.link_of.get(&target.0).copied().unwrap_or(target.0);
        let mut rec = self.records[head].clone();
        rec.parent = parent.0 as u32;
        rec.name = name.into();
        // A short name belongs to one name of the file, not to all.
        rec.short_name = String::new();
        let id = self.push(rec, EntryStreams::default());
        self.link_of.insert(target.0, head);
        self.link_of.insert(id.0, head);
        Ok(id)
    }

    /// Add a named data stream to the file or directory `node` (and so to
    /// every name of it).
    pub fn add_named_stream(&mut self, node: NodeId, name: &str, data: StreamData) -> Result<()> {
        if node.0 >= self.records.len() {
            return Err(Error::Other(format!("image builder: no node {}", node.0)));
        }
        if name.is_empty() || name.contains(['/', '\\', ':', '\0']) {
            return Err(Error::Other(format!(
                "image builder: \"{name}\" cannot be a stream name"
            )));
        }
        let head = self.link_of.get(&node.0).copied().unwrap_or(node.0);
        let named = &mut self.streams[head].named;
        if named.iter().any(|(n, _)| n == name) {
            return Err(Error::Other(format!(
                "image builder: stream \"{name}\" exists already"
            )));
        }
        named.push((name.into(), data));
        Ok(())
    }

    /// The image: every name of a hard-linked file gets the streams and
    /// metadata of the file and a link group of its own.
    pub fn finish(mut self) -> NewImage {
        let mut groups: HashMap<usize, u64> = HashMap::new();
        let mut links: Vec<(usize, usize)> = self.link_of.iter().map(|(&i, &h)| (i, h)).collect();
        links.sort_unstable();
        for (i, head) in links {
            let next = groups.len() as u64 + 1;
            let g = *groups.entry(head).or_insert(next);
            if i != head {
                let short = std::mem::take(&mut self.records[i].short_name);
                let (parent, name) = (self.records[i].parent, self.records[i].name.clone());
                let mut r = self.records[head].clone();
                r.parent = parent;
                r.name = name;
                r.short_name = short;
                self.records[i] = r;
                self.streams[i] = self.streams[head].clone();
            }
            self.records[i].link_group = g;
        }
        NewImage {
            security: self.security,
            records: self.records,
            streams: self.streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn data(b: &[u8]) -> StreamData {
        StreamData::New(Arc::new(b.to_vec()))
    }

    #[test]
    fn hard_links_share_a_group_streams_and_metadata() {
        let sd = vec![
            1u8, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let meta = NodeMeta {
            security: Some(sd.clone()),
            last_write_time: 5,
            short_name: "A~1.TXT".into(),
            ..Default::default()
        };
        let mut b = ImageBuilder::default();
        let root = b.root();
        let d = b.add_dir(root, "d", &meta).unwrap();
        let a = b.add_file(d, "a.txt", &meta, data(b"x")).unwrap();
        let solo = b.add_file(root, "solo", &meta, data(b"y")).unwrap();
        let l1 = b.add_hard_link(root, "l1", a).unwrap();
        // A link of a link joins the same file; a stream added through
        // any name belongs to all of them.
        let l2 = b.add_hard_link(d, "l2", l1).unwrap();
        b.add_named_stream(l2, "s", data(b"named")).unwrap();
        assert!(b.add_named_stream(a, "s", data(b"again")).is_err());
        assert!(b.add_file(d, "a.txt", &meta, StreamData::Empty).is_err());
        let img = b.finish();
        let r = &img.records;
        assert!(r[0].is_dir() && r[0].name.is_empty());
        let g = r[a.0].link_group;
        assert_ne!(g, 0);
        assert_eq!(r[l1.0].link_group, g);
        assert_eq!(r[l2.0].link_group, g);
        assert_eq!(r[solo.0].link_group, 0);
        for n in [a, l1, l2] {
            assert_eq!(img.streams[n.0].named.len(), 1, "{}", r[n.0].name);
            assert!(matches!(img.streams[n.0].data, Some(StreamData::New(_))));
            assert_eq!(r[n.0].last_write_time, 5);
        }
        // The short name stays with the name it was given to.
        assert_eq!(r[a.0].short_name, "A~1.TXT");
        assert_eq!(r[l1.0].short_name, "");
        assert_eq!(r[l1.0].parent, 0);
        assert_eq!(r[l2.0].parent as usize, d.0);
        // One descriptor, stored once.
        assert_eq!(img.security, vec![sd]);
        assert!(r.iter().skip(1).all(|x| x.security_id == 0));
        assert_eq!(r[0].security_id, -1);
        // Parents before children.
        assert!(r
            .iter()
            .enumerate()
            .skip(1)
            .all(|(i, x)| (x.parent as usize) < i));
    }

    #[test]
    fn reparse_points_keep_data_apart() {
        let mut b = ImageBuilder::default();
        let root = b.root();
        let j = b
            .add_reparse_point(
                root,
                "j",
                &NodeMeta::default(),
                0xA000_0003,
                data(b"rp"),
                true,
            )
            .unwrap();
        assert!(b
            .add_file(j, "inside", &NodeMeta::default(), StreamData::Empty)
            .is_err());
        let img = b.finish();
        let r = &img.records[j.0];
        assert!(r.is_dir() && r.is_reparse());
        assert_eq!(r.reparse_tag, 0xA000_0003);
        assert!(img.streams[j.0].reparse.is_some());
    }
}
