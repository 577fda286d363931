//! Kernel modules a revision needs (loaded before its containers start, as upstream does): a
//! container's `drivers` (`required`, `optional`) name aliases of `bsp/drivers.json`; each alias
//! is an ordered list of modprobe-style `module [params]` entries, loaded with finit_module from
//! the BSP's modules squashfs, dependencies first (`modules.dep`).
use crate::pvlog;
use crate::state::{Container, State};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One module to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleLoad {
    pub name: String,
    pub params: String,
}

/// `module [params]` -> name (with `-` read as `_`, as the kernel does) and the params.
pub fn parse_entry(entry: &str) -> Option<ModuleLoad> {
    let entry = entry.trim();
    let (name, params) = entry.split_once(char::is_whitespace).unwrap_or((entry, ""));
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some(ModuleLoad {
        name: normalize(name),
        params: params.trim().to_string(),
    })
}

fn normalize(name: &str) -> String {
    name.trim_end_matches(".ko").replace('-', "_")
}

/// Substitutes `${user-meta:KEY}` / `${device-meta:KEY}` placeholders (as upstream's
/// drivers.json allows); unknown keys become empty, as an unset value would.
pub fn substitute(entry: &str, meta: &dyn Fn(&str, &str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = entry;
    while let Some(i) = rest.find("${") {
        out.push_str(rest.get(..i).unwrap_or(""));
        let tail = rest.get(i + 2..).unwrap_or("");
        match tail.find('}') {
            Some(j) => {
                let inner = tail.get(..j).unwrap_or("");
                if let Some((store, key)) = inner.split_once(':') {
                    out.push_str(&meta(store, key).unwrap_or_default());
                }
                rest = tail.get(j + 1..).unwrap_or("");
            }
            None => {
                out.push_str(rest.get(i..).unwrap_or(""));
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The modules of one container, in load order: (alias, modules, required).
pub fn for_container(
    state: &State,
    c: &Container,
    fitconfig: Option<&str>,
    meta: &dyn Fn(&str, &str) -> Option<String>,
) -> Vec<(String, Vec<ModuleLoad>, bool)> {
    let Some(drivers) = state.drivers() else {
        return Vec::new();
    };
    let refs = c
        .drivers
        .required
        .iter()
        .map(|a| (a, true))
        .chain(c.drivers.optional.iter().map(|a| (a, false)));
    refs.filter_map(|(alias, required)| {
        let Some(def) = drivers.alias(alias, fitconfig) else {
            pvlog!(
                Warn,
                "drivers",
                "container {}: driver alias {alias} is not in bsp/drivers.json",
                c.name
            );
            return required.then(|| (alias.clone(), Vec::new(), true));
        };
        let mods = def
            .modules
            .iter()
            .filter_map(|e| parse_entry(&substitute(e, meta)))
            .collect();
        Some((alias.clone(), mods, required))
    })
    .collect()
}

/// How a container names a driver alias (upstream's driver types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverType {
    Required,
    Optional,
    /// Loaded and unloaded only when the container asks (PUT /drivers/...).
    Manual,
}

impl DriverType {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverType::Required => "REQUIRED",
            DriverType::Optional => "OPTIONAL",
            DriverType::Manual => "MANUAL",
        }
    }
}

/// A container's driver aliases with their type, required first, as upstream lists them.
pub fn refs(c: &Container) -> Vec<(&str, DriverType)> {
    let d = &c.drivers;
    let mut out = Vec::new();
    for (list, t) in [
        (&d.required, DriverType::Required),
        (&d.optional, DriverType::Optional),
        (&d.manual, DriverType::Manual),
    ] {
        out.extend(list.iter().map(|a| (a.as_str(), t)));
    }
    out
}

/// The modules of one alias for this device, None when `bsp/drivers.json` does not define it.
pub fn alias_modules(
    state: &State,
    alias: &str,
    fitconfig: Option<&str>,
    meta: &dyn Fn(&str, &str) -> Option<String>,
) -> Option<Vec<ModuleLoad>> {
    let def = state.drivers()?.alias(alias, fitconfig)?;
    Some(
        def.modules
            .iter()
            .filter_map(|e| parse_entry(&substitute(e, meta)))
            .collect(),
    )
}

/// The names of the loaded modules in /proc/modules.
pub fn loaded_modules(proc_modules: &str) -> std::collections::HashSet<String> {
    proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(normalize)
        .collect()
}

/// An alias's status: UNKNOWN when undefined, LOADED when all its modules are.
pub fn alias_status(
    mods: Option<&[ModuleLoad]>,
    loaded: &std::collections::HashSet<String>,
) -> &'static str {
    match mods {
        None => "UNKNOWN",
        Some(m) if m.iter().all(|m| loaded.contains(&m.name)) => "LOADED",
        Some(_) => "UNLOADED",
    }
}

/// Unloads an alias's modules, last loaded first; the first failure is returned.
pub fn unload(mods: &[ModuleLoad]) -> Result<(), String> {
    for m in mods.iter().rev() {
        match crate::sys::power::delete_module(&m.name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(format!("module {}: {e}", m.name)),
        }
    }
    Ok(())
}

/// `modules.dep` of a modules tree: module name -> (path, dependencies' paths).
#[derive(Debug, Default)]
pub struct ModuleIndex {
    root: PathBuf,
    deps: HashMap<String, (String, Vec<String>)>,
}

impl ModuleIndex {
    pub fn parse(root: &Path, modules_dep: &str) -> ModuleIndex {
        let mut deps = HashMap::new();
        for line in modules_dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            let Some(file) = path.rsplit('/').next() else {
                continue;
            };
            let name = normalize(file.split(".ko").next().unwrap_or(file));
            deps.insert(
                name,
                (
                    path.to_string(),
                    rest.split_whitespace().map(str::to_string).collect(),
                ),
            );
        }
        ModuleIndex {
            root: root.to_path_buf(),
            deps,
        }
    }

    /// Reads `<root>/modules.dep`; an unreadable one gives an empty index (nothing loadable).
    pub fn load(root: &Path) -> ModuleIndex {
        ModuleIndex::parse(
            root,
            &std::fs::read_to_string(root.join("modules.dep")).unwrap_or_default(),
        )
    }

    /// Files to load for `name`, dependencies first, each once.
    pub fn plan(&self, name: &str) -> Option<Vec<PathBuf>> {
        let (path, deps) = self.deps.get(&normalize(name))?;
        let mut out: Vec<PathBuf> = Vec::new();
        // modules.dep lists the full dependency closure, deepest last: load in reverse
        for d in deps.iter().rev().chain(std::iter::once(path)) {
            let p = self.root.join(d);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Some(out)
    }

    /// Loads `m` and its dependencies. A module already loaded (EEXIST) counts as loaded.
    pub fn load_module(&self, m: &ModuleLoad) -> Result<(), String> {
        let files = self.plan(&m.name).ok_or_else(|| {
            format!(
                "module {} not in {}/modules.dep",
                m.name,
                self.root.display()
            )
        })?;
        let last = files.len().saturating_sub(1);
        for (i, f) in files.iter().enumerate() {
            let params = if i == last { m.params.as_str() } else { "" };
            let r = std::fs::File::open(f)
                .and_then(|file| crate::sys::power::finit_module_params(&file, params));
            match r {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(format!("module {} ({}): {e}", m.name, f.display())),
            }
        }
        Ok(())
    }
}

/// Loads a container's required and optional drivers; a failing required driver is an error
/// (the container does not start), an optional one a warning.
pub fn load_for(
    index: &ModuleIndex,
    container: &str,
    plan: &[(String, Vec<ModuleLoad>, bool)],
) -> Result<usize, String> {
    let mut loaded = 0;
    for (alias, mods, required) in plan {
        if mods.is_empty() && *required {
            return Err(format!(
                "container {container}: required driver {alias}: no such alias"
            ));
        }
        for m in mods {
            match index.load_module(m) {
                Ok(()) => loaded += 1,
                Err(e) if *required => {
                    return Err(format!(
                        "container {container}: required driver {alias}: {e}"
                    ))
                }
                Err(e) => pvlog!(
                    Warn,
                    "drivers",
                    "container {container}: optional driver {alias}: {e}"
                ),
            }
        }
    }
    Ok(loaded)
}

#[cfg(test)]
#[path = "drivers_tests.rs"]
mod tests;
