//! The documentation and configuration shipped in the repository agree with the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic is a failed test

use std::path::{Path, PathBuf};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative)).unwrap()
}

/// Names assigned (possibly commented out) in `.env.example`: `NAME=` or `# NAME=`.
fn documented_variables() -> Vec<String> {
    read(".env.example")
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let (name, _) = line.split_once('=')?;
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| name.to_owned())
        })
        .collect()
}

/// Every variable bff reads: its own and bff-auth's.
fn variables_read() -> Vec<&'static str> {
    let mut all: Vec<&str> = bff_api::settings::ENV_VARIABLES
        .into_iter()
        .chain(bff_auth::ENV_VARIABLES)
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[test]
fn every_variable_read_is_documented_in_env_example() {
    let documented = documented_variables();
    let missing: Vec<&str> = variables_read()
        .into_iter()
        .filter(|name| !documented.iter().any(|d| d == name))
        .collect();
    assert!(
        missing.is_empty(),
        "read but not in .env.example: {missing:?}"
    );
}

#[test]
fn every_variable_read_is_in_the_readme_configuration_table() {
    let readme = read("README.md");
    let missing: Vec<&str> = variables_read()
        .into_iter()
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "not in README.md: {missing:?}");
}

#[test]
fn env_example_documents_nothing_that_is_not_read() {
    let read_by_bff = variables_read();
    let compose = read("deploy/docker-compose.yml");
    let stale: Vec<String> = documented_variables()
        .into_iter()
        .filter(|name| {
            !read_by_bff.contains(&name.as_str()) && !compose.contains(&format!("${{{name}"))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "in .env.example but read by neither bff nor compose: {stale:?}"
    );
}

#[test]
fn the_shipped_rbac_policy_loads() {
    let access = bff_api::access::AccessPolicy::load(&repo_file("config/rbac.toml")).unwrap();
    assert_eq!(access.policy().service_role(), "service");
}

#[test]
fn ci_runs_the_test_command_the_readme_gives() {
    assert!(read("README.md").contains("make test"));
    assert!(
        read(".ci/run")
            .lines()
            .any(|line| line.trim() == "make test")
    );
}
