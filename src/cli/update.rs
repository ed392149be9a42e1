//! `wimfs update`: change an image with commands (add, delete, rename)
//! read from `--command` or standard input, without mounting it.

use super::{image_arg, open, progress};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use wimfs::commit::update;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The WIM to change (the image is rewritten through a commit, as a mount's).
    wim: PathBuf,
    /// Image index or name (may be left out when the WIM has one image).
    image: Option<String>,
    /// A command (`add SRC DST`, `delete [--recursive] [--force] PATH`,
    /// `rename SRC DST`); repeatable. Without it, commands are read from
    /// standard input, one per line.
    #[arg(long, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Write an integrity table.
    #[arg(long)]
    check: bool,
}

pub fn update(a: UpdateArgs) -> Result<i32> {
    let w = open(&a.wim, &[])?;
    let index = image_arg(&w, a.image.as_deref())?;
    drop(w);
    let text = if a.command.is_empty() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading update commands from standard input")?;
        s
    } else {
        a.command.join("\n")
    };
    let cmds = update::parse(&text)?;
    if cmds.is_empty() {
        anyhow::bail!("no update commands given");
    }
    let pb = progress(0, "update");
    let r = update::update(&a.wim, index, &cmds, a.check, &|_, n| pb.inc(n))
        .with_context(|| format!("updating image {index} of {}", a.wim.display()))?;
    pb.finish_and_clear();
    super::commit::print_report(&r, &a.wim.display().to_string());
    Ok(0)
}
