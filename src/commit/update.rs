//! `update`: change an image with commands instead of a mount (where
//! /dev/fuse is missing: containers, CI), in wimlib's update language:
//!
//! ```text
//! add SOURCE DESTINATION          # a file or a whole tree from disk
//! delete [--force] [--recursive] PATH
//! rename SOURCE DESTINATION
//! ```
//!
//! One command per line; arguments with spaces in `"..."` or `'...'`;
//! `#` starts a comment line. Image paths start at the image root (`/` or
//! `\` separators). The edits go through the same overlay a read-write
//! mount uses (in a private staging directory beside the WIM, removed
//! afterwards), and the result is committed as a mount's commit is: only
//! new blobs are stored, the old header stays valid until the new one
//! lands. So an update and the same edits made in a mount give the same
//! image.

use super::{append_image, CommitOptions, CommitReport, Phase, WimLock};
use crate::cache::ChunkCache;
use crate::error::{Error, Result};
use crate::vfs::{Cred, FileKind, Ino, RenameMode, SetAttr, Vfs, VfsOptions, ROOT_INO};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One update command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Add {
        source: PathBuf,
        dest: String,
    },
    Delete {
        path: String,
        recursive: bool,
        force: bool,
    },
    Rename {
        from: String,
        to: String,
    },
}

/// Split a line into words; quotes group, a backslash is a path separator
/// (not an escape: image paths are Windows paths).
fn words(line: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            None => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(Error::Invalid(format!("unclosed quote in \"{line}\"")));
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Parse a command file (or one `--command`).
pub fn parse(text: &str) -> Result<Vec<Command>> {
    let mut cmds = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let bad = |why: &str| Error::Invalid(format!("update command line {}: {why}: {l}", n + 1));
        let w = words(l)?;
        let (opts, args): (Vec<&String>, Vec<&String>) =
            w[1..].iter().partition(|a| a.starts_with("--"));
        let has = |o: &str| opts.iter().any(|x| x.as_str() == o);
        let cmd = match w[0].to_ascii_lowercase().as_str() {
            "add" => match args[..] {
                [s, d] => Command::Add {
                    source: PathBuf::from(s),
                    dest: d.clone(),
                },
                _ => return Err(bad("add takes SOURCE DESTINATION")),
            },
            "delete" => match args[..] {
                [p] => Command::Delete {
                    path: p.clone(),
                    recursive: has("--recursive"),
                    force: has("--force"),
                },
                _ => return Err(bad("delete takes one PATH")),
            },
            "rename" => match args[..] {
                [a, b] => Command::Rename {
                    from: a.clone(),
                    to: b.clone(),
                },
                _ => return Err(bad("rename takes SOURCE DESTINATION")),
            },
            _ => return Err(bad("unknown command (add, delete, rename)")),
        };
        for o in &opts {
            let known = match &cmd {
                Command::Delete { .. } => ["--recursive", "--force"].contains(&o.as_str()),
                _ => false,
            };
            if !known {
                return Err(bad(&format!("unknown option {o}")));
            }
        }
        cmds.push(cmd);
    }
    Ok(cmds)
}

/// Components of an image path.
fn components(p: &str) -> Vec<String> {
    p.split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect()
}

struct Editor {
    vfs: Vfs,
    cred: Cred,
    /// Source files already added, by (device, inode): adding one again
    /// (or another name of it) makes a hard link, as wimlib's update does.
    added: std::cell::RefCell<std::collections::HashMap<(u64, u64), Ino>>,
}

fn verr(what: &str) -> impl Fn(crate::vfs::VfsError) -> Error + '_ {
    move |e| Error::Other(format!("{what}: {e}"))
}

impl Editor {
    fn lookup(&self, comps: &[String]) -> Option<Ino> {
        let mut ino = ROOT_INO;
        for c in comps {
            ino = self.vfs.lookup(ino, c).ok()?.ino;
        }
        Some(ino)
    }

    /// The parent directory of `comps` (created with its parents when
    /// `create`) and the last name.
    fn parent(&self, comps: &[String], path: &str, create: bool) -> Result<(Ino, String)> {
        let (last, dirs) = comps.split_last().ok_or_else(|| {
            Error::Invalid(format!("{path}: the image root cannot be changed so"))
        })?;
        let mut ino = ROOT_INO;
        for c in dirs {
            ino = match self.vfs.lookup(ino, c) {
                Ok(a) => a.ino,
                Err(_) if create => {
                    self.vfs
                        .mkdir(ino, c, 0o755, self.cred)
                        .map_err(verr(path))?
                        .ino
                }
                Err(e) => return Err(verr(path)(e)),
            };
        }
        Ok((ino, last.clone()))
    }

