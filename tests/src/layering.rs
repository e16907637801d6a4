//! The layering rule of a crate: which top-level module may use which.
//!
//! A crate's modules form a one-way graph when every `crate::…` (and `super::…`) path in a
//! module names the module itself or one it is allowed to use. This scanner reads the
//! sources, without compiling them, and reports every other edge with its file and line.
//!
//! What it reads, per `src/**/*.rs` file:
//! - The module is the first path segment below `src/` (`vrrp/driver.rs` → `vrrp`,
//!   `hooks.rs` → `hooks`); `lib.rs` and `main.rs` are roots, which may use anything.
//!   A binary's files (its `main.rs` and the modules only it declares) can be mapped to a
//!   module of their own (fo-agent's `cli`), and then their `fo_agent::…` paths count too.
//! - String, byte, raw and char literals and plain `//` and `/* */` comments are blanked
//!   first. Doc comments are kept: an intra-doc link is a real dependency.
//! - `crate::NAME`, every first-level name of `crate::{a, b::c}`, and `super::` chains
//!   resolved against the file's module path and its inline `mod x { … }` blocks.
//! - A `#[path` attribute is an error: it would make file and module disagree.
//!
//! This file is shared by path (`#[path = "../../tests/src/layering.rs"]`) with the thin
//! `tests/layering.rs` of fo-agent and fo-vrrp, so `cargo test -p fo-agent` catches an
//! upward import without a dependency on this crate; their tests come from
//! `layering_tests!`.

#![allow(
    dead_code,
    reason = "shared by path; each crate's test uses part of it"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// One use of another module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The file, relative to the crate root (`src/vrrp/driver.rs`).
    pub file: String,
    pub line: usize,
    pub from: String,
    pub to: String,
    /// The path as written, e.g. `crate::agent::SharedPlane`.
    pub path: String,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} → {} ({})",
            self.file, self.line, self.from, self.to, self.path
        )
    }
}

/// The rule for one crate.
pub struct Rules<'a> {
    /// Each module with the modules it may use (its own module is always allowed).
    pub allowed: &'a [(&'a str, &'a [&'a str])],
    /// Today's violations, by file and target module: a ratchet that may only shrink.
    pub known: &'a [(&'a str, &'a str)],
    /// Where the table is explained, printed with every violation.
    pub doc: &'a str,
}

impl<'a> Rules<'a> {
    fn may_use(&self, from: &str) -> Option<&'a [&'a str]> {
        self.allowed
            .iter()
            .find(|(module, _)| *module == from)
            .map(|(_, uses)| *uses)
    }

    /// Every edge that is neither allowed nor known, one message each.
    pub fn violations(&self, edges: &[Edge]) -> Vec<String> {
        let mut out = Vec::new();
        for edge in edges {
            if edge.to == edge.from || edge.from.is_empty() {
                continue;
            }
            let uses = self.may_use(&edge.from).unwrap_or(&[]);
            if uses.contains(&edge.to.as_str()) {
                continue;
            }
            if self
                .known
                .iter()
                .any(|(file, to)| *file == edge.file && *to == edge.to)
            {
                continue;
            }
            out.push(format!(
                "{edge} is not allowed; {} may use {} ({})",
                edge.from,
                if uses.is_empty() {
                    "nothing else".to_owned()
                } else {
                    uses.join(", ")
                },
                self.doc
            ));
        }
        out
    }

    /// KNOWN entries that no longer occur: each must be removed, so the list only shrinks.
    pub fn stale_known(&self, edges: &[Edge]) -> Vec<String> {
        self.known
            .iter()
            .filter(|(file, to)| {
                !edges.iter().any(|e| {
                    e.file == *file
                        && e.to == *to
                        && !self
                            .may_use(&e.from)
                            .unwrap_or(&[])
                            .contains(&e.to.as_str())
                })
            })
            .map(|(file, to)| {
                format!("KNOWN lists {file} → {to}, which no longer occurs: remove it from KNOWN")
            })
            .collect()
    }

    /// Top-level modules that have no row in the table, so a new module is placed on purpose.
    pub fn unplaced(&self, modules: &BTreeSet<String>) -> Vec<String> {
        modules
            .iter()
            .filter(|m| self.may_use(m).is_none())
            .map(|m| format!("module `{m}` has no row in ALLOWED: say which modules it may use"))
            .collect()
    }

    /// A cycle in the table, if there is one (the modules on it, in order).
    pub fn cycle(&self) -> Option<Vec<String>> {
        fn visit<'a>(
            rules: &Rules<'a>,
            module: &'a str,
            stack: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(at) = stack.iter().position(|m| *m == module) {
                let mut cycle: Vec<String> = stack[at..].iter().map(|m| m.to_string()).collect();
                cycle.push(module.to_owned());
                return Some(cycle);
            }
            if !done.insert(module) {
                return None;
            }
            stack.push(module);
            for next in rules.may_use(module).unwrap_or(&[]) {
                if let Some(cycle) = visit(rules, next, stack, done) {
                    return Some(cycle);
                }
            }
            stack.pop();
            None
        }
        let mut done = BTreeSet::new();
        self.allowed
            .iter()
            .find_map(|(module, _)| visit(self, module, &mut Vec::new(), &mut done))
    }
}

