//! The 208-byte WIM header and the 24-byte resource headers it holds.

use super::bytes::Le;
use crate::error::{Error, Result, Section};

pub const HEADER_SIZE: usize = 208;
pub const MAGIC: &[u8; 8] = b"MSWIM\0\0\0";
/// Pipable WIMs (wimlib's streamable variant) start with this instead.
pub const PWM_MAGIC: &[u8; 8] = b"WLPWM\0\0\0";
pub const VERSION_DEFAULT: u32 = 0x10D00;
pub const VERSION_SOLID: u32 = 0xE00;

pub mod flags {
    pub const RESERVED: u32 = 0x1;
    pub const COMPRESSION: u32 = 0x2;
    pub const READONLY: u32 = 0x4;
    pub const SPANNED: u32 = 0x8;
    pub const RESOURCE_ONLY: u32 = 0x10;
    pub const METADATA_ONLY: u32 = 0x20;
    pub const WRITE_IN_PROGRESS: u32 = 0x40;
    pub const RP_FIX: u32 = 0x80;
    pub const COMPRESS_RESERVED: u32 = 0x10000;
    pub const COMPRESS_XPRESS: u32 = 0x20000;
    pub const COMPRESS_LZX: u32 = 0x40000;
    pub const COMPRESS_LZMS: u32 = 0x80000;
    pub const COMPRESS_XPRESS2: u32 = 0x200000;

    /// Names of the set flags, for `info`.
    pub fn names(f: u32) -> Vec<&'static str> {
        let table: [(u32, &str); 13] = [
            (RESERVED, "RESERVED"),
            (COMPRESSION, "COMPRESSION"),
            (READONLY, "READONLY"),
            (SPANNED, "SPANNED"),
            (RESOURCE_ONLY, "RESOURCE_ONLY"),
            (METADATA_ONLY, "METADATA_ONLY"),
            (WRITE_IN_PROGRESS, "WRITE_IN_PROGRESS"),
            (RP_FIX, "RP_FIX"),
            (COMPRESS_RESERVED, "COMPRESS_RESERVED"),
            (COMPRESS_XPRESS, "COMPRESS_XPRESS"),
            (COMPRESS_LZX, "COMPRESS_LZX"),
            (COMPRESS_LZMS, "COMPRESS_LZMS"),
            (COMPRESS_XPRESS2, "COMPRESS_XPRESS2"),
        ];
        table
            .iter()
            .filter(|(b, _)| f & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Compression codec of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Compression {
    None,
    Xpress,
    Lzx,
    Lzms,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "None",
            Compression::Xpress => "XPRESS",
            Compression::Lzx => "LZX",
            Compression::Lzms => "LZMS",
        }
    }
    /// The number used in solid resource headers (and wimlib's API).
    pub fn from_solid_format(n: u32) -> Option<Self> {
        Some(match n {
            0 => Compression::None,
            1 => Compression::Xpress,
            2 => Compression::Lzx,
            3 => Compression::Lzms,
            _ => return None,
        })
    }
    pub fn solid_format(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Xpress => 1,
            Compression::Lzx => 2,
            Compression::Lzms => 3,
        }
    }
    /// Largest chunk size the codec allows.
    pub fn max_chunk(self) -> u32 {
        match self {
            Compression::None => 1 << 30,
            Compression::Xpress => 1 << 16,
            Compression::Lzx => 1 << 21,
            Compression::Lzms => 1 << 30,
        }
    }
}

pub mod resflags {
    pub const FREE: u8 = 0x1;
    pub const METADATA: u8 = 0x2;
    pub const COMPRESSED: u8 = 0x4;
    pub const SPANNED: u8 = 0x8;
    pub const SOLID: u8 = 0x10;
}

/// In a blob-table entry, this uncompressed size marks a solid resource.
pub const SOLID_RESOURCE_MAGIC: u64 = 0x1_0000_0000;

/// A resource header ("reshdr"): where a resource lies and how big it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResHdr {
    pub size_in_wim: u64,
    pub flags: u8,
    pub offset: u64,
    pub uncompressed_size: u64,
}

impl ResHdr {
    pub const SIZE: usize = 24;

