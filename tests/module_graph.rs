//! The module graph check: every `crate::` path and every `super::` path that leaves a
//! module must go where `ARCHITECTURE.md` allows, and the modules it marks sans-IO must not
//! read the clock.
//!
//! The allowed graph lives only in `ARCHITECTURE.md`, in the fenced block tagged
//! `module-graph`; this file reads it there. What counts:
//! - every path starting `crate::` or `super::` in a file under `src/`, in code, test code
//!   and comments (a doc-link is a dependency too: rustdoc resolves it, and a module that
//!   documents itself in terms of another knows about it); `use` groups
//!   (`crate::{a, b::{c, d}}`) count once per member;
//! - not string literals: a path inside quotes is text, nothing resolves it;
//! - `super::` is resolved from the module it is written in, inline modules included
//!   (`mod tests { use super::*; }` stays in the file's module), so only paths that reach
//!   out of a module are checked against its rule;
//! - the binaries (`src/main.rs`, the modules it declares with `mod x;`, `src/bin/`) may
//!   use anything, and `src/lib.rs` only declares the modules.
//!
//! Clock reads (`Instant::now`, `SystemTime::now`) count only in code: a comment may say
//! who calls them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A module path below the crate root, e.g. `["relay", "hub"]`.
type ModPath = Vec<String>;

/// What one module may reach outside itself.
#[derive(Debug, Clone, PartialEq)]
enum Allowed {
    /// `*`: anything in the crate.
    Anything,
    /// These modules or items (an entry allows everything below it).
    Only(Vec<ModPath>),
}

/// The rules of `ARCHITECTURE.md`'s `module-graph` block.
#[derive(Debug, Default)]
struct Rules {
    /// One line per module: `relay -> audience, config, ids, media`.
    modules: Vec<(ModPath, Allowed)>,
    /// `sans-io: relay::hub`: modules (and everything inside them) that must not read the
    /// clock.
    sans_io: Vec<ModPath>,
}

/// Where a path was written and where it leads.
#[derive(Debug, Clone, PartialEq)]
struct PathUse {
    /// 1-based line of the path's first segment.
    line: usize,
    /// The module it is written in, inline modules included.
    from: ModPath,
    /// The module or item it names, from the crate root.
    target: ModPath,
}

/// What one file says.
#[derive(Debug, Default)]
struct Scan {
    paths: Vec<PathUse>,
    /// Clock reads in code: (line, module written in, what was called).
    clock: Vec<(usize, ModPath, &'static str)>,
}

fn mod_path(text: &str) -> Result<ModPath, String> {
    let segments: ModPath = text.split("::").map(|s| s.trim().to_string()).collect();
    if segments
        .iter()
        .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        Ok(segments)
    } else {
        Err(format!("{text:?} is not a module path"))
    }
}

/// The entries of a comma-separated list.
fn list(text: &str) -> Vec<&str> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Reads the one `module-graph` block of `markdown`.
fn parse_rules(markdown: &str) -> Result<Rules, String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<(usize, &str)>> = None;
    for (n, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut current {
            Some(lines) if fence => {
                blocks.push(std::mem::take(lines));
                current = None;
            }
            Some(lines) => lines.push((n + 1, line)),
            None if fence && line.trim() == "```module-graph" => current = Some(Vec::new()),
            None => {}
        }
    }
    if current.is_some() {
        return Err("the module-graph block is not closed".into());
    }
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "expected exactly one ```module-graph block, found {}",
            blocks.len()
        ));
    };
    let mut rules = Rules::default();
    for &(n, raw) in block {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("sans-io:") {
            for m in list(rest) {
                rules
                    .sans_io
                    .push(mod_path(m).map_err(|e| format!("line {n}: {e}"))?);
            }
        } else if let Some((module, targets)) = line.split_once("->") {
            let module = mod_path(module).map_err(|e| format!("line {n}: {e}"))?;
            if rules.modules.iter().any(|(m, _)| *m == module) {
                return Err(format!("line {n}: a second rule for {}", module.join("::")));
            }
            let targets = list(targets);
            let allowed = if targets == ["*"] {
                Allowed::Anything
            } else {
                Allowed::Only(
                    targets
                        .into_iter()
                        .map(mod_path)
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("line {n}: {e}"))?,
                )
            };
            rules.modules.push((module, allowed));
        } else {
            return Err(format!(
                "line {n}: expected `module -> a, b` or `sans-io: a, b`, found {raw:?}"
            ));
        }
    }
    Ok(rules)
}