/// How a crate's files map to modules.
pub struct Layout<'a> {
    /// The crate's name as other crates write it (`fo_agent`): counted only in `binary` files.
    pub lib_name: &'a str,
    /// Files of the binary (relative to `src/`, a file or a directory ending in `/`), all
    /// mapped to the module `binary_module`.
    pub binary: &'a [&'a str],
    pub binary_module: &'a str,
}

/// What a scan found.
#[derive(Default, Debug)]
pub struct Scan {
    pub edges: Vec<Edge>,
    /// Top-level modules (files and directories directly under `src/`).
    pub modules: BTreeSet<String>,
    /// Problems that make the scan untrustworthy (`#[path`, an unreadable file).
    pub errors: Vec<String>,
}

/// Read every `src/**/*.rs` of the crate at `root`.
pub fn scan(root: &Path, layout: &Layout<'_>) -> Scan {
    let mut scan = Scan::default();
    let files = files_below(&root.join("src"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"));
    for path in files {
        let rel = path
            .strip_prefix(root.join("src"))
            .expect("below src")
            .to_string_lossy()
            .replace('\\', "/");
        let display = format!("src/{rel}");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                scan.errors.push(format!("{display}: {e}"));
                continue;
            }
        };
        let in_binary = layout
            .binary
            .iter()
            .any(|b| rel == *b || (b.ends_with('/') && rel.starts_with(b)));
        let mut module_path = module_path(&rel);
        if in_binary {
            module_path.insert(0, layout.binary_module.to_owned());
        }
        if let Some(top) = module_path.first() {
            scan.modules.insert(top.clone());
        }
        let lib = in_binary.then_some(layout.lib_name);
        let (edges, errors) = edges_in(&display, &module_path, &text, lib);
        scan.edges.extend(edges);
        scan.errors.extend(errors);
    }
    // `crate::decode` names what lib.rs re-exports: the edge goes to the module that
    // defines it. An item of the root itself is no module's, so it is no edge.
    let root_text = std::fs::read_to_string(root.join("src/lib.rs")).unwrap_or_default();
    let reexports = reexports(&root_text);
    let modules = scan.modules.clone();
    scan.edges.retain_mut(|edge| {
        if modules.contains(&edge.to) {
            return true;
        }
        match reexports.get(&edge.to) {
            Some(module) => {
                edge.to = module.clone();
                true
            }
            None => false,
        }
    });
    scan
}

