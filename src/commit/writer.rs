//! The one WIM writer: every verb that writes a WIM (append an image,
//! optimize, export, and later capture and delete) goes through it, so the
//! file's layout rules live in one place.
//!
//! Two entries: [`WimWriter::create`] starts a new file from nothing and
//! [`WimWriter::append`] writes after the end of an existing, locked WIM.
//! In between, callers store blobs (deduplicated by SHA-1 against what the
//! WIM holds and what was written), copy resources of another WIM byte for
//! byte, and add, replace or drop images. [`WimWriter::finish`] then writes
//! the metadata resources, the blob table, the XML and the integrity table,
//! calls a hook, and writes the header last.
//!
//! Appending is crash-safe: nothing is written until the first write, which
//! marks the old header WRITE_IN_PROGRESS; everything new goes after the
//! old end of the file, so the old header keeps describing a valid WIM; a
//! writer dropped before `finish` succeeded (any error) truncates the file
//! back and restores the old header.

use super::lock::WimLock;
use super::pause;
use super::write::{self, Appender};
use crate::error::{Error, Result};
use crate::newimage::Content;
use crate::wim::blob_table::{self, BlobEntry};
use crate::wim::header::{
    flags, resflags, Compression, Header, ResHdr, HEADER_SIZE, MAGIC, SOLID_RESOURCE_MAGIC,
    VERSION_DEFAULT, VERSION_SOLID,
};
use crate::wim::metadata::{self, DentryRecord};
use crate::wim::{xml, Blob, BlobLoc, Sha1, SolidRun, Wim, ZERO_HASH};
use sha1::Digest;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

/// How the blobs of a WIM are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub compression: Compression,
    pub chunk_size: u32,
    /// Blobs go into solid resources (version 0xE00, like ESD files).
    pub solid: bool,
    /// Chunk size of the solid resources a new file gets (an append picks
    /// one per store: [`super::append_solid_chunk`]).
    pub solid_chunk_size: u32,
}

/// A metadata resource to write, with the blob references it makes (the
/// writer counts them over every image to set the blob table's refcounts).
pub struct ImageMetadata {
    raw: Vec<u8>,
    hash: Sha1,
    refs: Vec<Sha1>,
}

impl ImageMetadata {
    /// Serialize dentry records whose hashes and stream entries are final.
    pub fn from_records(security: &[Vec<u8>], records: &[DentryRecord]) -> ImageMetadata {
        let raw = metadata::write(security, records);
        let hash = sha1::Sha1::digest(&raw).into();
        ImageMetadata {
            raw,
            hash,
            refs: references(records),
        }
    }

    /// An existing metadata resource, kept byte for byte.
    pub fn from_raw(raw: Vec<u8>) -> Result<ImageMetadata> {
        let md = metadata::parse(&raw)?;
        let hash = sha1::Sha1::digest(&raw).into();
        Ok(ImageMetadata {
            refs: references(&md.dentries),
            raw,
            hash,
        })
    }

    /// The blobs the image references, once per dentry stream (zero
    /// hashes left out).
    pub fn references(&self) -> &[Sha1] {
        &self.refs
    }

    /// SHA-1 of the resource (what the blob table will list for it).
    pub fn sha1(&self) -> Sha1 {
        self.hash
    }
}

/// Every hash a set of records references, once per dentry stream.
fn references(records: &[DentryRecord]) -> Vec<Sha1> {
    let mut v = Vec::new();
    for r in records {
        for h in std::iter::once(&r.hash).chain(r.streams.iter().map(|s| &s.hash)) {
            if *h != ZERO_HASH {
                v.push(*h);
            }
        }
    }
    v
}

/// An image of the new WIM: kept from the WIM appended to, or new.
enum ImageSlot {
    /// Image `n` of the base WIM, unchanged (its blob references are read
    /// by [`WimWriter::prepare`]).
    Kept(u32),
    /// A metadata resource to write; `replaces` names the base image whose
    /// place in the blob table it takes.
    New {
        md: ImageMetadata,
        replaces: Option<u32>,
    },
}

