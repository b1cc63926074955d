//! Where `import "NAME"` finds its module.
//!
//! In order: the playbook's own directory; then `LABRUN_STDLIB` if set, else
//! a `stdlib/` directory beside the playbook or its parent (the project
//! layout `playbooks/` + `stdlib/`); then the copy of `stdlib/` embedded in
//! the binary. Editing `stdlib/*.rhai` therefore changes behaviour without a
//! rebuild, and a lone binary still works.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Shared};

/// Modules compiled into the binary: (name, source).
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/stdlib_embedded.rs"));

/// Where a module's source came from.
#[derive(Clone, Debug)]
pub enum Origin {
    File(PathBuf),
    Embedded(&'static str),
}

impl Origin {
    /// How diagnostics name this source.
    pub fn display(&self) -> String {
        match self {
            Origin::File(p) => p.display().to_string(),
            Origin::Embedded(name) => format!("<embedded stdlib>/{name}.rhai"),
        }
    }
}

/// Every source text labrun compiled, by the name errors carry, so a
/// diagnostic can quote the offending line of any module.
#[derive(Clone, Default)]
pub struct Sources {
    inner: Arc<RwLock<HashMap<String, String>>>,
}

impl Sources {
    pub fn insert(&self, name: &str, text: &str) {
        self.inner
            .write()
            .expect("sources lock")
            .insert(name.to_string(), text.to_string());
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.inner.read().expect("sources lock").get(name).cloned()
    }

    /// Where `import "path"` is written: Rhai resolves imports while
    /// compiling without telling the resolver, so a missing module would
    /// otherwise be reported with no line to fix.
    pub fn find_import(&self, path: &str) -> Option<(String, Position)> {
        let quoted = format!("\"{path}\"");
        let sources = self.inner.read().expect("sources lock");
        let mut names: Vec<&String> = sources.keys().collect();
        names.sort();
        names.into_iter().find_map(|name| {
            sources[name].lines().enumerate().find_map(|(n, line)| {
                let at = line.find(&quoted)?;
                line[..at].trim_end().ends_with("import").then(|| {
                    let col = line[..at].chars().count() + 1;
                    (name.clone(), Position::new(n as u16 + 1, col as u16))
                })
            })
        })
    }
}

pub struct LabResolver {
    search: Vec<PathBuf>,
    sources: Sources,
    cache: RwLock<HashMap<String, Shared<Module>>>,
}

impl LabResolver {
    pub fn new(playbook: &Path, sources: Sources) -> Self {
        LabResolver {
            search: search_path(playbook),
            sources,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Finds the source of module `name` along the search path.
    pub fn locate(&self, name: &str) -> Option<(Origin, String)> {
        locate(&self.search, name)
    }
}

/// The directories searched before the embedded copy.
pub fn search_path(playbook: &Path) -> Vec<PathBuf> {
    let dir = playbook
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut search = vec![dir.clone()];
    match std::env::var_os("LABRUN_STDLIB").filter(|v| !v.is_empty()) {
        Some(stdlib) => search.push(PathBuf::from(stdlib)),
        None => {
            for candidate in [dir.join("stdlib"), dir.join("..").join("stdlib")] {
                if candidate.is_dir() {
                    search.push(candidate);
                    break;
                }
            }
        }
    }
    search
}

fn locate(search: &[PathBuf], name: &str) -> Option<(Origin, String)> {
    let file = if name.ends_with(".rhai") {
        name.to_string()
    } else {
        format!("{name}.rhai")
    };
    for dir in search {
        let path = dir.join(&file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Some((Origin::File(path), text));
        }
    }
    let stem = file.trim_end_matches(".rhai");
    EMBEDDED
        .iter()
        .find(|(n, _)| *n == stem)
        .map(|(n, text)| (Origin::Embedded(n), text.to_string()))
}

impl ModuleResolver for LabResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self.cache.read().expect("cache lock").get(path) {
            return Ok(m.clone());
        }
        self.load(engine, source, path, pos)
    }
}

impl LabResolver {
    fn load(
        &self,
        engine: &Engine,
        importer: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let Some((origin, text)) = self.locate(path) else {
            let mut places: Vec<String> = self
                .search
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let embedded: Vec<&str> = EMBEDDED.iter().map(|(n, _)| *n).collect();
            places.push(format!("the embedded stdlib: {}", embedded.join(", ")));
            let message = format!("{path} (looked in {})", places.join("; "));
            // Named by the file that imports it, so the diagnostic quotes
            // that line. (Rhai replaces a bare "not found" from a resolver
            // with its own, shorter message.)
            let site = match importer {
                Some(src) if !pos.is_none() => Some((src.to_string(), pos)),
                _ => self.sources.find_import(path),
            };
            return Err(match site {
                Some((source, at)) => Box::new(EvalAltResult::ErrorInModule(
                    source,
                    Box::new(EvalAltResult::ErrorModuleNotFound(message, at)),
                    Position::NONE,
                )),
                None => Box::new(EvalAltResult::ErrorModuleNotFound(message, pos)),
            });
        };
        let source_name = origin.display();
        self.sources.insert(&source_name, &text);
        let mut ast = engine.compile(&text).map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                source_name.clone(),
                Box::new(EvalAltResult::ErrorParsing(*e.0, e.1)),
                pos,
            ))
        })?;
        ast.set_source(source_name.as_str());
        let module = Module::eval_ast_as_new(rhai::Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(source_name.clone(), e, pos)))?;
        let module: Shared<Module> = module.into();
        self.cache
            .write()
            .expect("cache lock")
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}
