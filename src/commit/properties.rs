//! Image properties: name, description, edition flags and the boot index,
//! set in the XML and header of an existing WIM by an append that writes
//! only a new blob table, XML and header (no data, no metadata).

use super::writer::WimWriter;
use super::WimLock;
use crate::error::{Error, Result};
use std::path::Path;

/// What to change (`None`: leave as it is).
#[derive(Debug, Clone, Default)]
pub struct ImageProperties {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `<FLAGS>`: the edition ID Windows Setup shows (e.g. "Professional").
    pub flags: Option<String>,
    /// Make the image the one the WIM boots.
    pub boot: bool,
}

impl ImageProperties {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none() && self.flags.is_none() && !self.boot
    }
}

/// Set `props` on image `index` of the WIM at `path`. A name another image
/// has is refused (images are chosen by name too, as wimlib refuses it);
/// an empty name is refused for the same reason.
pub fn set_properties(path: &Path, index: u32, props: &ImageProperties, check: bool) -> Result<()> {
    let lock = WimLock::acquire(path)?;
    let mut w = WimWriter::append(&lock, check)?;
    let count = w.image_count();
    if index == 0 || index > count {
        return Err(Error::NoSuchImage(format!(
            "{index} (this WIM has {count} image(s))"
        )));
    }
    if let Some(n) = &props.name {
        if n.is_empty() {
            return Err(Error::Invalid("an image name cannot be empty".into()));
        }
        let base = w
            .base()
            .ok_or_else(|| Error::Other("internal: no base WIM".into()))?;
        if let Some(other) = base
            .image_info
            .iter()
            .find(|x| x.index != index && x.name.as_deref() == Some(n.as_str()))
        {
            return Err(Error::Other(format!(
                "image {} is already named \"{n}\"",
                other.index
            )));
        }
    }
    let mut set = |e: &mut crate::wim::xml::Element| {
        if let Some(v) = &props.name {
            e.set_child_text("NAME", v);
        }
        if let Some(v) = &props.description {
            e.set_child_text("DESCRIPTION", v);
        }
        if let Some(v) = &props.flags {
            e.set_child_text("FLAGS", v);
        }
    };
    if !w.update_image_xml(index, &mut set) {
        let mut e = crate::wim::xml::Element::new("IMAGE");
        set(&mut e);
        w.put_image_xml(index, e);
    }
    if props.boot {
        w.set_boot_index(index);
    }
    w.finish(&mut |_| Ok(()))?;
    Ok(())
}
