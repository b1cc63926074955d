//! `Session` methods on files: write, read, test, edit a line.

use std::sync::Arc;

use rhai::{Engine, Map};

use super::super::args::{self, Options};
use super::super::{LabContext, func};
use super::fail_on;
use crate::engine::{RhaiResult, script_error};
use crate::ssh::Session;
use crate::ssh::files::FileOptions;

const FILE_KEYS: &[&str] = &["mode", "owner", "sudo"];

fn file_options(function: &str, m: &Map, keys: &[&str]) -> RhaiResult<FileOptions> {
    let o = Options::new(function, m, keys, &[])?;
    let mode = match o.get("mode") {
        Some(v) => Some(match v.as_int() {
            Ok(i) => format!("{i:o}"),
            Err(_) => args::string(function, "mode", v)?,
        }),
        None => None,
    };
    Ok(FileOptions {
        mode,
        owner: o.string("owner")?,
        sudo: o.flag("sudo")?.unwrap_or(true),
    })
}

fn write_file(
    ctx: &LabContext,
    s: &Session,
    path: &str,
    content: &str,
    o: FileOptions,
) -> RhaiResult<bool> {
    ctx.check_cancel()?;
    let changed = ctx
        .block_on(s.write_file(path, content.as_bytes(), &o))
        .map_err(|e| fail_on(ctx, s, "ssh.write_file", e))?;
    if changed {
        ctx.changed();
    }
    Ok(changed)
}

fn read_file(ctx: &LabContext, s: &Session, path: &str, sudo: bool) -> RhaiResult<String> {
    ctx.check_cancel()?;
    ctx.block_on(s.read_file(path, sudo))
        .map_err(|e| fail_on(ctx, s, "ssh.read_file", e))
}

fn file_exists(ctx: &LabContext, s: &Session, path: &str, sudo: bool) -> RhaiResult<bool> {
    ctx.check_cancel()?;
    ctx.block_on(s.file_exists(path, sudo))
        .map_err(|e| fail_on(ctx, s, "ssh.file_exists", e))
}

fn replace_line(
    ctx: &LabContext,
    s: &Session,
    path: &str,
    regex: &str,
    line: &str,
    sudo: bool,
) -> RhaiResult<bool> {
    ctx.check_cancel()?;
    let re = regex::Regex::new(regex)
        .map_err(|e| script_error(format!("ssh.replace_line: invalid regex {regex:?}: {e}")))?;
    let changed = ctx
        .block_on(s.replace_line(path, &re, line, sudo))
        .map_err(|e| fail_on(ctx, s, "ssh.replace_line", e))?;
    if changed {
        ctx.changed();
    }
    Ok(changed)
}

/// `#{sudo}` of the file methods that take only that option.
fn sudo_flag(function: &str, m: &Map) -> RhaiResult<bool> {
    Ok(file_options(function, m, &["sudo"])?.sudo)
}

pub(super) fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    macro_rules! method {
        ($name:literal, $params:expr, $doc:literal, $f:expr) => {
            func($name, $params, $doc).register_into_engine(engine, $f);
        };
    }

    let c = ctx.clone();
    method!(
        "write_file",
        &["this: Session", "path: string", "text: string", "bool"],
        "Writes `text` to `path` (as root) unless it already holds exactly that;
        returns whether it changed. The content travels through stdin. A new file
        gets mode 0644; an existing one keeps its mode and owner.",
        move |s: &mut Session, path: &str, content: &str| {
            write_file(
                &c,
                s,
                path,
                content,
                file_options("ssh.write_file", &Map::new(), FILE_KEYS)?,
            )
        }
    );
    let c = ctx.clone();
    method!(
        "write_file",
        &[
            "this: Session",
            "path: string",
            "text: string",
            "options: Map",
            "bool"
        ],
        "`write_file` with `#{mode, owner, sudo}`: `mode` like `\"0640\"`, `owner` like
        `\"mysql\"` or `\"mysql:mysql\"`; changes when content, mode or owner differ.
        `sudo: false` writes as the login user.",
        move |s: &mut Session, path: &str, content: &str, o: Map| {
            write_file(
                &c,
                s,
                path,
                content,
                file_options("ssh.write_file", &o, FILE_KEYS)?,
            )
        }
    );

    let c = ctx.clone();
    method!(
        "read_file",
        &["this: Session", "path: string", "String"],
        "The content of `path` (read as root).",
        move |s: &mut Session, path: &str| read_file(&c, s, path, true)
    );
    let c = ctx.clone();
    method!(
        "read_file",
        &["this: Session", "path: string", "options: Map", "String"],
        "`read_file` with `#{sudo}` (`sudo: false` reads as the login user).",
        move |s: &mut Session, path: &str, o: Map| {
            read_file(&c, s, path, sudo_flag("ssh.read_file", &o)?)
        }
    );
    let c = ctx.clone();
    method!(
        "file_exists",
        &["this: Session", "path: string", "bool"],
        "Whether `path` exists (checked as root).",
        move |s: &mut Session, path: &str| file_exists(&c, s, path, true)
    );
    let c = ctx.clone();
    method!(
        "file_exists",
        &["this: Session", "path: string", "options: Map", "bool"],
        "`file_exists` with `#{sudo}`.",
        move |s: &mut Session, path: &str, o: Map| {
            file_exists(&c, s, path, sudo_flag("ssh.file_exists", &o)?)
        }
    );
    let c = ctx.clone();
    method!(
        "replace_line",
        &[
            "this: Session",
            "path: string",
            "regex: string",
            "line: string",
            "bool"
        ],
        "Like Ansible's lineinfile: replaces the last line of `path` matching `regex`
        (a Rust regex, searched anywhere in the line) with `line`; if none matches
        and `line` is not already there, appends it. The file must exist; its mode
        and owner are kept. Returns whether it changed.",
        move |s: &mut Session, path: &str, regex: &str, line: &str| {
            replace_line(&c, s, path, regex, line, true)
        }
    );
    let c = ctx.clone();
    method!(
        "replace_line",
        &[
            "this: Session",
            "path: string",
            "regex: string",
            "line: string",
            "options: Map",
            "bool"
        ],
        "`replace_line` with `#{sudo}`.",
        move |s: &mut Session, path: &str, regex: &str, line: &str, o: Map| {
            let sudo = sudo_flag("ssh.replace_line", &o)?;
            replace_line(&c, s, path, regex, line, sudo)
        }
    );
}