    fn children(&self, dir: Ino, path: &str) -> Result<Vec<(String, FileKind)>> {
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            let es = self.vfs.readdir(dir, off, 256).map_err(verr(path))?;
            if es.is_empty() {
                return Ok(out);
            }
            for e in es {
                off = e.next;
                if e.name != "." && e.name != ".." {
                    out.push((e.name, e.kind));
                }
            }
        }
    }

    fn remove(&self, parent: Ino, name: &str, kind: FileKind, path: &str) -> Result<()> {
        if kind == FileKind::Directory {
            let dir = self.vfs.lookup(parent, name).map_err(verr(path))?.ino;
            for (n, k) in self.children(dir, path)? {
                self.remove(dir, &n, k, &format!("{path}/{n}"))?;
            }
            self.vfs.rmdir(parent, name).map_err(verr(path))
        } else {
            self.vfs.unlink(parent, name).map_err(verr(path))
        }
    }

    fn set_times(&self, ino: Ino, md: &std::fs::Metadata) {
        let t = |s: i64, ns: i64| Some((s, ns.clamp(0, 999_999_999) as u32));
        let a = SetAttr {
            atime: t(md.atime(), md.atime_nsec()),
            mtime: t(md.mtime(), md.mtime_nsec()),
            ..Default::default()
        };
        if let Err(e) = self.vfs.setattr(ino, &a) {
            log::warn!("cannot set the times of a file added by update: {e}");
        }
    }

    /// Add the file, symlink or tree at `src` as `name` in `parent`.
    fn add(&self, src: &Path, parent: Ino, name: &str, path: &str) -> Result<()> {
        let io = |err| Error::Io {
            path: src.display().to_string(),
            err,
        };
        let md = std::fs::symlink_metadata(src).map_err(io)?;
        let existing = self.vfs.lookup(parent, name).ok();
        let ft = md.file_type();
        if ft.is_dir() {
            let dir = match existing {
                // A directory onto a directory: merged.
                Some(a) if a.kind == FileKind::Directory => a.ino,
                Some(a) => {
                    self.remove(parent, name, a.kind, path)?;
                    self.vfs
                        .mkdir(parent, name, 0o755, self.cred)
                        .map_err(verr(path))?
                        .ino
                }
                None => {
                    self.vfs
                        .mkdir(parent, name, 0o755, self.cred)
                        .map_err(verr(path))?
                        .ino
                }
            };
            let mut names: Vec<_> = std::fs::read_dir(src)
                .map_err(io)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .map_err(io)?;
            names.sort();
            for n in names {
                let Some(s) = n.to_str() else {
                    return Err(Error::Invalid(format!(
                        "{}: a name that is not UTF-8",
                        src.join(&n).display()
                    )));
                };
                self.add(&src.join(&n), dir, s, &format!("{path}/{s}"))?;
            }
            self.set_times(dir, &md);
            return Ok(());
        }
        if let Some(a) = existing {
            if a.kind == FileKind::Directory {
                return Err(Error::Other(format!(
                    "{path}: a directory is there; delete it first to put a file in its place"
                )));
            }
            self.vfs.unlink(parent, name).map_err(verr(path))?;
        }
        let ino = if ft.is_symlink() {
            let t = std::fs::read_link(src).map_err(io)?;
            let t = t.to_str().ok_or_else(|| {
                Error::Invalid(format!("{}: the link target is not UTF-8", src.display()))
            })?;
            self.vfs
                .symlink(parent, name, t, self.cred)
                .map_err(verr(path))?
                .ino
        } else if ft.is_file() {
            let first = self.added.borrow().get(&(md.dev(), md.ino())).copied();
            // Another name of a file this update added: one file (a hard
            // link), as wimlib makes it.
            if let Some(ino) = first {
                if self.vfs.link(ino, parent, name).is_ok() {
                    return Ok(());
                }
            }
            let (a, fh) = self
                .vfs
                .create(parent, name, 0o644, self.cred)
                .map_err(verr(path))?;
            let f = std::fs::File::open(src).map_err(io)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0u64;
            loop {
                let n = crate::sys::read_at(&f, &mut buf, off).map_err(io)?;
                if n == 0 {
                    break;
                }
                self.vfs.write(a.ino, off, &buf[..n]).map_err(verr(path))?;
                off += n as u64;
            }
            self.vfs.release(fh).map_err(verr(path))?;
            self.added.borrow_mut().insert((md.dev(), md.ino()), a.ino);
            a.ino
        } else {
            return Err(Error::Unsupported(format!(
                "{}: only files, directories and symlinks can be added",
                src.display()
            )));
        };
        self.set_times(ino, &md);
        Ok(())
    }

    fn run(&self, c: &Command) -> Result<()> {
        match c {
            Command::Add { source, dest } => {
                let comps = components(dest);
                if comps.is_empty() {
                    // Onto the root: a directory's contents merge into it.
                    if !std::fs::metadata(source).is_ok_and(|m| m.is_dir()) {
                        return Err(Error::Invalid(format!(
                            "add {}: only a directory can be added as the image root",
                            source.display()
                        )));
                    }
                    let mut names: Vec<_> = std::fs::read_dir(source)?
                        .map(|e| e.map(|e| e.file_name()))
                        .collect::<std::io::Result<_>>()?;
                    names.sort();
                    for n in names {
                        let s = n.to_string_lossy().into_owned();
                        self.add(&source.join(&n), ROOT_INO, &s, &format!("/{s}"))?;
                    }
                    return Ok(());
                }
                let (p, name) = self.parent(&comps, dest, true)?;
                self.add(source, p, &name, dest)
            }
            Command::Delete {
                path,
                recursive,
                force,
            } => {
                let comps = components(path);
                let Some(_) = self.lookup(&comps) else {
                    if *force {
                        return Ok(());
                    }
                    return Err(Error::Other(format!("delete {path}: not in the image")));
                };
                let (p, name) = self.parent(&comps, path, false)?;
                let a = self.vfs.lookup(p, &name).map_err(verr(path))?;
                if a.kind == FileKind::Directory && !recursive {
                    return Err(Error::Other(format!(
                        "delete {path}: a directory (use --recursive)"
                    )));
                }
                self.remove(p, &name, a.kind, path)
            }
            Command::Rename { from, to } => {
                let (fc, tc) = (components(from), components(to));
                if self.lookup(&fc).is_none() {
                    return Err(Error::Other(format!("rename {from}: not in the image")));
                }
                let (fp, fname) = self.parent(&fc, from, false)?;
                let (tp, tname) = self.parent(&tc, to, false)?;
                self.vfs
                    .rename(fp, &fname, tp, &tname, RenameMode::Replace)
                    .map_err(verr(&format!("rename {from} {to}")))
            }
        }
    }
}

