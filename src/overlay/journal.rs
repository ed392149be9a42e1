//! The staging directory's journal: an append-only log of changes.
//!
//! File layout: the 8-byte magic `WIMFSJ1\n`, then records, each
//! `u32 payload length, u32 CRC-32 of the payload, payload` (little
//! endian). A payload is a one-byte record type and its fields; strings and
//! byte strings are a `u32` length and the bytes. Reading stops at the
//! first record that is cut short or fails its checksum (a torn tail from a
//! crash); [`Journal::open`] cuts the file there so later appends follow
//! valid records.
//!
//! Records describe changes in terms of inode indexes (inode number - 1),
//! which replay reproduces exactly because new inodes are numbered in
//! order. Data records name a staged stream by id; the data they refer to
//! is in `data/<id>` (or, for a packed stream, in `data/pack`) and is
//! written before the record (made durable before it by a sync).

use crate::image::UnixData;
use crate::sys::{Access, PrivateDir};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

pub const MAGIC: &[u8; 8] = b"WIMFSJ1\n";
/// Largest record accepted when reading (symlink data, xattr values).
const MAX_RECORD: u32 = 16 << 20;

/// Timestamps and Windows/UNIX metadata of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub attributes: u32,
    pub security_id: i32,
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub unix: Option<UnixData>,
}

/// Kinds of new inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A new inode, numbered next. `reparse` is the symlink reparse data,
    /// `link` its POSIX target.
    NewNode {
        idx: u32,
        kind: NewKind,
        meta: Meta,
        reparse_tag: u32,
        rp_flags: u16,
        reparse: Vec<u8>,
        link: String,
    },
    /// Add the name `name` in directory `parent` for inode `idx`; `t` is
    /// the directory's new modification time (FILETIME).
    Link {
        parent: u32,
        name: String,
        idx: u32,
        t: u64,
    },
    /// Remove the name.
    Unlink { parent: u32, name: String, t: u64 },
    /// Rename; `mode` is 0 replace, 1 no-replace, 2 exchange.
    Rename {
        from: u32,
        from_name: String,
        to: u32,
        to_name: String,
        mode: u8,
        t: u64,
    },
    /// New metadata for an inode.
    Meta { idx: u32, meta: Meta },
    /// Set (`Some`) or remove a named stream.
    Xattr {
        idx: u32,
        name: String,
        value: Option<Vec<u8>>,
    },
    /// Give inode `idx`'s unnamed stream a staged copy `id` over its
    /// current content.
    Stage { idx: u32, id: u64 },
    /// Blocks of stream `id` made dirty; the stream's size after.
    Data {
        id: u64,
        size: u64,
        runs: Vec<(u64, u64)>,
    },
    /// Stream `id` resized.
    Size { id: u64, size: u64 },
    /// A security descriptor new to the image, appended to the mount's
    /// table (its id is the base table's length plus the number of
    /// descriptors added before it); nodes name it in a later `Meta`.
    Security { descriptor: Vec<u8> },
    /// Make inode `idx` a reparse point with `tag` and `data` (the data
    /// without its 8-byte header), or (`data` None) no longer one. `link`
    /// is the POSIX target a symlink or junction shows as.
    Reparse {
        idx: u32,
        tag: u32,
        rp_flags: u16,
        data: Option<Vec<u8>>,
        link: Option<String>,
    },
    /// Give inode `idx`'s named stream `name` a staged copy `id` over its
    /// current content: a blob of the WIM stays the base; a small value
    /// set as a whole (an xattr) is written into the staging file first
    /// (and synced before this record), so replay finds it there.
    StageNamed { idx: u32, name: String, id: u64 },
    /// Stream `id` (new, or emptied, and small) is `len` bytes of the
    /// pack at `off`, then zeros up to `size`; written to the pack before
    /// this record.
    Packed {
        id: u64,
        off: u64,
        len: u64,
        size: u64,
    },
}

struct Enc(Vec<u8>);
impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn meta(&mut self, m: &Meta) {
        self.u32(m.attributes);
        self.u32(m.security_id as u32);
        self.u64(m.creation_time);
        self.u64(m.last_access_time);
        self.u64(m.last_write_time);
        match m.unix {
            Some(u) => {
                self.u8(1);
                for v in [u.uid, u.gid, u.mode, u.rdev] {
                    self.u32(v);
                }
            }
            None => self.u8(0),
        }
    }
}

