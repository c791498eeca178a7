//! Shared helpers: throwaway bundles written to a temporary directory.

#![allow(dead_code)]

use std::path::Path;

use portcullis::authz::policy::{PolicyProblem, PolicySet};
use tempfile::TempDir;

/// Writes `files` (relative path, contents) under a new temporary directory.
pub fn write_bundle(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    dir
}

/// Loads a bundle made of `files`; the directory lives as long as the set
/// is only needed while it is loaded.
pub fn load(files: &[(&str, &str)]) -> Result<PolicySet, Vec<PolicyProblem>> {
    let dir = write_bundle(files);
    PolicySet::load(&[dir.path()])
}

/// Loads a bundle that must compile.
pub fn load_ok(files: &[(&str, &str)]) -> PolicySet {
    load(files).unwrap_or_else(|problems| panic!("bundle should load: {problems:#?}"))
}

/// The problems of a bundle that must not compile, as `name:line:column:
/// message` with the temporary directory removed.
pub fn problems_of(files: &[(&str, &str)]) -> Vec<String> {
    let dir = write_bundle(files);
    let problems = match PolicySet::load(&[dir.path()]) {
        Ok(_) => panic!("bundle should not load"),
        Err(problems) => problems,
    };
    let prefix = format!("{}/", dir.path().display());
    problems
        .iter()
        .map(|problem| problem.to_string().replace(&prefix, ""))
        .collect()
}

pub fn example_set() -> PolicySet {
    PolicySet::load(&[Path::new("examples/users-api/policies")]).expect("example policies load")
}