/// The names a root file re-exports (`pub use packet::{decode, Advert as A};`), each with
/// the module it comes from.
pub fn reexports(root: &str) -> BTreeMap<String, String> {
    let code = strip(root);
    let mut out = BTreeMap::new();
    for statement in code.split(';') {
        let Some(at) = statement.find("pub use ") else {
            continue;
        };
        let path = statement[at + "pub use ".len()..].trim();
        let path = path
            .strip_prefix("crate::")
            .or_else(|| path.strip_prefix("self::"))
            .unwrap_or(path);
        let module: String = path.chars().take_while(|c| is_ident(*c)).collect();
        let rest = &path[module.len()..];
        let mut leaves = Vec::new();
        for item in rest.split([',', '{', '}']) {
            let item = item.trim();
            let leaf = match item.split_once(" as ") {
                Some((_, alias)) => alias.trim(),
                None => item.rsplit("::").next().unwrap_or(item).trim(),
            };
            if !leaf.is_empty() && leaf.chars().all(is_ident) && leaf != "self" {
                leaves.push(leaf.to_owned());
            }
        }
        for leaf in leaves {
            out.insert(leaf, module.clone());
        }
    }
    out
}

/// Every file below `dir` (sorted), skipping `target/`, `node_modules/` and dot-entries
/// (`.git`, whether a directory or a worktree's file).
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let (path, name) = (entry.path(), entry.file_name());
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// The module path of a file below `src/`: `vrrp/driver.rs` → `[vrrp, driver]`,
/// `vrrp/mod.rs` → `[vrrp]`, `lib.rs` → `[]`.
pub fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// The edges of one file whose module path is `module` (the binary's files also count
/// `lib_name::…`).
pub fn edges_in(
    file: &str,
    module: &[String],
    text: &str,
    lib_name: Option<&str>,
) -> (Vec<Edge>, Vec<String>) {
    let code = strip(text);
    let chars: Vec<char> = code.chars().collect();
    let from = module.first().cloned().unwrap_or_default();
    let mut edges = Vec::new();
    let mut errors = Vec::new();
    // Inline `mod name {` blocks, with the brace depth at which each closes.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => line += 1,
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            _ => {}
        }
        if !(c.is_alphabetic() || c == '_' || c == '#') || (i > 0 && is_ident(chars[i - 1])) {
            i += 1;
            continue;
        }
        if c == '#' {
            if starts(&chars, i, "#[path") {
                errors.push(format!(
                    "{file}:{line}: #[path] makes the file and its module disagree; move the file instead"
                ));
            }
            i += 1;
            continue;
        }
        let word = ident_at(&chars, i);
        let after = i + word.chars().count();
        if i > 0 && chars[i - 1] == '$' {
            i = after;
            continue;
        }
        if word == "mod" {
            let j = skip_ws(&chars, after);
            let name = ident_at(&chars, j);
            let k = skip_ws(&chars, j + name.chars().count());
            if !name.is_empty() && chars.get(k) == Some(&'{') {
                inline.push((name, depth));
            }
            i = after;
            continue;
        }
        let root = match word.as_str() {
            "crate" => Some(Vec::new()),
            "super" => {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                here.pop();
                Some(here)
            }
            w if Some(w) == lib_name => Some(Vec::new()),
            _ => None,
        };
        let Some(mut base) = root else {
            i = after;
            continue;
        };
        if !starts(&chars, after, "::") {
            i = after;
            continue;
        }
        // Resolve further `super::` segments, then read what follows.
        let mut j = after + 2;
        if word == "super" {
            while starts(&chars, j, "super::") {
                base.pop();
                j += "super::".len();
            }
        }
        let start = i;
        let targets: Vec<String> = if let Some(top) = base.first() {
            vec![top.clone()]
        } else if chars.get(j) == Some(&'{') {
            group_heads(&chars, j)
        } else {
            let name = ident_at(&chars, j);
            if name.is_empty() || name == "self" {
                vec![]
            } else {
                vec![name]
            }
        };
        let end = path_end(&chars, j);
        let path: String = chars[start..end].iter().collect();
        for to in targets {
            if to == "self" || to == "super" || to.is_empty() {
                continue;
            }
            edges.push(Edge {
                file: file.to_owned(),
                line,
                from: from.clone(),
                to,
                path: path.clone(),
            });
        }
        // Count the newlines the path itself spans (a multi-line group).
        line += chars[i..end].iter().filter(|c| **c == '\n').count();
        depth += chars[after..end].iter().filter(|c| **c == '{').count();
        depth -= chars[after..end].iter().filter(|c| **c == '}').count();
        i = end;
    }
    (edges, errors)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn starts(chars: &[char], at: usize, s: &str) -> bool {
    (at..).zip(s.chars()).all(|(k, c)| chars.get(k) == Some(&c))
}

