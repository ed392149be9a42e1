//! The WIM's XML document (UTF-16LE): image names, descriptions, counts,
//! times and Windows version information.
//!
//! WIM XML is simple (elements, attributes, text, the five predefined
//! entities, numeric character references), so a small tolerant tree parser
//! is enough and keeps untrusted input away from anything clever. Depth and
//! size are bounded.

use super::bytes::utf16le_to_string;
use crate::error::{Error, Result, Section};

const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Elem(Element),
    Text(String),
}

impl Element {
    pub fn new(name: &str) -> Self {
        Element {
            name: name.into(),
            ..Default::default()
        }
    }
    /// First child element with this name (case-insensitive: writers differ).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name.eq_ignore_ascii_case(name))
    }
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Elem(e) if e.name.eq_ignore_ascii_case(name) => Some(e),
            _ => None,
        })
    }
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            _ => None,
        })
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Concatenated text content, trimmed.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s.trim().to_string()
    }
    /// Text of a descendant at a `/`-separated path.
    pub fn path_text(&self, path: &str) -> Option<String> {
        let mut e = self;
        for p in path.split('/') {
            e = e.child(p)?;
        }
        Some(e.text())
    }
    /// Set (or create) a child element's text.
    pub fn set_child_text(&mut self, name: &str, text: &str) {
        if let Some(c) = self.child_mut(name) {
            c.children = vec![Node::Text(text.into())];
        } else {
            let mut c = Element::new(name);
            c.children.push(Node::Text(text.into()));
            self.children.push(Node::Elem(c));
        }
    }

    pub fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push_str(&format!(" {}=\"{}\"", k, escape(v)));
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Elem(e) => e.write(out),
                Node::Text(t) => out.push_str(&escape(t)),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(j) = rest.find(';').filter(|&j| j <= 12) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..j];
        let rep = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match rep {
            Some(c) => {
                out.push(c);
                rest = &rest[j + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parse an XML document into its root element.
pub fn parse(s: &str) -> Result<Element> {
    let bad = |m: &str| Error::corrupt(Section::Xml, None, format!("XML data: {m}"));
    let mut stack: Vec<Element> = vec![Element::new("#document")];
    let mut rest = s.trim_start_matches('\u{feff}');
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut stack, rest);
            break;
        };
        if lt > 0 {
            push_text(&mut stack, &rest[..lt]);
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<?") {
            let e = r
                .find("?>")
                .ok_or_else(|| bad("unterminated processing instruction"))?;
            rest = &r[e + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            let e = r.find("-->").ok_or_else(|| bad("unterminated comment"))?;
            rest = &r[e + 3..];
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let e = r.find("]]>").ok_or_else(|| bad("unterminated CDATA"))?;
            if let Some(top) = stack.last_mut() {
                top.children.push(Node::Text(r[..e].to_string()));
            }
            rest = &r[e + 3..];
        } else if let Some(r) = rest.strip_prefix("<!") {
            let e = r.find('>').ok_or_else(|| bad("unterminated declaration"))?;
            rest = &r[e + 1..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let e = r.find('>').ok_or_else(|| bad("unterminated end tag"))?;
            let name = r[..e].trim();
            rest = &r[e + 1..];
            if stack.len() < 2 {
                return Err(bad("end tag without start tag"));
            }
            let el = stack.pop().ok_or_else(|| bad("unbalanced"))?;
            if !el.name.eq_ignore_ascii_case(name) {
                return Err(bad(&format!("</{name}> closes <{}>", el.name)));
            }
            if let Some(top) = stack.last_mut() {
                top.children.push(Node::Elem(el));
            }
        } else {
            let r = &rest[1..];
            let e = r.find('>').ok_or_else(|| bad("unterminated start tag"))?;
            let mut inner = &r[..e];
            rest = &r[e + 1..];
            let self_closing = inner.ends_with('/');
            if self_closing {
                inner = &inner[..inner.len() - 1];
            }
            let el = parse_tag(inner).ok_or_else(|| bad("malformed start tag"))?;
            if self_closing {
                if let Some(top) = stack.last_mut() {
                    top.children.push(Node::Elem(el));
                }
            } else {
                if stack.len() > MAX_DEPTH {
                    return Err(bad("nesting too deep"));
                }
                stack.push(el);
            }
        }
    }
    if stack.len() != 1 {
        return Err(bad("unclosed elements at end of document"));
    }
    let doc = stack.pop().ok_or_else(|| bad("empty"))?;
    doc.children
        .into_iter()
        .find_map(|n| match n {
            Node::Elem(e) => Some(e),
            _ => None,
        })
        .ok_or_else(|| bad("no root element"))
}

fn push_text(stack: &mut [Element], t: &str) {
    if let Some(top) = stack.last_mut() {
        if !t.trim().is_empty() {
            top.children.push(Node::Text(unescape(t)));
        }
    }
}

fn parse_tag(s: &str) -> Option<Element> {
    let s = s.trim();
    let name_end = s.find(|c: char| c.is_whitespace()).unwrap_or(s.len());
    let name = &s[..name_end];
    // Only names that can be written back as they were read.
    if name.is_empty() || name.contains(['/', '<', '>', '=', '"', '\'', '&', '!', '?']) {
        return None;
    }
    let mut el = Element::new(name);
    let mut rest = s[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || "/<>=\"'&".contains(c)) {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        let q = rest.chars().next()?;
        if q != '"' && q != '\'' {
            return None;
        }
        let end = rest[1..].find(q)?;
        el.attrs.push((key, unescape(&rest[1..1 + end])));
        rest = rest[end + 2..].trim_start();
    }
    Some(el)
}

/// Decode the raw XML resource (UTF-16LE, usually with a BOM).
pub fn decode(raw: &[u8]) -> String {
    let b = raw.strip_prefix(&[0xFF, 0xFE]).unwrap_or(raw);
    utf16le_to_string(b)
}

/// Encode an XML document as WIM stores it: UTF-16LE with a BOM.
pub fn encode(root: &Element) -> Vec<u8> {
    let mut s = String::new();
    root.write(&mut s);
    let mut out = vec![0xFF, 0xFE];
    out.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
    out
}

/// What the XML says of one image.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImageInfo {
    pub index: u32,
    pub name: Option<String>,
    pub description: Option<String>,
    pub display_name: Option<String>,
    pub display_description: Option<String>,
    pub flags: Option<String>,
    pub dir_count: Option<u64>,
    pub file_count: Option<u64>,
    pub total_bytes: Option<u64>,
    pub hard_link_bytes: Option<u64>,
    pub creation_time: Option<u64>,
    pub last_modification_time: Option<u64>,
    pub windows: Option<WindowsInfo>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WindowsInfo {
    pub arch: Option<u32>,
    pub product_name: Option<String>,
    pub edition_id: Option<String>,
    pub installation_type: Option<String>,
    pub product_type: Option<String>,
    pub languages: Vec<String>,
    pub default_language: Option<String>,
    pub version: Option<String>,
    pub system_root: Option<String>,
}

fn num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn filetime(e: Option<&Element>) -> Option<u64> {
    let e = e?;
    let hi = num(&e.child("HIGHPART")?.text())?;
    let lo = num(&e.child("LOWPART")?.text())?;
    Some((hi << 32) | (lo & 0xFFFF_FFFF))
}

/// Extract per-image information from the parsed document.
pub fn images(root: &Element) -> Vec<ImageInfo> {
    let mut v = Vec::new();
    for (i, e) in root
        .elements()
        .filter(|e| e.name.eq_ignore_ascii_case("IMAGE"))
        .enumerate()
    {
        let t = |n: &str| e.child(n).map(|c| c.text());
        let windows = e.child("WINDOWS").map(|w| {
            let wt = |n: &str| w.child(n).map(|c| c.text());
            let version = w.child("VERSION").map(|v| {
                let p = |n: &str| v.child(n).map(|c| c.text()).unwrap_or_default();
                format!(
                    "{}.{}.{}.{}",
                    p("MAJOR"),
                    p("MINOR"),
                    p("BUILD"),
                    p("SPBUILD")
                )
            });
            let langs = w.child("LANGUAGES");
            WindowsInfo {
                arch: wt("ARCH").and_then(|s| num(&s)).map(|n| n as u32),
                product_name: wt("PRODUCTNAME"),
                edition_id: wt("EDITIONID"),
                installation_type: wt("INSTALLATIONTYPE"),
                product_type: wt("PRODUCTTYPE"),
                languages: langs
                    .map(|l| {
                        l.elements()
                            .filter(|x| x.name.eq_ignore_ascii_case("LANGUAGE"))
                            .map(|x| x.text())
                            .collect()
                    })
                    .unwrap_or_default(),
                default_language: langs.and_then(|l| l.child("DEFAULT")).map(|x| x.text()),
                version,
                system_root: wt("SYSTEMROOT"),
            }
        });
        v.push(ImageInfo {
            index: e
                .attr("INDEX")
                .and_then(num)
                .map(|n| n as u32)
                .unwrap_or(i as u32 + 1),
            name: t("NAME"),
            description: t("DESCRIPTION"),
            display_name: t("DISPLAYNAME"),
            display_description: t("DISPLAYDESCRIPTION"),
            flags: t("FLAGS"),
            dir_count: t("DIRCOUNT").and_then(|s| num(&s)),
            file_count: t("FILECOUNT").and_then(|s| num(&s)),
            total_bytes: t("TOTALBYTES").and_then(|s| num(&s)),
            hard_link_bytes: t("HARDLINKBYTES").and_then(|s| num(&s)),
            creation_time: filetime(e.child("CREATIONTIME")),
            last_modification_time: filetime(e.child("LASTMODIFICATIONTIME")),
            windows,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wim_xml() {
        let s = "\u{feff}<WIM><TOTALBYTES>123</TOTALBYTES><IMAGE INDEX=\"1\"><NAME>a &amp; b</NAME>\
                 <DIRCOUNT>3</DIRCOUNT><CREATIONTIME><HIGHPART>0x01D00000</HIGHPART><LOWPART>0x00000010</LOWPART>\
                 </CREATIONTIME></IMAGE><IMAGE INDEX=\"2\"><NAME/></IMAGE></WIM>";
        let r = parse(s).unwrap();
        let im = images(&r);
        assert_eq!(im.len(), 2);
        assert_eq!(im[0].name.as_deref(), Some("a & b"));
        assert_eq!(im[0].dir_count, Some(3));
        assert_eq!(im[0].creation_time, Some(0x01D0_0000_0000_0010));
        assert_eq!(im[1].index, 2);
        let enc = encode(&r);
        assert_eq!(parse(&decode(&enc)).unwrap(), r);
    }

    #[test]
    fn what_we_write_reads_back() {
        // Found by fuzzing: a tag named "/" was accepted and then written
        // as something unreadable.
        assert!(parse("<//>").is_err());
        assert!(parse("<a b/c=\"1\"/>").is_err());
        let r = parse("<WIM><IMAGE INDEX=\"1\"><NAME>x &lt; y</NAME></IMAGE></WIM>").unwrap();
        assert_eq!(parse(&decode(&encode(&r))).unwrap(), r);
    }

    #[test]
    fn rejects_garbage_without_panic() {
        for s in [
            "<",
            "<a>",
            "</a>",
            "<a></b>",
            "<a b=>",
            "<<<>>>",
            "&#xffffffff;",
        ] {
            assert!(parse(s).is_err(), "{s:?} parsed");
        }
        // A document cut anywhere is reported, not read as a shorter one.
        let doc = "<WIM><TOTALBYTES>1234</TOTALBYTES><IMAGE INDEX=\"1\"><NAME>x &lt; y</NAME></IMAGE></WIM>";
        assert!(parse(doc).is_ok());
        for n in 0..doc.len() {
            assert!(
                parse(&doc[..n]).is_err(),
                "cut at {n} parsed: {:?}",
                &doc[..n]
            );
        }
    }
}