struct Dec<'a>(&'a [u8]);
impl Dec<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
    fn meta(&mut self) -> Option<Meta> {
        let attributes = self.u32()?;
        let security_id = self.u32()? as i32;
        let creation_time = self.u64()?;
        let last_access_time = self.u64()?;
        let last_write_time = self.u64()?;
        let unix = match self.u8()? {
            0 => None,
            1 => Some(UnixData {
                uid: self.u32()?,
                gid: self.u32()?,
                mode: self.u32()?,
                rdev: self.u32()?,
            }),
            _ => return None,
        };
        Some(Meta {
            attributes,
            security_id,
            creation_time,
            last_access_time,
            last_write_time,
            unix,
        })
    }
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(64));
        match self {
            Record::NewNode {
                idx,
                kind,
                meta,
                reparse_tag,
                rp_flags,
                reparse,
                link,
            } => {
                e.u8(1);
                e.u32(*idx);
                e.u8(match kind {
                    NewKind::File => 0,
                    NewKind::Dir => 1,
                    NewKind::Symlink => 2,
                });
                e.meta(meta);
                e.u32(*reparse_tag);
                e.u16(*rp_flags);
                e.bytes(reparse);
                e.bytes(link.as_bytes());
            }
            Record::Link {
                parent,
                name,
                idx,
                t,
            } => {
                e.u8(2);
                e.u32(*parent);
                e.bytes(name.as_bytes());
                e.u32(*idx);
                e.u64(*t);
            }
            Record::Unlink { parent, name, t } => {
                e.u8(3);
                e.u32(*parent);
                e.bytes(name.as_bytes());
                e.u64(*t);
            }
            Record::Rename {
                from,
                from_name,
                to,
                to_name,
                mode,
                t,
            } => {
                e.u8(4);
                e.u32(*from);
                e.bytes(from_name.as_bytes());
                e.u32(*to);
                e.bytes(to_name.as_bytes());
                e.u8(*mode);
                e.u64(*t);
            }
            Record::Meta { idx, meta } => {
                e.u8(5);
                e.u32(*idx);
                e.meta(meta);
            }
            Record::Xattr { idx, name, value } => {
                e.u8(6);
                e.u32(*idx);
                e.bytes(name.as_bytes());
                match value {
                    Some(v) => {
                        e.u8(1);
                        e.bytes(v);
                    }
                    None => e.u8(0),
                }
            }
            Record::Stage { idx, id } => {
                e.u8(7);
                e.u32(*idx);
                e.u64(*id);
            }
            Record::Data { id, size, runs } => {
                e.u8(8);
                e.u64(*id);
                e.u64(*size);
                e.u32(runs.len() as u32);
                for &(s, n) in runs {
                    e.u64(s);
                    e.u64(n);
                }
            }
            Record::Size { id, size } => {
                e.u8(9);
                e.u64(*id);
                e.u64(*size);
            }
            Record::Security { descriptor } => {
                e.u8(10);
                e.bytes(descriptor);
            }
            Record::Reparse {
                idx,
                tag,
                rp_flags,
                data,
                link,
            } => {
                e.u8(11);
                e.u32(*idx);
                e.u32(*tag);
                e.u16(*rp_flags);
                match data {
                    Some(d) => {
                        e.u8(1);
                        e.bytes(d);
                    }
                    None => e.u8(0),
                }
                match link {
                    Some(l) => {
                        e.u8(1);
                        e.bytes(l.as_bytes());
                    }
                    None => e.u8(0),
                }
            }
            Record::StageNamed { idx, name, id } => {
                e.u8(12);
                e.u32(*idx);
                e.bytes(name.as_bytes());
                e.u64(*id);
            }
            Record::Packed { id, off, len, size } => {
                e.u8(13);
                e.u64(*id);
                e.u64(*off);
                e.u64(*len);
                e.u64(*size);
            }
        }
        e.0
    }

    pub fn decode(b: &[u8]) -> Option<Record> {
        let mut d = Dec(b);
        let r = match d.u8()? {
            1 => {
                let idx = d.u32()?;
                let kind = match d.u8()? {
                    0 => NewKind::File,
                    1 => NewKind::Dir,
                    2 => NewKind::Symlink,
                    _ => return None,
                };
                Record::NewNode {
                    idx,
                    kind,
                    meta: d.meta()?,
                    reparse_tag: d.u32()?,
                    rp_flags: d.u16()?,
                    reparse: d.bytes()?,
                    link: d.string()?,
                }
            }
            2 => Record::Link {
                parent: d.u32()?,
                name: d.string()?,
                idx: d.u32()?,
                t: d.u64()?,
            },
            3 => Record::Unlink {
                parent: d.u32()?,
                name: d.string()?,
                t: d.u64()?,
            },
            4 => Record::Rename {
                from: d.u32()?,
                from_name: d.string()?,
                to: d.u32()?,
                to_name: d.string()?,
                mode: d.u8()?,
                t: d.u64()?,
            },
            5 => Record::Meta {
                idx: d.u32()?,
                meta: d.meta()?,
            },
            6 => {
                let idx = d.u32()?;
                let name = d.string()?;
                let value = match d.u8()? {
                    0 => None,
                    1 => Some(d.bytes()?),
                    _ => return None,
                };
                Record::Xattr { idx, name, value }
            }
            7 => Record::Stage {
                idx: d.u32()?,
                id: d.u64()?,
            },
            8 => {
                let id = d.u64()?;
                let size = d.u64()?;
                let n = d.u32()? as usize;
                if n > d.0.len() / 16 {
                    return None;
                }
                let mut runs = Vec::with_capacity(n);
                for _ in 0..n {
                    runs.push((d.u64()?, d.u64()?));
                }
                Record::Data { id, size, runs }
            }
            9 => Record::Size {
                id: d.u64()?,
                size: d.u64()?,
            },
            10 => Record::Security {
                descriptor: d.bytes()?,
            },
            11 => {
                let idx = d.u32()?;
                let tag = d.u32()?;
                let rp_flags = d.u16()?;
                let data = match d.u8()? {
                    0 => None,
                    1 => Some(d.bytes()?),
                    _ => return None,
                };
                let link = match d.u8()? {
                    0 => None,
                    1 => Some(d.string()?),
                    _ => return None,
                };
                Record::Reparse {
                    idx,
                    tag,
                    rp_flags,
                    data,
                    link,
                }
            }
            12 => Record::StageNamed {
                idx: d.u32()?,
                name: d.string()?,
                id: d.u64()?,
            },
            13 => Record::Packed {
                id: d.u64()?,
                off: d.u64()?,
                len: d.u64()?,
                size: d.u64()?,
            },
            _ => return None,
        };
        if !d.0.is_empty() {
            return None;
        }
        Some(r)
    }
}