/// One entry of the base WIM's blob table as it will be kept.
enum BaseEntry {
    Entry(BlobEntry),
    /// The metadata entry of base image `n`.
    Image(u32, BlobEntry),
}

/// What the writer added to the file, in the order it was written.
enum Added {
    /// A whole, non-solid resource; its refcount is set at `finish`.
    Whole(BlobEntry),
    /// A solid run: its resources (with their uncompressed sizes) and its
    /// blobs, whose offsets count from the run's start until `finish`
    /// shifts them past any run the new one follows.
    Run {
        resources: Vec<(BlobEntry, u64)>,
        blobs: Vec<BlobEntry>,
    },
}

/// What [`WimWriter::finish`] wrote.
#[derive(Debug, Clone)]
pub struct Finished {
    pub header: Header,
    /// Where the file ends (the header says so too).
    pub file_size: u64,
    /// Where the writer started writing (the old end, or the header's end).
    pub start: u64,
    /// SHA-1 of each image's metadata resource, in image order.
    pub metadata: Vec<Sha1>,
}

/// What the header is about to say, handed to the hook that runs just
/// before it is written.
pub struct BeforeHeader<'h> {
    pub header: &'h Header,
    /// SHA-1 of each image's metadata resource, in image order.
    pub metadata: &'h [Sha1],
}

/// The writer (see the module's doc).
pub struct WimWriter<'a> {
    out: Appender<'a>,
    format: Format,
    integrity: bool,
    /// The WIM appended to, its lock, the header it had on disk and where
    /// it ended; `None` for a new file.
    base: Option<Base<'a>>,
    /// The header the new one is made from.
    header: Header,
    images: Vec<ImageSlot>,
    xml: xml::Element,
    added: Vec<Added>,
    /// Sizes of every blob the new WIM can reference (the base's and those
    /// written).
    sizes: HashMap<Sha1, u64>,
    /// Blob references of the base images kept, once read.
    base_refs: HashMap<u32, Vec<Sha1>>,
    /// Something was written (an append then has to be undone on error).
    begun: bool,
    finished: bool,
}

struct Base<'a> {
    lock: &'a WimLock,
    wim: Wim,
    entries: Vec<BaseEntry>,
    old_header: Vec<u8>,
    old_len: u64,
}

fn io_err(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_string(),
        err: e,
    }
}