/// What a character of a source file is part of.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Code,
    Comment,
    Str,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Marks every character as code, comment or string/char literal.
fn classify(c: &[char]) -> Vec<Kind> {
    let n = c.len();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut kinds = vec![Kind::Code; n];
    let mut i = 0;
    while i < n {
        let start = i;
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        let kind = if at(i) == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                i += 1;
            }
            Kind::Comment
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= n {
                    break;
                } else if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            Kind::Comment
        } else if !prev_ident && (at(i) == 'r' || (at(i) == 'b' && at(i + 1) == 'r')) && {
            let mut j = if at(i) == 'b' { i + 2 } else { i + 1 };
            while at(j) == '#' {
                j += 1;
            }
            at(j) == '"'
        } {
            // A raw string: r"..." or r#"..."#, with as many #s at the end.
            let mut j = if at(i) == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= n {
                    break;
                }
                if c[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            Kind::Str
        } else if at(i) == '"' || (!prev_ident && at(i) == 'b' && at(i + 1) == '"') {
            i += if at(i) == 'b' { 2 } else { 1 };
            while i < n && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            Kind::Str
        } else if at(i) == '\'' && at(i + 1) == '\\' {
            i += 2;
            while i < n && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            Kind::Str
        } else if at(i) == '\'' && at(i + 2) == '\'' {
            i += 3;
            Kind::Str
        } else {
            // Code, a lifetime's quote included.
            i += 1;
            Kind::Code
        };
        for k in &mut kinds[start..i.min(n)] {
            *k = kind;
        }
    }
    kinds
}

/// Reads a use tree at `i` (after `crate::` or the last `super::`): `a::b`, `a::{b, c::d}`,
/// `a::*`, `{self, x}`. Returns every path it names (`self` and `*` name the prefix) and
/// where it ends. Whitespace, line breaks and comments between tokens are skipped.
fn use_tree(c: &[char], kinds: &[Kind], mut i: usize) -> (Vec<ModPath>, usize) {
    // In code, a comment inside a group is skipped like whitespace; in a comment, only
    // whitespace is.
    let in_code = kinds.get(i) == Some(&Kind::Code);
    let skip = |mut i: usize| {
        while i < c.len() && (c[i].is_whitespace() || in_code && kinds[i] == Kind::Comment) {
            i += 1;
        }
        i
    };
    let ident = |mut i: usize| {
        let start = i;
        while i < c.len() && is_ident(c[i]) && kinds[i] != Kind::Str {
            i += 1;
        }
        (c[start..i].iter().collect::<String>(), i)
    };
    let mut prefix = ModPath::new();
    loop {
        if c.get(i) == Some(&'{') {
            let mut out = Vec::new();
            i += 1;
            loop {
                i = skip(i);
                match c.get(i) {
                    None => return (out, i),
                    Some('}') => return (out, i + 1),
                    Some(',') => i += 1,
                    Some(_) => {
                        let (paths, end) = use_tree(c, kinds, i);
                        if end == i {
                            // Not a path (a macro body, say): give up on the group.
                            return (out, i);
                        }
                        out.extend(paths.into_iter().map(|p| [prefix.clone(), p].concat()));
                        i = skip(end);
                        // `x as y`: the alias names nothing new.
                        if c[i..].starts_with(&['a', 's'])
                            && c.get(i + 2).is_some_and(|c| c.is_whitespace())
                        {
                            let (_, end) = ident(skip(i + 2));
                            i = end;
                        }
                    }
                }
            }
        }
        if c.get(i) == Some(&'*') {
            return (vec![prefix], i + 1);
        }
        let (name, end) = ident(i);
        if name.is_empty() {
            return (
                if prefix.is_empty() {
                    vec![]
                } else {
                    vec![prefix]
                },
                i,
            );
        }
        if name != "self" {
            prefix.push(name);
        }
        i = end;
        if c.get(i) == Some(&':') && c.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

fn starts_with_at(c: &[char], i: usize, word: &str) -> bool {
    word.chars()
        .enumerate()
        .all(|(k, w)| c.get(i + k) == Some(&w))
}

/// Finds every crate-internal path and clock read in `text`, the source of `module`.
fn scan(module: &[String], text: &str) -> Scan {
    let c: Vec<char> = text.chars().collect();
    let kinds = classify(&c);
    let mut out = Scan::default();
    let mut line = 1;
    let mut depth = 0usize;
    // Inline modules open around the current position: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let here = |inline: &[(String, usize)]| -> ModPath {
        module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(m, _)| m.clone()))
            .collect()
    };
    for i in 0..c.len() {
        if c[i] == '\n' {
            line += 1;
            continue;
        }
        if kinds[i] == Kind::Str {
            continue;
        }
        let boundary = i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == ':');
        if boundary && (starts_with_at(&c, i, "crate::") || starts_with_at(&c, i, "super::")) {
            let from = here(&inline);
            let mut base = ModPath::new();
            let mut j = i;
            if c[i] == 's' {
                base = from.clone();
                while starts_with_at(&c, j, "super::") {
                    base.pop();
                    j += "super::".len();
                }
            } else {
                j += "crate::".len();
            }
            let (targets, _) = use_tree(&c, &kinds, j);
            for target in targets {
                out.paths.push(PathUse {
                    line,
                    from: from.clone(),
                    target: [base.clone(), target].concat(),
                });
            }
        }
        if kinds[i] != Kind::Code {
            continue;
        }
        match c[i] {
            '{' => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
            }
            '}' => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            ';' => pending_mod = None,
            _ => {}
        }
        let word_start = i == 0 || !is_ident(c[i - 1]);
        if word_start
            && starts_with_at(&c, i, "mod")
            && c.get(i + 3).is_some_and(|c| c.is_whitespace())
        {
            let mut j = i + 3;
            while c.get(j).is_some_and(|c| c.is_whitespace()) {
                j += 1;
            }
            let start = j;
            while c.get(j).is_some_and(|&c| is_ident(c)) {
                j += 1;
            }
            if j > start {
                pending_mod = Some(c[start..j].iter().collect());
            }
        }
        if !(i > 0 && is_ident(c[i - 1])) {
            for call in ["Instant::now", "SystemTime::now"] {
                if starts_with_at(&c, i, call)
                    && !c.get(i + call.len()).is_some_and(|&c| is_ident(c))
                {
                    out.clock.push((line, here(&inline), call));
                }
            }
        }
    }
    out
}