fn ident_at(chars: &[char], at: usize) -> String {
    chars[at.min(chars.len())..]
        .iter()
        .take_while(|c| is_ident(**c))
        .collect()
}

fn skip_ws(chars: &[char], mut at: usize) -> usize {
    while chars.get(at).is_some_and(|c| c.is_whitespace()) {
        at += 1;
    }
    at
}

/// The first-level names of a `{a, b::c, d::{e, f}}` group starting at `open`.
fn group_heads(chars: &[char], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expect = true;
    let mut k = open;
    while k < chars.len() {
        let c = chars[k];
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    expect = true;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect = true,
            c if depth == 1 && expect && is_ident(c) => {
                let name = ident_at(chars, k);
                k += name.chars().count();
                heads.push(name);
                expect = false;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    heads
}

/// Where a path that starts its tail at `at` ends (after a balanced group, if any).
fn path_end(chars: &[char], mut at: usize) -> usize {
    loop {
        if chars.get(at) == Some(&'{') {
            let mut depth = 0usize;
            while at < chars.len() {
                match chars[at] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return at + 1;
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            return at;
        }
        while chars.get(at).is_some_and(|c| is_ident(*c)) {
            at += 1;
        }
        if starts(chars, at, "::") {
            at += 2;
            continue;
        }
        return at;
    }
}

/// The text with literals and plain comments blanked (newlines kept, so lines still count).
/// Doc comments (`///`, `//!`, `/** */`, `/*! */`) are kept as written.
pub fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        if starts(&chars, i, "///") || starts(&chars, i, "//!") {
            while i < chars.len() && chars[i] != '\n' {
                out.push(chars[i]);
                i += 1;
            }
        } else if starts(&chars, i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if starts(&chars, i, "/*") {
            let doc = starts(&chars, i, "/**") || starts(&chars, i, "/*!");
            let mut depth = 0usize;
            while i < chars.len() {
                let step = if starts(&chars, i, "/*") {
                    depth += 1;
                    2
                } else if starts(&chars, i, "*/") {
                    depth -= 1;
                    2
                } else {
                    1
                };
                for &ch in &chars[i..i + step] {
                    if doc {
                        out.push(ch)
                    } else {
                        blank(&mut out, ch)
                    }
                }
                i += step;
                if depth == 0 {
                    break;
                }
            }
        } else if !prev_ident
            && (c == 'r' || (c == 'b' && chars.get(i + 1) == Some(&'r')))
            && raw_hashes(&chars, i + if c == 'b' { 2 } else { 1 }).is_some()
        {
            let open = i + if c == 'b' { 2 } else { 1 };
            let hashes = raw_hashes(&chars, open).expect("checked");
            let mut k = open + hashes + 1;
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while k < chars.len() && !starts(&chars, k, &close) {
                k += 1;
            }
            let end = (k + close.chars().count()).min(chars.len());
            for &ch in &chars[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let end = if chars.get(i + 1) == Some(&'\\') {
                let mut k = i + 2;
                while k < chars.len() && chars[k] != '\'' {
                    k += 1;
                }
                Some(k + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &ch in &chars[i..end.min(chars.len())] {
                        blank(&mut out, ch);
                    }
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `Some(n)` when `at` starts `#…#"` (n hashes, possibly zero) of a raw string.
fn raw_hashes(chars: &[char], at: usize) -> Option<usize> {
    let mut n = 0;
    while chars.get(at + n) == Some(&'#') {
        n += 1;
    }
    (chars.get(at + n) == Some(&'"')).then_some(n)
}

/// Panic with every problem at once (each says what was expected and what was seen).
pub fn assert_none(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Files below `root` (not `target/`, not dot-directories) whose text contains one of
/// `needles`, as `path:line: needle`. Binary files are skipped.
pub fn cites(root: &Path, needles: &[&str]) -> Vec<String> {
    let files = files_below(root);
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for needle in needles {
                if line.contains(needle) {
                    let rel = file.strip_prefix(root).unwrap_or(&file);
                    found.push(format!("{}:{}: {needle}", rel.display(), n + 1));
                }
            }
        }
    }
    found
}

/// The edges of a crate grouped by (from, to), for a reader: how the modules use each other.
pub fn graph(edges: &[Edge]) -> BTreeMap<(String, String), usize> {
    let mut graph = BTreeMap::new();
    for e in edges
        .iter()
        .filter(|e| e.from != e.to && !e.from.is_empty())
    {
        *graph.entry((e.from.clone(), e.to.clone())).or_default() += 1;
    }
    graph
}

/// The layering tests of a crate that includes this file by path as `mod layering`
/// (`#[macro_use]`): its `allowed` and `known` tables over what `layout` reads below
/// its `src/`. `name` names the crate in failure messages, `upward` what a violating
/// edge does.
#[allow(
    unused_macros,
    reason = "used by the crates that include this file by path, not by fo-tests"
)]
macro_rules! layering_tests {
    ($name:literal, $allowed:expr, $known:expr, $layout:expr, $upward:literal) => {
        const RULES: layering::Rules<'static> = layering::Rules {
            allowed: $allowed,
            known: $known,
            doc: "docs/architecture.md#layers",
        };

        fn scan() -> layering::Scan {
            let scan = layering::scan(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &$layout);
            layering::assert_none(concat!("reading ", $name, "/src"), &scan.errors);
            scan
        }

        #[test]
        fn every_edge_is_allowed_or_known() {
            layering::assert_none(
                concat!($name, ": ", $upward),
                &RULES.violations(&scan().edges),
            );
        }

        #[test]
        fn known_edges_still_occur() {
            layering::assert_none(concat!($name, ": KNOWN"), &RULES.stale_known(&scan().edges));
        }

        #[test]
        fn every_module_has_a_row() {
            layering::assert_none(
                concat!($name, ": ALLOWED"),
                &RULES.unplaced(&scan().modules),
            );
        }

        #[test]
        fn the_allowed_table_is_acyclic() {
            assert_eq!(RULES.cycle(), None, "ALLOWED must have no cycle");
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The edges found in `text`, file `src/{file}` of a crate named `fo_agent`, as
    /// (line, module it names), must be `expected`, and nothing refused.
    #[track_caller]
    fn assert_edges(file: &str, text: &str, expected: &[(usize, &str)]) {
        let (edges, errors) = edges_in(
            &format!("src/{file}"),
            &module_path(file),
            text,
            Some("fo_agent"),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let got: Vec<(usize, &str)> = edges.iter().map(|e| (e.line, e.to.as_str())).collect();
        assert_eq!(got, expected, "the edges of {file}");
    }

    #[test]
    fn plain_grouped_and_nested_paths_are_edges() {
        let text = "use crate::agent::SharedPlane;\nuse crate::{api::X, net::{a, b}, dataplane};\n";
        assert_edges(
            "vrrp/mod.rs",
            text,
            &[(1, "agent"), (2, "api"), (2, "net"), (2, "dataplane")],
        );
    }

    #[test]
    fn super_chains_resolve_against_the_file_and_inline_modules() {
        // From a depth-2 file, super::super names the crate root's child.
        let text = "use super::super::agent::X;\nuse super::decide;\n";
        assert_edges("vrrp/driver.rs", text, &[(1, "agent"), (2, "vrrp")]);
        // Inside an inline `mod tests`, `super` is the file's own module.
        let text =
            "mod tests {\n    use super::*;\n    use super::super::api::Y;\n}\nuse super::agent;\n";
        assert_edges(
            "fence/mod.rs",
            text,
            &[(2, "fence"), (3, "api"), (5, "agent")],
        );
    }

    #[test]
    fn doc_links_count_and_literals_and_comments_do_not() {
        let text = concat!(
            "//! See [`SharedPlane`](crate::agent::SharedPlane).\n",
            "let s = \"crate::agent\"; // crate::api\n",
            "let r = r#\"crate::bgp \"x\" \"#; let c = '\"'; let l: &'static str = \"\";\n",
            "/* crate::sync */ let b = b\"crate::net\";\n",
            "let x = crate::health::Y;\n",
        );
        assert_edges("vrrp/mod.rs", text, &[(1, "agent"), (5, "health")]);
    }

    #[test]
    fn nested_block_comments_are_blanked_whole_and_doc_block_comments_kept() {
        let text = "a /* x /* y */ z */ b\n/** d\n*/ c /*\n*/";
        assert_eq!(
            strip(text),
            format!("a {} b\n/** d\n*/ c   \n  ", " ".repeat(17))
        );
    }

    #[test]
    fn the_binary_counts_its_library_paths_and_dollar_crate_is_not_a_path() {
        let text = "use fo_agent::{agent, api::Status};\nmacro_rules! m { () => { $crate::x } }\nuse my_fo_agent::z;\n";
        assert_edges("cli/check.rs", text, &[(1, "agent"), (1, "api")]);
    }

    #[test]
    fn a_path_attribute_is_refused() {
        let (_, errors) = edges_in(
            "src/a.rs",
            &["a".into()],
            "#[path = \"x.rs\"]\nmod y;\n",
            None,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn rules_report_violations_stale_known_unplaced_and_cycles() {
        let edge = |file: &str, from: &str, to: &str| Edge {
            file: file.into(),
            line: 3,
            from: from.into(),
            to: to.into(),
            path: format!("crate::{to}"),
        };
        let rules = Rules {
            allowed: &[("agent", &["vrrp"]), ("vrrp", &[])],
            known: &[("src/vrrp/a.rs", "agent"), ("src/vrrp/gone.rs", "agent")],
            doc: "docs",
        };
        let edges = [
            edge("src/agent/x.rs", "agent", "vrrp"),
            edge("src/vrrp/a.rs", "vrrp", "agent"),
            edge("src/vrrp/b.rs", "vrrp", "agent"),
        ];
        assert_eq!(
            rules.violations(&edges),
            vec![
                "src/vrrp/b.rs:3: vrrp → agent (crate::agent) is not allowed; vrrp may use nothing else (docs)"
                    .to_owned()
            ]
        );
        assert_eq!(rules.stale_known(&edges).len(), 1);
        assert!(rules.stale_known(&edges)[0].contains("src/vrrp/gone.rs"));
        let modules: BTreeSet<String> = ["agent", "vrrp", "new"].map(String::from).into();
        assert_eq!(rules.unplaced(&modules).len(), 1);
        assert_eq!(rules.cycle(), None);
        let cyclic = Rules {
            allowed: &[("a", &["b"]), ("b", &["a"])],
            known: &[],
            doc: "",
        };
        assert_eq!(
            cyclic.cycle(),
            Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
        );
    }

    #[test]
    fn root_reexports_name_their_module() {
        let map = reexports(
            "pub mod packet;\npub use packet::{\n    decode, Advert as A, drops::DropReason,\n};\npub use fsm::Router;\n",
        );
        assert_eq!(map.get("decode").map(String::as_str), Some("packet"));
        assert_eq!(map.get("A").map(String::as_str), Some("packet"));
        assert_eq!(map.get("DropReason").map(String::as_str), Some("packet"));
        assert_eq!(map.get("Router").map(String::as_str), Some("fsm"));
        assert_eq!(map.get("Advert"), None);
    }

    #[test]
    fn module_paths_follow_the_files() {
        assert_eq!(module_path("vrrp/driver.rs"), ["vrrp", "driver"]);
        assert_eq!(module_path("vrrp/mod.rs"), ["vrrp"]);
        assert_eq!(module_path("hooks.rs"), ["hooks"]);
        assert!(module_path("lib.rs").is_empty());
    }
}