impl<'a> WimWriter<'a> {
    /// A new WIM in `file` (empty or to be overwritten, open for reading
    /// too: the integrity table hashes what was written), of `format`, with
    /// `guid`. `path` names the file in errors. An integrity table is
    /// written when `integrity` is set.
    pub fn create(
        file: &'a File,
        path: &Path,
        format: Format,
        guid: [u8; 16],
        integrity: bool,
    ) -> Result<WimWriter<'a>> {
        let out = Appender {
            file,
            pos: HEADER_SIZE as u64,
            path: path.display().to_string(),
        };
        out.write_at(&[0u8; HEADER_SIZE], 0)?;
        let mut fl = 0;
        if format.compression != Compression::None {
            fl |= flags::COMPRESSION
                | match format.compression {
                    Compression::Xpress => flags::COMPRESS_XPRESS,
                    Compression::Lzx => flags::COMPRESS_LZX,
                    Compression::Lzms => flags::COMPRESS_LZMS,
                    Compression::None => 0,
                };
        }
        let header = Header {
            magic: *MAGIC,
            version: if format.solid {
                VERSION_SOLID
            } else {
                VERSION_DEFAULT
            },
            flags: fl,
            chunk_size: if format.compression == Compression::None {
                0
            } else {
                format.chunk_size
            },
            guid,
            part_number: 1,
            total_parts: 1,
            image_count: 0,
            blob_table: ResHdr::default(),
            xml: ResHdr::default(),
            boot_metadata: ResHdr::default(),
            boot_index: 0,
            integrity: ResHdr::default(),
        };
        // TOTALBYTES comes first in the XML of a new WIM.
        let mut root = xml::Element::new("WIM");
        root.set_child_text("TOTALBYTES", "0");
        Ok(WimWriter {
            out,
            format,
            integrity,
            base: None,
            header,
            images: Vec::new(),
            xml: root,
            added: Vec::new(),
            sizes: HashMap::new(),
            base_refs: HashMap::new(),
            begun: true,
            finished: false,
        })
    }

    /// Write after the end of the WIM `lock` holds (read from the locked
    /// file, not from whatever the path names by now), in its own format;
    /// new solid resources use [`super::append_solid_chunk`]. An integrity
    /// table is written when the WIM has one or `integrity` is set. Nothing
    /// is written before the first store, copy or `finish`.
    pub fn append(lock: &'a WimLock, integrity: bool) -> Result<WimWriter<'a>> {
        let wim = lock.open_wim()?;
        let h = wim.header.clone();
        if h.total_parts != 1 {
            return Err(Error::Unsupported(
                "committing to a split WIM; join it first".into(),
            ));
        }
        let solid = h.version == VERSION_SOLID;
        let format = Format {
            compression: wim.compression,
            chunk_size: wim.chunk_size,
            solid,
            solid_chunk_size: super::APPEND_SOLID_CHUNK,
        };
        let count = wim.image_count();
        // The old table as it will be kept: solid resource entries always
        // (blob offsets in a solid run count through all its resources),
        // metadata entries as their images, the rest if referenced (decided
        // at `finish`).
        let mut entries = Vec::with_capacity(wim.entries.len());
        let mut meta_seen = 0u32;
        for (_, e) in &wim.entries {
            if e.reshdr.is_metadata() && !is_solid_res(solid, e) {
                meta_seen += 1;
                if meta_seen <= count {
                    entries.push(BaseEntry::Image(meta_seen, e.clone()));
                }
            } else {
                entries.push(BaseEntry::Entry(e.clone()));
            }
        }
        let sizes = wim.blobs.iter().map(|(k, b)| (*k, b.size)).collect();
        let xml = wim.xml.clone().unwrap_or_else(|| xml::Element::new("WIM"));
        let images = (1..=count).map(ImageSlot::Kept).collect();
        Ok(WimWriter {
            out: Appender {
                file: &lock.file,
                pos: 0,
                path: lock.path.display().to_string(),
            },
            format,
            integrity: integrity || h.integrity.size_in_wim > 0,
            header: h,
            base: Some(Base {
                lock,
                wim,
                entries,
                old_header: Vec::new(),
                old_len: 0,
            }),
            images,
            xml,
            added: Vec::new(),
            sizes,
            base_refs: HashMap::new(),
            begun: false,
            finished: false,
        })
    }

    /// The WIM appended to.
    pub fn base(&self) -> Option<&Wim> {
        self.base.as_ref().map(|b| &b.wim)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Number of images the new WIM will have.
    pub fn image_count(&self) -> u32 {
        self.images.len() as u32
    }

    /// Does the new WIM hold (or reference as stored) blob `hash`?
    pub fn has_blob(&self, hash: &Sha1) -> bool {
        self.sizes.contains_key(hash)
    }

    /// Sizes of the blobs the new WIM holds, for image statistics.
    pub fn blob_sizes(&self) -> &HashMap<Sha1, u64> {
        &self.sizes
    }

    /// Header flags to keep beyond compression (e.g. RP_FIX, READONLY).
    pub fn add_header_flags(&mut self, f: u32) {
        self.header.flags |= f;
    }

    /// The image the WIM boots (0: none).
    pub fn set_boot_index(&mut self, index: u32) {
        self.header.boot_index = index;
    }

    /// Read the blob references of the base images that stay, so that a
    /// damaged one fails the write before anything is written. `finish`
    /// does it too when the caller did not.
    pub fn prepare(&mut self) -> Result<()> {
        let Some(base) = &self.base else {
            return Ok(());
        };
        for slot in &self.images {
            if let ImageSlot::Kept(i) = slot {
                if self.base_refs.contains_key(i) {
                    continue;
                }
                let raw = base.wim.read_metadata(*i)?;
                let md = metadata::parse(&raw)
                    .map_err(|e| Error::Invalid(format!("image {i} metadata: {e}")))?;
                self.base_refs.insert(*i, references(&md.dentries));
            }
        }
        Ok(())
    }

    /// Mark the append in progress (old data stays valid) the first time
    /// something is written: bytes past the end the header describes, left
    /// by a killed write, are cut off first.
    fn begin(&mut self) -> Result<()> {
        if self.begun {
            return Ok(());
        }
        let Some(base) = &mut self.base else {
            return Ok(());
        };
        base.lock.still_at_path()?;
        let file = &base.lock.file;
        let path = base.lock.path.display().to_string();
        let file_now = file.metadata().map_err(io_err(&path))?.len();
        let old_len = super::described_end(&base.wim).min(file_now);
        if old_len < file_now {
            log::warn!(
                "{path}: cutting {} bytes left after the end of the WIM by an interrupted write",
                file_now - old_len
            );
            file.set_len(old_len).map_err(io_err(&path))?;
        }
        let mut old_hdr = vec![0u8; HEADER_SIZE];
        crate::io::FileSource::new(file.try_clone()?)?.read_exact_at_io(&mut old_hdr, 0)?;
        base.old_header = old_hdr;
        base.old_len = old_len;
        self.out.pos = old_len;
        let mut wip = self.header.clone();
        wip.flags |= flags::WRITE_IN_PROGRESS;
        self.out.write_at(&wip.write(), 0)?;
        file.sync_all()?;
        self.begun = true;
        Ok(())
    }

    /// The blobs of `blobs` this WIM does not hold yet, each once, empty
    /// ones left out (they need no resource).
    fn new_blobs<'c>(&self, blobs: &[(Sha1, &'c dyn Content)]) -> Vec<(Sha1, &'c dyn Content)> {
        let mut seen = HashSet::new();
        blobs
            .iter()
            .filter(|(h, _)| *h != ZERO_HASH && !self.sizes.contains_key(h) && seen.insert(*h))
            .map(|(h, c)| (*h, *c))
            .collect()
    }

    /// Store blobs the new WIM lacks (the others, and empty ones, are
    /// skipped), compressed chunk-parallel in the WIM's format: one new
    /// solid resource for a solid WIM, else one resource per blob.
    pub fn store_blobs(
        &mut self,
        blobs: &[(Sha1, &dyn Content)],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let list = self.new_blobs(blobs);
        if list.is_empty() {
            return Ok(());
        }
        self.begin()?;
        let contents: Vec<&dyn Content> = list.iter().map(|(_, c)| *c).collect();
        let f = self.format;
        if f.solid {
            let comp = if f.compression == Compression::None {
                Compression::Lzms
            } else {
                f.compression
            };
            let total: u64 = contents.iter().map(|c| c.len()).sum();
            let cs = if self.base.is_some() {
                super::append_solid_chunk(total)
            } else {
                f.solid_chunk_size
            };
            let (rh, offs) = write::write_solid(&mut self.out, &contents, comp, cs, progress)?;
            let blobs = list
                .iter()
                .zip(offs)
                .map(|((hash, c), off)| BlobEntry {
                    reshdr: ResHdr {
                        size_in_wim: c.len(),
                        flags: resflags::SOLID,
                        offset: off,
                        uncompressed_size: 0,
                    },
                    part_number: 1,
                    refcount: 1,
                    hash: *hash,
                })
                .collect();
            self.added.push(Added::Run {
                resources: vec![(entry(rh, ZERO_HASH), total)],
                blobs,
            });
        } else {
            let rhs = write::write_blobs(
                &mut self.out,
                &contents,
                f.compression,
                f.chunk_size,
                progress,
            )?;
            for ((hash, _), rh) in list.iter().zip(rhs) {
                self.added.push(Added::Whole(entry(rh, *hash)));
            }
        }
        for (hash, c) in &list {
            self.sizes.insert(*hash, c.len());
        }
        Ok(())
    }

    /// Store blobs the new WIM lacks uncompressed, one resource each,
    /// whatever its format: what a capture does with the files its
    /// configuration's `[CompressionExclusionList]` names (already
    /// compressed media gain nothing from another pass).
    pub fn store_blobs_raw(
        &mut self,
        blobs: &[(Sha1, &dyn Content)],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let list = self.new_blobs(blobs);
        if list.is_empty() {
            return Ok(());
        }
        self.begin()?;
        let contents: Vec<&dyn Content> = list.iter().map(|(_, c)| *c).collect();
        let rhs = write::write_blobs(
            &mut self.out,
            &contents,
            Compression::None,
            self.format.chunk_size.max(32768),
            progress,
        )?;
        for ((hash, c), rh) in list.iter().zip(rhs) {
            self.added.push(Added::Whole(entry(rh, *hash)));
            self.sizes.insert(*hash, c.len());
        }
        Ok(())
    }

    /// Copy `blob`, a whole (non-solid) resource of `src`, byte for byte.
    pub fn copy_resource(&mut self, src: &Wim, blob: &Blob) -> Result<()> {
        let BlobLoc::Whole(r) = &blob.loc else {
            return Err(Error::Other(
                "internal: copy_resource of a blob in a solid run".into(),
            ));
        };
        self.begin()?;
        let at = copy_raw(
            src,
            r.part,
            r.reshdr.offset,
            r.reshdr.size_in_wim,
            &mut self.out,
        )?;
        self.added.push(Added::Whole(entry(
            ResHdr {
                offset: at,
                flags: r.reshdr.flags & !resflags::METADATA,
                ..r.reshdr
            },
            blob.hash,
        )));
        self.sizes.insert(blob.hash, blob.size);
        Ok(())
    }

    /// Copy the solid run `run` of `src` byte for byte, listing `blobs`
    /// (blobs of that run) in the new blob table.
    pub fn copy_solid_run(&mut self, src: &Wim, run: &SolidRun, blobs: &[&Blob]) -> Result<()> {
        self.begin()?;
        let mut resources = Vec::with_capacity(run.resources.len());
        for (k, r) in run.resources.iter().enumerate() {
            let at = copy_raw(
                src,
                r.part,
                r.reshdr.offset,
                r.reshdr.size_in_wim,
                &mut self.out,
            )?;
            let e = entry(
                ResHdr {
                    offset: at,
                    ..r.reshdr
                },
                ZERO_HASH,
            );
            // The run's size counts once, on its first resource.
            resources.push((e, if k == 0 { run.total } else { 0 }));
        }
        let mut list = Vec::with_capacity(blobs.len());
        for b in blobs {
            if let BlobLoc::Solid { offset, .. } = &b.loc {
                list.push(BlobEntry {
                    reshdr: ResHdr {
                        size_in_wim: b.size,
                        flags: resflags::SOLID,
                        offset: *offset,
                        uncompressed_size: 0,
                    },
                    part_number: 1,
                    refcount: 1,
                    hash: b.hash,
                });
                self.sizes.insert(b.hash, b.size);
            }
        }
        self.added.push(Added::Run {
            resources,
            blobs: list,
        });
        Ok(())
    }

    /// Add an image at the end; `info` is its XML `IMAGE` element (its
    /// INDEX is set here), or `None` when the XML already has one for it.
    /// Returns its index.
    pub fn add_image(&mut self, md: ImageMetadata, info: Option<xml::Element>) -> u32 {
        self.images.push(ImageSlot::New { md, replaces: None });
        let index = self.images.len() as u32;
        if let Some(info) = info {
            self.put_image_xml(index, info);
        }
        index
    }

    /// Add `info` to the XML as the `IMAGE` element of image `index` (its
    /// INDEX attribute is set here, first).
    pub fn put_image_xml(&mut self, index: u32, mut info: xml::Element) {
        info.attrs.retain(|(k, _)| !k.eq_ignore_ascii_case("INDEX"));
        info.attrs.insert(0, ("INDEX".into(), index.to_string()));
        self.xml.children.push(xml::Node::Elem(info));
    }

    /// Replace image `index` (1-based). Its XML stays: update it with
    /// [`WimWriter::update_image_xml`].
    pub fn replace_image(&mut self, index: u32, md: ImageMetadata) -> Result<()> {
        let count = self.images.len();
        let slot = self
            .images
            .get_mut((index as usize).wrapping_sub(1))
            .ok_or_else(|| no_such_image(index, count))?;
        let replaces = match slot {
            ImageSlot::Kept(i) => Some(*i),
            ImageSlot::New { replaces, .. } => *replaces,
        };
        *slot = ImageSlot::New { md, replaces };
        Ok(())
    }

    /// Drop image `index` (1-based): later images move down by one, in the
    /// XML and the boot index too.
    pub fn drop_image(&mut self, index: u32) -> Result<()> {
        let count = self.images.len();
        if index == 0 || index as usize > count {
            return Err(no_such_image(index, count));
        }
        self.images.remove(index as usize - 1);
        self.xml.children.retain(|n| match n {
            xml::Node::Elem(e) => image_index(e) != Some(index),
            _ => true,
        });
        for n in self.xml.children.iter_mut() {
            if let xml::Node::Elem(e) = n {
                if let Some(i) = image_index(e).filter(|&i| i > index) {
                    for (k, v) in e.attrs.iter_mut() {
                        if k.eq_ignore_ascii_case("INDEX") {
                            *v = (i - 1).to_string();
                        }
                    }
                }
            }
        }
        let b = self.header.boot_index;
        if b == index {
            self.header.boot_index = 0;
            self.header.boot_metadata = ResHdr::default();
        } else if b > index {
            self.header.boot_index = b - 1;
        }
        Ok(())
    }

    /// Apply `f` to the XML `IMAGE` element(s) of image `index`; false when
    /// there is none.
    pub fn update_image_xml(&mut self, index: u32, f: &mut dyn FnMut(&mut xml::Element)) -> bool {
        let mut found = false;
        for n in self.xml.children.iter_mut() {
            if let xml::Node::Elem(e) = n {
                if image_index(e) == Some(index) {
                    found = true;
                    f(e);
                }
            }
        }
        found
    }

    /// Write the metadata resources of new images, the blob table, the XML
    /// and the integrity table; sync; call `before_header` with what the
    /// header will say (an error from it aborts the write); then write the
    /// header, last. An append checks once more that the locked file is
    /// still the one at its path.
    pub fn finish(
        mut self,
        before_header: &mut dyn FnMut(&BeforeHeader) -> Result<()>,
    ) -> Result<Finished> {
        self.prepare()?;
        self.begin()?;
        let appending = self.base.is_some();
        if appending {
            pause::point("after-blobs");
        }
        let f = self.format;
        // Metadata resources are never solid; in a solid WIM they are
        // ordinary LZMS resources in the header's chunk size (128 KiB), as
        // wimlib and DISM write them: uncompressed they were a fifth of a
        // small ESD's size.
        let md_comp = match f.compression {
            Compression::None if f.solid => Compression::Lzms,
            c => c,
        };
        // Metadata resources of new images, in image order, after the data
        // (a non-solid entry between runs also keeps runs apart).
        // (`None` for an image kept as it is: its entry stays where it was.)
        let mut md_entries: Vec<Option<BlobEntry>> = Vec::with_capacity(self.images.len());
        let mut md_hashes = Vec::with_capacity(self.images.len());
        let mut refs: HashMap<Sha1, u32> = HashMap::new();
        for slot in &self.images {
            match slot {
                ImageSlot::Kept(i) => {
                    for h in self.base_refs.get(i).into_iter().flatten() {
                        *refs.entry(*h).or_default() += 1;
                    }
                    let m = self
                        .base
                        .as_ref()
                        .and_then(|b| b.wim.metadata.get(*i as usize - 1))
                        .ok_or_else(|| Error::Other(format!("internal: no image {i}")))?;
                    md_hashes.push(m.hash);
                    md_entries.push(None);
                }
                ImageSlot::New { md, .. } => {
                    for h in &md.refs {
                        *refs.entry(*h).or_default() += 1;
                    }
                    let mut rh =
                        write::write_blob(&mut self.out, &md.raw, md_comp, f.chunk_size, &|_| {})?;
                    rh.flags |= resflags::METADATA;
                    md_hashes.push(md.hash);
                    md_entries.push(Some(BlobEntry {
                        reshdr: rh,
                        part_number: 1,
                        refcount: 1,
                        hash: md.hash,
                    }));
                }
            }
        }

        let table = self.assemble_table(&md_entries, &refs)?;
        let bt = blob_table::write(&table);
        let bt_off = self.out.write(&bt)?;
        let bt_rh = ResHdr {
            size_in_wim: bt.len() as u64,
            flags: resflags::METADATA,
            offset: bt_off,
            uncompressed_size: bt.len() as u64,
        };

        self.xml
            .set_child_text("TOTALBYTES", &self.out.pos.to_string());
        let xb = xml::encode(&self.xml);
        let x_off = self.out.write(&xb)?;
        let x_rh = ResHdr {
            size_in_wim: xb.len() as u64,
            // Not file data: ImageX, DISM and wimlib flag the XML (like the
            // blob table) as metadata.
            flags: resflags::METADATA,
            offset: x_off,
            uncompressed_size: xb.len() as u64,
        };
        // Integrity table over header end .. blob table end.
        let i_rh = if self.integrity {
            write::append_integrity(&mut self.out, bt_off + bt.len() as u64)?
        } else {
            ResHdr::default()
        };
        // The file ends where the new header says it does.
        self.out.cut()?;
        self.out.file.sync_all()?;

        let mut nh = self.header.clone();
        nh.flags &= !flags::WRITE_IN_PROGRESS;
        nh.image_count = self.images.len() as u32;
        nh.blob_table = bt_rh;
        nh.xml = x_rh;
        nh.integrity = i_rh;
        if nh.boot_index != 0 {
            let mut k = 0;
            for e in &table {
                if e.reshdr.is_metadata() {
                    k += 1;
                    if k == nh.boot_index {
                        nh.boot_metadata = e.reshdr;
                    }
                }
            }
        }
        before_header(&BeforeHeader {
            header: &nh,
            metadata: &md_hashes,
        })?;
        if appending {
            pause::point("before-header");
        }
        if let Some(base) = &self.base {
            // Replaced while this write went on? Then its header must not
            // land in a file nobody will open again (the drop restores it).
            base.lock.still_at_path()?;
        }
        self.out.write_at(&nh.write(), 0)?;
        self.out.file.sync_all()?;
        if appending {
            pause::point("after-header");
        }
        self.finished = true;
        Ok(Finished {
            header: nh,
            file_size: self.out.pos,
            start: self.base.as_ref().map_or(HEADER_SIZE as u64, |b| b.old_len),
            metadata: md_hashes,
        })
    }

    /// The new blob table: the base's entries in their order with fresh
    /// refcounts (unreferenced blobs dropped), kept images' metadata where
    /// it was, new images' metadata (`md_entries`, `None` for a kept image)
    /// next, then what was added, each with its count in `refs`.
    fn assemble_table(
        &mut self,
        md_entries: &[Option<BlobEntry>],
        refs: &HashMap<Sha1, u32>,
    ) -> Result<Vec<BlobEntry>> {
        let mut table: Vec<BlobEntry> = Vec::new();
        // Uncompressed size of each solid resource entry this writer
        // added (base ones are read when needed).
        let mut run_sizes: Vec<Option<u64>> = Vec::new();
        let mut placed = vec![false; self.images.len()];
        if let Some(base) = &self.base {
            let mut dup = HashSet::new();
            for be in &base.entries {
                match be {
                    BaseEntry::Entry(e) if is_solid_res(self.format.solid, e) => {
                        table.push(e.clone());
                        run_sizes.push(None);
                    }
                    BaseEntry::Entry(e) => {
                        let rc = refs.get(&e.hash).copied().unwrap_or(0);
                        if e.hash == ZERO_HASH || rc == 0 || !dup.insert(e.hash) {
                            continue;
                        }
                        table.push(BlobEntry {
                            refcount: rc,
                            ..e.clone()
                        });
                        run_sizes.push(None);
                    }
                    BaseEntry::Image(i, old) => {
                        // Where the image is now: a replaced one keeps its
                        // place, a dropped one vanishes.
                        let Some(k) = self.images.iter().position(|s| match s {
                            ImageSlot::Kept(j) => j == i,
                            ImageSlot::New { replaces, .. } => *replaces == Some(*i),
                        }) else {
                            continue;
                        };
                        if placed[k] {
                            continue;
                        }
                        placed[k] = true;
                        table.push(md_entries[k].clone().unwrap_or_else(|| old.clone()));
                        run_sizes.push(None);
                    }
                }
            }
        }
        for (e, placed) in md_entries.iter().zip(&placed) {
            if let (Some(e), false) = (e, placed) {
                table.push(e.clone());
                run_sizes.push(None);
            }
        }
        for a in std::mem::take(&mut self.added) {
            match a {
                Added::Whole(e) => {
                    let rc = refs.get(&e.hash).copied().unwrap_or(1);
                    table.push(BlobEntry { refcount: rc, ..e });
                    run_sizes.push(None);
                }
                Added::Run { resources, blobs } => {
                    // A run placed right after another joins it: its blob
                    // offsets then count from the end of the runs before.
                    let base_off = self.trailing_run_size(&table, &run_sizes)?;
                    for (e, size) in resources {
                        table.push(e);
                        run_sizes.push(Some(size));
                    }
                    for mut e in blobs {
                        e.reshdr.offset += base_off;
                        e.refcount = refs.get(&e.hash).copied().unwrap_or(1);
                        table.push(e);
                        run_sizes.push(None);
                    }
                }
            }
        }
        Ok(table)
    }

    /// Sum of the uncompressed sizes of the solid resources at the end of
    /// `table` (the run a new one appended now would join).
    fn trailing_run_size(&self, table: &[BlobEntry], sizes: &[Option<u64>]) -> Result<u64> {
        let mut base = 0u64;
        for (e, known) in table.iter().zip(sizes).rev() {
            if !e.reshdr.is_solid() {
                break;
            }
            if !is_solid_res(self.format.solid, e) {
                continue;
            }
            base += match known {
                Some(s) => *s,
                None => {
                    let wim = self
                        .base()
                        .ok_or_else(|| Error::Other("internal: no base WIM".into()))?;
                    let src = wim
                        .part_source(1)
                        .ok_or_else(|| Error::Other("internal: no part 1".into()))?;
                    crate::wim::resource::Resource::solid(0, src.clone(), 1, e.reshdr)?
                        .uncompressed_size
                }
            };
        }
        Ok(base)
    }
}