fn is_prefix(prefix: &[String], path: &[String]) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()] == *prefix
}

/// Checks one file's scan against the rules; returns one line per violation.
fn check(rules: &Rules, file: &str, scan: &Scan) -> Vec<String> {
    let mut problems = Vec::new();
    for p in &scan.paths {
        for (module, allowed) in &rules.modules {
            if !is_prefix(module, &p.from) || is_prefix(module, &p.target) {
                continue;
            }
            let Allowed::Only(entries) = allowed else {
                continue;
            };
            if !entries.iter().any(|e| is_prefix(e, &p.target)) {
                let allowed: Vec<String> = entries.iter().map(|e| e.join("::")).collect();
                problems.push(format!(
                    "{file}:{}: {} -> {} is not allowed (ARCHITECTURE.md: {} -> {})",
                    p.line,
                    module.join("::"),
                    p.target.join("::"),
                    module.join("::"),
                    allowed.join(", ")
                ));
            }
        }
    }
    for (line, from, call) in &scan.clock {
        // A sans-IO module's own unit tests (`mod tests`) take their starting instant from
        // the clock once; everything after advances by hand.
        if from.iter().any(|part| part == "tests") {
            continue;
        }
        if let Some(m) = rules.sans_io.iter().find(|m| is_prefix(m, from)) {
            problems.push(format!(
                "{file}:{line}: {call} in {}, which ARCHITECTURE.md marks sans-IO: take `now` as an argument",
                m.join("::")
            ));
        }
    }
    problems
}

/// The module a file under `src/` is, or `None` for the crate root and the binaries.
fn file_module(relative: &Path, binary_modules: &[String]) -> Option<ModPath> {
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return None;
    }
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    if parts[0] == "bin" || binary_modules.contains(&parts[0]) {
        return None;
    }
    Some(parts)
}