    pub fn parse(b: &[u8]) -> Result<Self> {
        let le = Le::new(b, Section::Header, "resource header");
        let raw = le.u64(0)?;
        Ok(ResHdr {
            size_in_wim: raw & 0x00FF_FFFF_FFFF_FFFF,
            flags: (raw >> 56) as u8,
            offset: le.u64(8)?,
            uncompressed_size: le.u64(16)?,
        })
    }
    pub fn write(&self, out: &mut Vec<u8>) {
        let raw = (self.size_in_wim & 0x00FF_FFFF_FFFF_FFFF) | ((self.flags as u64) << 56);
        out.extend_from_slice(&raw.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.uncompressed_size.to_le_bytes());
    }
    pub fn is_compressed(&self) -> bool {
        self.flags & resflags::COMPRESSED != 0
    }
    pub fn is_solid(&self) -> bool {
        self.flags & resflags::SOLID != 0
    }
    pub fn is_metadata(&self) -> bool {
        self.flags & resflags::METADATA != 0
    }
    pub fn is_empty(&self) -> bool {
        self.size_in_wim == 0 && self.offset == 0
    }
    /// Check the resource lies within a file of `file_len` bytes; if not,
    /// `section` (what the resource holds) is damaged.
    pub fn check_bounds(&self, file_len: u64, section: Section, what: &str) -> Result<()> {
        match self.offset.checked_add(self.size_in_wim) {
            Some(end) if end <= file_len => Ok(()),
            _ => Err(Error::corrupt(
                section,
                Some(self.offset),
                format!(
                    "{what} at offset {:#x} size {} extends past end of file ({} bytes)",
                    self.offset, self.size_in_wim, file_len
                ),
            )),
        }
    }
}

/// The parsed WIM header.
#[derive(Debug, Clone)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub flags: u32,
    pub chunk_size: u32,
    pub guid: [u8; 16],
    pub part_number: u16,
    pub total_parts: u16,
    pub image_count: u32,
    pub blob_table: ResHdr,
    pub xml: ResHdr,
    pub boot_metadata: ResHdr,
    pub boot_index: u32,
    pub integrity: ResHdr,
}

