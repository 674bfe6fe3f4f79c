//! The module layering of src/, guarded: a top-level module may use only modules of a strictly lower
//! layer of `LAYERS`, and no modules form a cycle. `scripts/deps` prints the dependency listing.
//!
//! A reference is `crate::NAME` or `slurm_ledger::NAME` (also inside `use crate::{a, b::C}` groups)
//! anywhere in the code, `#[cfg(test)]` code included; comments, doc comments and string/char
//! literals are not code. `super::` paths that leave a top-level module are not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest layer first. Every module of src/ must be listed; a listed module that does not exist
/// yet (a planned one) is fine.
const LAYERS: &[&[&str]] = &[
    &["model", "validate", "secret"], // 0: vocabulary, no I/O
    &["slurm", "meter", "ledger"],    // 1
    &["collect", "delivery", "demo"], // 2
    &["tracker"],                     // 3
    &["sinks"],                       // 4
    &["config"],                      // 5
    &["pass"],                        // 6: one pass (collect every cluster, deliver every sink)
    &["backfill", "daemon"],          // 7: a backfill's rules; the daemon (loop, hook socket, metrics)
    &["cli"],                         // 8: the edge
];

/// module -> (module it references -> where: "src/x.rs:12"). Every module of src/ is a key.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let from = match rel.trim_start_matches("src/").split('/').next().unwrap() {
            "lib.rs" | "main.rs" => continue,
            first => first.trim_end_matches(".rs").to_string(),
        };
        let code = blank_comments_and_literals(&std::fs::read(&file).unwrap());
        let deps = graph.entry(from).or_default();
        for (line, to) in references(&code) {
            deps.entry(to).or_default().push(format!("{rel}:{line}"));
        }
    }
    // Keep references to other modules only (not to itself, nor to `self` or items of the crate root).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (from, deps) in graph.iter_mut() {
        deps.retain(|to, _| to != from && modules.contains(to));
        deps.values_mut().for_each(Vec::dedup); // several references on one line
    }
    graph
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The source with comments, strings and char literals blanked to spaces; newlines are kept, so line
/// numbers still hold.
fn blank_comments_and_literals(src: &[u8]) -> Vec<u8> {
    let n = src.len();
    let at = |i: usize| src.get(i).copied().unwrap_or(0);
    let mut out = src.to_vec();
    let mut i = 0;
    while i < n {
        let start = i;
        // `r"`, `r#"`, `br"`, `cr"`... open a raw string; a raw identifier `r#ident` does not.
        let word_start = |i: usize| i == 0 || !is_ident(src[i - 1]);
        let raw = src[i] == b'r' && (word_start(i) || (matches!(src[i - 1], b'b' | b'c') && word_start(i - 1)));
        let hashes = src[i + 1..].iter().take_while(|&&b| b == b'#').count();
        if src[i..].starts_with(b"//") {
            while i < n && src[i] != b'\n' {
                i += 1;
            }
        } else if src[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < n {
                if src[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if src[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if raw && at(i + 1 + hashes) == b'"' {
            let close = [b"\"".as_slice(), &vec![b'#'; hashes]].concat();
            i += 2 + hashes;
            while i < n && !src[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
        } else if src[i] == b'"' {
            i += 1;
            while i < n && src[i] != b'"' {
                i += if src[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if src[i] == b'\'' && at(i + 1) == b'\\' {
            i += 3; // the quote, the backslash and the escaped character: then on to the closing quote
            while i < n && src[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if src[i] == b'\'' {
            // A char literal closes after one (UTF-8) character; a lifetime or label does not.
            let len = match at(i + 1) {
                b if b >= 0xF0 => 4,
                b if b >= 0xE0 => 3,
                b if b >= 0xC0 => 2,
                _ => 1,
            };
            if at(i + 1 + len) != b'\'' {
                i += 1;
                continue;
            }
            i += 2 + len;
        } else {
            i += 1;
            continue;
        }
        for b in &mut out[start..i.min(n)] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    out
}

/// (line, NAME) for each `crate::NAME` and `slurm_ledger::NAME`, and each head of a `crate::{...}` group.
fn references(code: &[u8]) -> Vec<(usize, String)> {
    let skip_ws = |mut i: usize| {
        while code.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    let word_end = |i: usize| i + code[i..].iter().take_while(|&&b| is_ident(b)).count();
    let mut heads = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if !is_ident(code[i]) {
            i += 1;
            continue;
        }
        let end = word_end(i);
        if matches!(&code[i..end], b"crate" | b"slurm_ledger") && code[skip_ws(end)..].starts_with(b"::") {
            let j = skip_ws(skip_ws(end) + 2);
            if code.get(j) == Some(&b'{') {
                let (mut depth, mut item_start) = (0, false);
                for (k, &b) in code.iter().enumerate().skip(j) {
                    match b {
                        b'{' => {
                            depth += 1;
                            item_start = depth == 1;
                        }
                        b'}' if depth == 1 => break,
                        b'}' => depth -= 1,
                        b',' if depth == 1 => item_start = true,
                        _ if item_start && is_ident(b) => {
                            heads.push(k);
                            item_start = false;
                        }
                        _ if !b.is_ascii_whitespace() => item_start = false,
                        _ => {}
                    }
                }
            } else {
                heads.push(j);
            }
        }
        i = end;
    }
    let line = |at: usize| 1 + code[..at].iter().filter(|&&b| b == b'\n').count();
    heads.into_iter().map(|h| (line(h), String::from_utf8_lossy(&code[h..word_end(h)]).into_owned())).collect()
}

fn listing(graph: &Graph) -> String {
    let line = |(m, deps): (&String, &BTreeMap<String, Vec<String>>)| {
        format!("  {m} -> [{}]\n", deps.keys().map(String::as_str).collect::<Vec<_>>().join(", "))
    };
    graph.iter().map(line).collect()
}

#[test]
fn modules_respect_layers() {
    let graph = graph();
    let mut problems = String::new();
    let listed: Vec<&str> = LAYERS.iter().flat_map(|layer| layer.iter().copied()).collect();
    for (i, m) in listed.iter().enumerate().filter(|(i, m)| listed[..*i].contains(m)) {
        problems += &format!("module `{m}` is listed twice in LAYERS (again at position {i})\n");
    }
    for m in graph.keys().filter(|m| layer_of(m).is_none()) {
        problems += &format!("module `{m}` is not in LAYERS: add it to a layer at the top of tests/it/layers.rs\n");
    }
    for (from, deps) in &graph {
        let Some(from_layer) = layer_of(from) else { continue };
        for (to, at) in deps {
            let why = match layer_of(to) {
                None => format!("{to} is not in LAYERS"),
                Some(to_layer) if to_layer >= from_layer => format!("layer {from_layer} -> layer {to_layer}"),
                Some(_) => continue,
            };
            problems += &format!("{from} -> {to} ({}) [{why}]\n", at.join(", "));
        }
    }
    assert!(
        problems.is_empty(),
        "module layering violated: a module may use only modules of a strictly lower layer\n{problems}\n\
         dependencies:\n{}",
        listing(&graph)
    );
}

#[test]
fn no_module_cycles() {
    let graph = graph();
    // Everything each module reaches through one or more references, grown to a fixed point.
    let mut reach: BTreeMap<&str, BTreeSet<&str>> =
        graph.iter().map(|(m, deps)| (m.as_str(), deps.keys().map(String::as_str).collect())).collect();
    loop {
        let mut grew = false;
        for m in graph.keys() {
            let via: BTreeSet<&str> = reach[m.as_str()].iter().flat_map(|n| reach[n].iter().copied()).collect();
            let own = reach.get_mut(m.as_str()).unwrap();
            let before = own.len();
            own.extend(via);
            grew |= own.len() > before;
        }
        if !grew {
            break;
        }
    }
    let mut cycles = BTreeSet::new();
    for m in graph.keys() {
        let scc: Vec<&str> = reach[m.as_str()].iter().copied().filter(|n| reach[n].contains(m.as_str())).collect();
        if scc.len() > 1 {
            cycles.insert(scc);
        }
    }
    let mut report = String::new();
    for scc in &cycles {
        report += &format!("cycle: {}\n", scc.join(", "));
        for from in scc {
            for (to, at) in graph[*from].iter().filter(|(to, _)| scc.contains(&to.as_str())) {
                report += &format!("  {from} -> {to} ({})\n", at.join(", "));
            }
        }
    }
    assert!(cycles.is_empty(), "modules form cycles:\n{report}\ndependencies:\n{}", listing(&graph));
}

/// `scripts/deps` runs this with `--nocapture` to show the listing.
#[test]
fn print_module_dependencies() {
    let graph = graph();
    println!("module dependencies (src/):\n{}", listing(&graph));
    assert!(graph.len() >= 5, "only {} modules found in src/: is the scan blind?", graph.len());
    assert!(graph.get("cli").is_some_and(|deps| !deps.is_empty()), "cli uses no module: is the scan blind?");
}

#[test]
fn comments_and_literals_are_not_references() {
    let src = r####"//! see crate::ledger
/// and [`crate::sinks`] /* crate::tracker */
use crate::{model, ledger::{Ledger, self}};
const S: &str = "crate::x \" crate::y";
const R: &str = r#"crate::z "quoted" crate::w"#;
fn f<'a>(c: char, s: &'a str) { let _ = ('"', '\'', b'"'); /* a /* nested */ crate::demo */
    slurm_ledger::cli::run(crate ::
        collect::go());
}
"####;
    let refs = references(&blank_comments_and_literals(src.as_bytes()));
    let want = [(3, "model"), (3, "ledger"), (7, "cli"), (8, "collect")];
    assert_eq!(refs, want.map(|(line, m)| (line, m.to_string())));
}