/// The modules `src/main.rs` declares (`mod manage;`): part of the binary, not the library.
fn binary_modules(main: &str) -> Vec<String> {
    main.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(|m| m.trim().to_string())
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

struct Tree {
    rules: Rules,
    /// (path relative to the repository, module, scan).
    files: Vec<(String, ModPath, Scan)>,
}

fn read_tree() -> Tree {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let markdown = std::fs::read_to_string(root.join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the repository root");
    let rules = parse_rules(&markdown).unwrap_or_else(|e| panic!("ARCHITECTURE.md: {e}"));
    let src = root.join("src");
    let main = std::fs::read_to_string(src.join("main.rs")).unwrap_or_default();
    let binaries = binary_modules(&main);
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let mut files = Vec::new();
    for path in paths {
        let relative = path.strip_prefix(&src).expect("under src");
        let Some(module) = file_module(relative, &binaries) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("readable source");
        let shown = format!("src/{}", relative.display());
        let scanned = scan(&module, &text);
        files.push((shown, module, scanned));
    }
    Tree { rules, files }
}

fn report(problems: &[String], what: &str) {
    if !problems.is_empty() {
        let mut text = format!("{} {what}:\n", problems.len());
        for p in problems {
            let _ = writeln!(text, "  {p}");
        }
        panic!("{text}");
    }
}

#[test]
fn modules_import_only_what_architecture_md_allows() {
    let tree = read_tree();
    let mut problems = Vec::new();
    let mut unruled = std::collections::BTreeSet::new();
    for (file, module, scanned) in &tree.files {
        if !tree.rules.modules.iter().any(|(m, _)| m[..] == module[..1]) {
            unruled.insert(module[0].clone());
        }
        let Scan { paths, clock: _ } = scanned;
        let paths_only = Scan {
            paths: paths.clone(),
            clock: Vec::new(),
        };
        problems.extend(check(&tree.rules, file, &paths_only));
    }
    for m in unruled {
        problems.push(format!(
            "src/{m}: no `{m} -> ...` line in ARCHITECTURE.md's module-graph block"
        ));
    }
    report(&problems, "module graph violations");
}

#[test]
fn sans_io_modules_do_not_read_the_clock() {
    let tree = read_tree();
    let mut problems = Vec::new();
    for (file, _, scanned) in &tree.files {
        let clock_only = Scan {
            paths: Vec::new(),
            clock: scanned.clock.clone(),
        };
        problems.extend(check(&tree.rules, file, &clock_only));
    }
    report(&problems, "clock reads in sans-IO modules");
}

#[cfg(test)]
mod parser {
    use super::*;

    fn m(path: &str) -> ModPath {
        mod_path(path).unwrap()
    }

    fn targets(module: &str, text: &str) -> Vec<String> {
        scan(&m(module), text)
            .paths
            .into_iter()
            .map(|p| format!("{}:{}", p.line, p.target.join("::")))
            .collect()
    }

    const RULES: &str = "intro\n```module-graph\n# a comment\nconfig ->\nrelay -> config, media # why\nrelay::hub -> media\nhttp -> ingest::pull::PullBoard\napp -> *\nsans-io: relay::hub\n```\n";

    #[test]
    fn reads_the_rules() {
        let rules = parse_rules(RULES).unwrap();
        assert_eq!(rules.modules.len(), 5);
        assert_eq!(rules.modules[0], (m("config"), Allowed::Only(vec![])));
        assert_eq!(
            rules.modules[1],
            (m("relay"), Allowed::Only(vec![m("config"), m("media")]))
        );
        assert_eq!(rules.modules[4], (m("app"), Allowed::Anything));
        assert_eq!(rules.sans_io, vec![m("relay::hub")]);
    }

    #[test]
    fn rules_must_be_one_well_formed_block() {
        assert!(parse_rules("no block").is_err());
        assert!(parse_rules(&format!("{RULES}{RULES}")).is_err());
        assert!(parse_rules("```module-graph\nrelay uses config\n```").is_err());
        assert!(parse_rules("```module-graph\na ->\na -> b\n```").is_err());
        assert!(parse_rules("```module-graph\na -> b c\n```").is_err());
    }

    #[test]
    fn finds_a_path_inside_a_function_body() {
        let text = "fn f() {\n    let x = crate::relay::X::new();\n}\n";
        assert_eq!(targets("ingest", text), ["2:relay::X::new"]);
    }

    #[test]
    fn expands_use_groups() {
        let text = "use crate::{a, b::{c, d as e}, f::*};\nuse crate::relay::{\n    self,\n    Handle,\n};\n";
        assert_eq!(
            targets("x", text),
            [
                "1:a",
                "1:b::c",
                "1:b::d",
                "1:f",
                "2:relay",
                "2:relay::Handle"
            ]
        );
    }

    #[test]
    fn resolves_super_from_the_module_it_is_written_in() {
        // In src/client/whip.rs: `super::super` from its tests module is `client`.
        let text = "use super::Shared;\nmod tests {\n    use super::*;\n    fn f() { super::super::media::make(); }\n}\nuse super::super::config::X;\n";
        let found = scan(&m("client::whip"), text).paths;
        let shown: Vec<_> = found
            .iter()
            .map(|p| format!("{}:{}<-{}", p.line, p.target.join("::"), p.from.join("::")))
            .collect();
        assert_eq!(
            shown,
            [
                "1:client::Shared<-client::whip",
                "3:client::whip<-client::whip::tests",
                "4:client::media::make<-client::whip::tests",
                "6:config::X<-client::whip",
            ]
        );
    }

    #[test]
    fn counts_comments_but_not_strings() {
        let text = "/// See [`crate::relay::Hub`].\nlet s = \"crate::catalog\";\nlet r = r#\"crate::catalog\"#;\nlet c = '\"'; // crate::ids\nlet l: &'static str = \"x\"; crate::media::X;\n";
        assert_eq!(targets("x", text), ["1:relay::Hub", "4:ids", "5:media::X"]);
    }

    #[test]
    fn finds_clock_reads_in_code_only() {
        let text = "mod hub {\n    // never Instant::now here\n    fn f() { let t = std::time::Instant::now(); }\n    fn g() { SystemTime::now(); MyInstant::now(); Instant::now_ish(); }\n}\n";
        let clock = scan(&m("relay"), text).clock;
        assert_eq!(
            clock,
            [
                (3, m("relay::hub"), "Instant::now"),
                (4, m("relay::hub"), "SystemTime::now"),
            ]
        );
    }

    #[test]
    fn reports_forbidden_edges_and_clock_reads() {
        let rules = parse_rules(RULES).unwrap();
        let text = "use crate::config::C;\nuse crate::catalog::Catalog;\nuse crate::media::Kind;\n";
        let problems = check(&rules, "src/relay/mod.rs", &scan(&m("relay"), text));
        assert_eq!(
            problems,
            [
                "src/relay/mod.rs:2: relay -> catalog::Catalog is not allowed (ARCHITECTURE.md: relay -> config, media)"
            ]
        );
        // A nested rule holds inside the nested module, beside its parent's rule.
        let text =
            "use super::engine::Engine;\nuse crate::media::Kind;\nfn f() { Instant::now(); }\n";
        let problems = check(&rules, "src/relay/hub.rs", &scan(&m("relay::hub"), text));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains(":1: relay::hub -> relay::engine::Engine"));
        assert!(problems[1].contains(":3: Instant::now in relay::hub"));
        // An item-level entry allows that item only; `*` allows anything.
        let text = "use crate::ingest::pull::PullBoard;\nuse crate::ingest::rtmp::Server;\n";
        let problems = check(&rules, "src/http/mod.rs", &scan(&m("http"), text));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("http -> ingest::rtmp::Server"));
        let problems = check(&rules, "src/app.rs", &scan(&m("app"), text));
        assert!(problems.is_empty());
    }

    #[test]
    fn maps_files_to_modules() {
        let bins = binary_modules("mod manage;\nuse x;\n");
        assert_eq!(bins, ["manage"]);
        let module = |p: &str| file_module(Path::new(p), &bins).map(|m| m.join("::"));
        assert_eq!(module("relay/mod.rs").as_deref(), Some("relay"));
        assert_eq!(module("relay/hub.rs").as_deref(), Some("relay::hub"));
        assert_eq!(module("config.rs").as_deref(), Some("config"));
        assert_eq!(
            module("catalog/stats/query.rs").as_deref(),
            Some("catalog::stats::query")
        );
        assert_eq!(module("lib.rs"), None);
        assert_eq!(module("main.rs"), None);
        assert_eq!(module("manage.rs"), None);
        assert_eq!(module("bin/feiyan-bench.rs"), None);
    }
}