/// Frame a record: length, checksum, payload.
pub fn frame(r: &Record, out: &mut Vec<u8>) {
    let p = r.encode();
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
}

/// What reading a journal found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<Record>,
    /// Bytes after the last valid record (a torn tail), dropped.
    pub torn_bytes: u64,
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// End offset of each record, parallel to `records`.
    pub ends: Vec<u64>,
}

/// Parse a journal's bytes; stops at the first bad record.
pub fn parse(buf: &[u8]) -> io::Result<ReadOutcome> {
    if buf.len() < MAGIC.len() || &buf[..MAGIC.len()] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a wimfs journal (bad magic)",
        ));
    }
    let mut out = ReadOutcome::default();
    let mut p = MAGIC.len();
    while p + 8 <= buf.len() {
        let len = u32::from_le_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]);
        let crc = u32::from_le_bytes([buf[p + 4], buf[p + 5], buf[p + 6], buf[p + 7]]);
        if len > MAX_RECORD || p + 8 + len as usize > buf.len() {
            break;
        }
        let payload = &buf[p + 8..p + 8 + len as usize];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(r) = Record::decode(payload) else {
            break;
        };
        out.records.push(r);
        p += 8 + len as usize;
        out.ends.push(p as u64);
    }
    out.valid_len = p as u64;
    out.torn_bytes = (buf.len() - p) as u64;
    Ok(out)
}

/// The open journal file, appended to.
pub struct Journal {
    file: File,
    len: u64,
    unsynced: bool,
}

impl Journal {
    /// Create a new, empty journal `name` in the staging `dir` (replacing
    /// any old one), durable. Opened through the private directory: never
    /// through a symlink, 0600 whatever the umask.
    pub fn create(dir: &PrivateDir, name: &str) -> io::Result<Journal> {
        let mut file = dir.open_file(name, Access::Create)?;
        file.set_len(0)?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        Ok(Journal {
            file,
            len: MAGIC.len() as u64,
            unsynced: false,
        })
    }

    /// Read the journal `name` of `dir` without changing it (for
    /// `wimfs recover`): its records and the size of a torn tail.
    pub fn read(dir: &PrivateDir, name: &str) -> io::Result<ReadOutcome> {
        let mut file = dir.open_file(name, Access::Read)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        if buf.len() < MAGIC.len() && MAGIC.starts_with(&buf) {
            return Ok(ReadOutcome {
                valid_len: MAGIC.len() as u64,
                ..Default::default()
            });
        }
        parse(&buf)
    }