impl Drop for WimWriter<'_> {
    /// An append that did not finish puts the file back as it was.
    fn drop(&mut self) {
        if self.finished || !self.begun {
            return;
        }
        if let Some(base) = &self.base {
            let file = &base.lock.file;
            let _ = file.set_len(base.old_len);
            let _ = self.out.write_at(&base.old_header, 0);
            let _ = file.sync_all();
        }
    }
}

fn entry(reshdr: ResHdr, hash: Sha1) -> BlobEntry {
    BlobEntry {
        reshdr,
        part_number: 1,
        refcount: 1,
        hash,
    }
}

fn is_solid_res(solid: bool, e: &BlobEntry) -> bool {
    solid && e.reshdr.is_solid() && e.reshdr.uncompressed_size == SOLID_RESOURCE_MAGIC
}

fn image_index(e: &xml::Element) -> Option<u32> {
    if !e.name.eq_ignore_ascii_case("IMAGE") {
        return None;
    }
    e.attr("INDEX").and_then(|s| s.trim().parse::<u32>().ok())
}

fn no_such_image(index: u32, count: usize) -> Error {
    Error::NoSuchImage(format!("{index} (this WIM has {count} image(s))"))
}

/// Copy `len` bytes at `off` of part `part` of `src` to the end of `out`.
fn copy_raw(src: &Wim, part: u16, off: u64, len: u64, out: &mut Appender) -> Result<u64> {
    let s = src
        .part_source(part)
        .ok_or_else(|| Error::MissingBlob(format!("part {part}")))?;
    let at = out.pos;
    let mut buf = vec![0u8; (8u64 << 20).min(len.max(1)) as usize];
    let mut p = 0;
    while p < len {
        let n = ((len - p) as usize).min(buf.len());
        s.read_exact_at(&mut buf[..n], off + p)?;
        out.write(&buf[..n])?;
        p += n as u64;
    }
    Ok(at)
}
