//! `docs/CONFIG.md` and the repository's `config.toml` against the configuration structs:
//! every key, default and environment variable must match, so the docs cannot drift.

use std::collections::BTreeMap;

use telemetron::config::Config;

const CONFIG_DOC: &str = include_str!("../../docs/CONFIG.md");
const CONFIG_FILE: &str = include_str!("../../config.toml");

/// Flattens the default configuration into `section.key -> value`, leaving out the plugin
/// tables, which are documented separately.
fn default_keys() -> BTreeMap<String, serde_json::Value> {
    let value = serde_json::to_value(Config::default()).expect("the config serialises");
    let mut keys = BTreeMap::new();
    for (section, table) in value.as_object().expect("config is an object") {
        if section == "validation" || section == "processing" {
            continue;
        }
        for (key, default) in table.as_object().expect("each section is an object") {
            keys.insert(format!("{section}.{key}"), default.clone());
        }
    }
    keys
}

/// Parses the reference table: key -> (default, environment variable).
fn documented_keys() -> BTreeMap<String, (String, String)> {
    CONFIG_DOC
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_owned();
            (unquote(cells[1]), (unquote(cells[3]), unquote(cells[4])))
        })
        .collect()
}

#[test]
fn config_doc_lists_every_key() {
    let code: Vec<String> = default_keys().into_keys().collect();
    let documented: Vec<String> = documented_keys().into_keys().collect();
    assert_eq!(documented, code, "docs/CONFIG.md rows differ from the Config structs");
}

#[test]
fn config_doc_defaults_match_code() {
    let documented = documented_keys();
    for (key, default) in default_keys() {
        let (doc_default, _) = &documented[&key];
        assert_eq!(doc_default, &default.to_string(), "default of {key} in docs/CONFIG.md");
    }
}

#[test]
fn config_doc_env_names_match_keys() {
    for (key, (_, env)) in documented_keys() {
        let expected = format!("TELEMETRON_{}", key.to_uppercase().replace('.', "__"));
        assert_eq!(env, expected, "environment variable of {key}");
    }
}

#[test]
fn repository_config_sets_every_key_to_its_default() {
    let file: toml::Table = CONFIG_FILE.parse().expect("config.toml is valid TOML");
    for (key, default) in default_keys() {
        let (section, name) = key.split_once('.').expect("dotted key");
        let value = file
            .get(section)
            .and_then(|table| table.get(name))
            .unwrap_or_else(|| panic!("config.toml does not document {key}"));
        let value = serde_json::to_value(value).expect("TOML value converts to JSON");
        assert_eq!(value, default, "config.toml value of {key} differs from the default");
    }
}