    /// Open an existing journal: read its records and cut a torn tail.
    pub fn open(dir: &PrivateDir, name: &str) -> io::Result<(Journal, ReadOutcome)> {
        let mut file = dir.open_file(name, Access::ReadWrite)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        if buf.len() < MAGIC.len() && MAGIC.starts_with(&buf) {
            // Cut short while being created: an empty journal.
            drop(file);
            return Ok((
                Journal::create(dir, name)?,
                ReadOutcome {
                    valid_len: MAGIC.len() as u64,
                    ..Default::default()
                },
            ));
        }
        let out = parse(&buf)?;
        if out.torn_bytes > 0 {
            file.set_len(out.valid_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(out.valid_len))?;
        Ok((
            Journal {
                file,
                len: out.valid_len,
                unsynced: false,
            },
            out,
        ))
    }

    /// Append framed records (not yet durable: see [`Self::sync`]).
    pub fn append_raw(&mut self, framed: &[u8]) -> io::Result<()> {
        if framed.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(framed) {
            // Cut a partial append so the journal stays a valid prefix.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(e);
        }
        self.len += framed.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    pub fn append(&mut self, r: &Record) -> io::Result<()> {
        let mut v = Vec::new();
        frame(r, &mut v);
        self.append_raw(&v)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        let meta = Meta {
            attributes: 0x20,
            security_id: -1,
            creation_time: 1,
            last_access_time: 2,
            last_write_time: 3,
            unix: Some(UnixData {
                uid: 1,
                gid: 2,
                mode: 0o100644,
                rdev: 0,
            }),
        };
        vec![
            Record::NewNode {
                idx: 7,
                kind: NewKind::Symlink,
                meta,
                reparse_tag: 0xA000_000C,
                rp_flags: 1,
                reparse: vec![1, 2, 3],
                link: "../x".into(),
            },
            Record::Link {
                parent: 0,
                name: "a✓".into(),
                idx: 7,
                t: 5,
            },
            Record::Unlink {
                parent: 0,
                name: "b".into(),
                t: 6,
            },
            Record::Rename {
                from: 0,
                from_name: "a".into(),
                to: 3,
                to_name: "c".into(),
                mode: 2,
                t: 7,
            },
            Record::Meta {
                idx: 4,
                meta: Meta { unix: None, ..meta },
            },
            Record::Xattr {
                idx: 4,
                name: "s".into(),
                value: Some(vec![9; 5]),
            },
            Record::Xattr {
                idx: 4,
                name: "s".into(),
                value: None,
            },
            Record::Stage { idx: 4, id: 99 },
            Record::Data {
                id: 99,
                size: 1 << 40,
                runs: vec![(0, 3), (10, 1)],
            },
            Record::Size { id: 99, size: 5 },
            Record::Security {
                descriptor: vec![1, 0, 4, 0x80, 7],
            },
            Record::Reparse {
                idx: 4,
                tag: 0xA000_0003,
                rp_flags: 1,
                data: Some(vec![1, 2, 3, 4]),
                link: Some("/mnt/x".into()),
            },
            Record::Reparse {
                idx: 4,
                tag: 0,
                rp_flags: 0,
                data: None,
                link: None,
            },
            Record::StageNamed {
                idx: 4,
                name: "Zone.Identifier".into(),
                id: 100,
            },
            Record::Packed {
                id: 101,
                off: 1 << 33,
                len: 4096,
                size: 5000,
            },
        ]
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let mut buf = MAGIC.to_vec();
        for r in samples() {
            assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
            frame(&r, &mut buf);
        }
        let all = parse(&buf).unwrap();
        assert_eq!(all.records, samples());
        assert_eq!(all.torn_bytes, 0);
        // Every truncation yields a prefix of the records.
        for cut in MAGIC.len()..buf.len() {
            let o = parse(&buf[..cut]).unwrap();
            assert_eq!(o.records[..], samples()[..o.records.len()]);
            assert_eq!(o.valid_len + o.torn_bytes, cut as u64);
        }
        // A flipped byte ends the log there.
        let mut b = buf.clone();
        let n = b.len();
        b[n - 3] ^= 1;
        assert_eq!(parse(&b).unwrap().records.len(), samples().len() - 1);
        assert!(parse(b"garbage!").is_err());
    }
}