impl Header {
    /// Parse and sanity-check a header. Problems that real WIMs have but
    /// that do not stop reading (WRITE_IN_PROGRESS) are left for the caller
    /// to warn about.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HEADER_SIZE {
            return Err(Error::NotWim(format!(
                "file is {} bytes, shorter than a WIM header ({HEADER_SIZE})",
                b.len()
            )));
        }
        let le = Le::new(b, Section::Header, "WIM header");
        let mut magic = [0u8; 8];
        magic.copy_from_slice(le.bytes(0, 8)?);
        if &magic == PWM_MAGIC {
            return Err(Error::Unsupported(
                "pipable WIM (WLPWM) files are not supported yet".into(),
            ));
        }
        if &magic != MAGIC {
            return Err(Error::NotWim("bad magic (expected \"MSWIM\")".into()));
        }
        let hdr_size = le.u32(8)?;
        if hdr_size as usize != HEADER_SIZE {
            return Err(Error::corrupt(
                Section::Header,
                Some(8),
                format!("header size is {hdr_size}, expected {HEADER_SIZE}"),
            ));
        }
        let version = le.u32(12)?;
        if version != VERSION_DEFAULT && version != VERSION_SOLID {
            return Err(Error::Unsupported(format!("WIM version {version:#x}")));
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(le.bytes(24, 16)?);
        let h = Header {
            magic,
            version,
            flags: le.u32(16)?,
            chunk_size: le.u32(20)?,
            guid,
            part_number: le.u16(40)?,
            total_parts: le.u16(42)?,
            image_count: le.u32(44)?,
            blob_table: ResHdr::parse(le.bytes(48, 24)?)?,
            xml: ResHdr::parse(le.bytes(72, 24)?)?,
            boot_metadata: ResHdr::parse(le.bytes(96, 24)?)?,
            boot_index: le.u32(120)?,
            integrity: ResHdr::parse(le.bytes(124, 24)?)?,
        };
        if h.total_parts == 0 || h.part_number == 0 || h.part_number > h.total_parts {
            return Err(Error::corrupt(
                Section::Header,
                Some(40),
                format!("bad part number {}/{}", h.part_number, h.total_parts),
            ));
        }
        h.compression()?;
        Ok(h)
    }

    /// The default compression of the WIM's non-solid resources.
    pub fn compression(&self) -> Result<Compression> {
        if self.flags & flags::COMPRESSION == 0 {
            return Ok(Compression::None);
        }
        let f = self.flags;
        Ok(if f & flags::COMPRESS_LZMS != 0 {
            Compression::Lzms
        } else if f & flags::COMPRESS_LZX != 0 {
            Compression::Lzx
        } else if f & (flags::COMPRESS_XPRESS | flags::COMPRESS_XPRESS2) != 0 {
            Compression::Xpress
        } else {
            return Err(Error::corrupt(
                Section::Header,
                Some(16),
                "COMPRESSION flag set but no compression type",
            ));
        })
    }

    /// Chunk size of non-solid resources (32 KiB when the field is 0).
    pub fn effective_chunk_size(&self) -> Result<u32> {
        let cs = if self.chunk_size == 0 {
            32768
        } else {
            self.chunk_size
        };
        let comp = self.compression()?;
        if comp != Compression::None
            && (!cs.is_power_of_two() || cs < 4096 || cs > comp.max_chunk())
        {
            return Err(Error::corrupt(
                Section::Header,
                Some(20),
                format!("chunk size {cs} invalid for {}", comp.name()),
            ));
        }
        Ok(cs)
    }

    pub fn write(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(HEADER_SIZE);
        o.extend_from_slice(&self.magic);
        o.extend_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        o.extend_from_slice(&self.version.to_le_bytes());
        o.extend_from_slice(&self.flags.to_le_bytes());
        o.extend_from_slice(&self.chunk_size.to_le_bytes());
        o.extend_from_slice(&self.guid);
        o.extend_from_slice(&self.part_number.to_le_bytes());
        o.extend_from_slice(&self.total_parts.to_le_bytes());
        o.extend_from_slice(&self.image_count.to_le_bytes());
        self.blob_table.write(&mut o);
        self.xml.write(&mut o);
        self.boot_metadata.write(&mut o);
        o.extend_from_slice(&self.boot_index.to_le_bytes());
        self.integrity.write(&mut o);
        o.resize(HEADER_SIZE, 0);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        // Every field distinct and non-zero, so a field read from or written
        // to the wrong place cannot go unnoticed.
        let rh = |size: u64, flags: u8, offset: u64, unc: u64| ResHdr {
            size_in_wim: size,
            flags,
            offset,
            uncompressed_size: unc,
        };
        let guid: [u8; 16] = std::array::from_fn(|i| 0xA0 + i as u8);
        let h = Header {
            magic: *MAGIC,
            version: VERSION_DEFAULT,
            flags: flags::COMPRESSION | flags::COMPRESS_LZX | flags::RP_FIX,
            chunk_size: 65536,
            guid,
            part_number: 2,
            total_parts: 3,
            image_count: 5,
            blob_table: rh(500, 2, 1000, 501),
            xml: rh(0x1234, 0, 0x0102_0304_0506, 0x1235),
            boot_metadata: rh(0x00AB_CDEF_0123, 6, 777, 0x00AB_CDEF_0124),
            boot_index: 4,
            integrity: rh(90, 0, 0x00FF_FFFF_FFFF, 91),
        };
        let b = h.write();
        assert_eq!(b.len(), HEADER_SIZE);
        let p = Header::parse(&b).unwrap();
        assert_eq!(p.magic, h.magic);
        assert_eq!(p.version, h.version);
        assert_eq!(p.flags, h.flags);
        assert_eq!(p.chunk_size, h.chunk_size);
        assert_eq!(p.guid, h.guid);
        assert_eq!(p.part_number, h.part_number);
        assert_eq!(p.total_parts, h.total_parts);
        assert_eq!(p.image_count, h.image_count);
        assert_eq!(p.blob_table, h.blob_table);
        assert_eq!(p.xml, h.xml);
        assert_eq!(p.boot_metadata, h.boot_metadata);
        assert_eq!(p.boot_index, h.boot_index);
        assert_eq!(p.integrity, h.integrity);
        assert_eq!(p.compression().unwrap(), Compression::Lzx);
        assert_eq!(p.write(), b, "parse then write changes bytes");
        // The on-disk layout (the WIM format's field offsets).
        let u32at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u16at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
        let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let res_at = |o: usize| {
            let mut s = [0u8; 8];
            s[..7].copy_from_slice(&b[o..o + 7]);
            rh(u64::from_le_bytes(s), b[o + 7], u64at(o + 8), u64at(o + 16))
        };
        assert_eq!(&b[0..8], MAGIC);
        assert_eq!(u32at(8) as usize, HEADER_SIZE);
        assert_eq!(u32at(12), h.version);
        assert_eq!(u32at(16), h.flags);
        assert_eq!(u32at(20), h.chunk_size);
        assert_eq!(&b[24..40], &guid);
        assert_eq!(u16at(40), 2);
        assert_eq!(u16at(42), 3);
        assert_eq!(u32at(44), 5);
        assert_eq!(res_at(48), h.blob_table);
        assert_eq!(res_at(72), h.xml);
        assert_eq!(res_at(96), h.boot_metadata);
        assert_eq!(u32at(120), 4);
        assert_eq!(res_at(124), h.integrity);
        assert!(b[148..].iter().all(|&x| x == 0), "reserved bytes not zero");
    }

    #[test]
    fn rejects_short_and_bad_magic() {
        assert!(matches!(Header::parse(&[0u8; 10]), Err(Error::NotWim(_))));
        assert!(matches!(Header::parse(&[0u8; 208]), Err(Error::NotWim(_))));
    }
}