/// Run `commands` on image `index` of the WIM at `path` and commit the
/// result in place of the image.
pub fn update(
    path: &Path,
    index: u32,
    commands: &[Command],
    check: bool,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> Result<CommitReport> {
    let lock = WimLock::acquire(path)?;
    let wim = Arc::new(lock.open_wim()?);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = dir.join(format!(
        ".{base}.wimfs-update-{}",
        crate::sys::random_suffix()
    ));
    crate::sys::create_dir_all_private(&staging).map_err(|err| Error::Io {
        path: staging.display().to_string(),
        err,
    })?;
    let res = (|| -> Result<CommitReport> {
        let (vfs, _) = Vfs::open_rw(
            wim.clone(),
            index,
            Arc::new(ChunkCache::new(256 << 20)),
            VfsOptions::default(),
            &staging,
        )
        .map_err(|e| Error::Other(format!("staging {}: {e}", staging.display())))?;
        let ed = Editor {
            vfs,
            cred: Cred { uid: 0, gid: 0 },
            added: Default::default(),
        };
        for c in commands {
            ed.run(c)?;
        }
        let img = ed.vfs.to_new_image()?;
        let opts = CommitOptions {
            check,
            ..Default::default()
        };
        append_image(&lock, index, img, &opts, progress)
    })();
    if let Err(e) = std::fs::remove_dir_all(&staging) {
        log::warn!("cannot remove {}: {e}", staging.display());
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wimlib_update_language() {
        let c = parse(
            "# comment\n\nadd 'my dir' \"/Program Files/x\"\n\
             delete --force --recursive \\Windows\\Temp\nrename /a.txt /b.txt\n",
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                Command::Add {
                    source: "my dir".into(),
                    dest: "/Program Files/x".into()
                },
                Command::Delete {
                    path: "\\Windows\\Temp".into(),
                    recursive: true,
                    force: true
                },
                Command::Rename {
                    from: "/a.txt".into(),
                    to: "/b.txt".into()
                },
            ]
        );
        assert_eq!(components("\\Windows\\Temp"), ["Windows", "Temp"]);
        assert!(parse("copy a b").is_err());
        assert!(parse("add a").is_err());
        assert!(parse("delete --bogus x").is_err());
        assert!(parse("add 'a b").is_err());
    }
}
