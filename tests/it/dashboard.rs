//! The Grafana dashboard in `deploy/grafana/telemetron.json`, checked against the metrics
//! the service exports. Every series a panel queries must be named in
//! `telemetron::metrics::names`, and every label a panel groups or filters by must appear
//! on that series in a live `/metrics` scrape. The Prometheus test runs the same queries
//! against a real Prometheus server, so the query extraction here is shared with it.

use std::collections::{BTreeMap, BTreeSet};

use telemetron::metrics::names;

use crate::support::{get, post_json, TestServer};

/// The dashboard file, read at run time so that editing it needs no rebuild.
const DASHBOARD_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/telemetron.json");

/// Every metric name in `telemetron::metrics::names`. The test
/// `dashboard_names_cover_exported_families` fails when `/metrics` exports a family missing
/// here.
const METRIC_NAMES: [&str; 12] = [
    names::HTTP_REQUESTS_TOTAL,
    names::HTTP_REQUEST_DURATION_SECONDS,
    names::HTTP_CONNECTIONS_TOTAL,
    names::EVENTS_ACCEPTED_TOTAL,
    names::EVENTS_REJECTED_TOTAL,
    names::EVENTS_PROCESSED_TOTAL,
    names::EVENTS_DEAD_LETTERED_TOTAL,
    names::PLUGIN_ERRORS_TOTAL,
    names::PLUGIN_DURATION_SECONDS,
    names::QUEUE_DEPTH_EVENTS,
    names::QUEUE_CAPACITY_EVENTS,
    names::STATS_SOURCES,
];

/// The histograms among [`METRIC_NAMES`]. Prometheus stores a histogram only as the series
/// `NAME_bucket`, `NAME_sum` and `NAME_count`, so a query must use one of those.
const HISTOGRAM_NAMES: [&str; 2] = [names::HTTP_REQUEST_DURATION_SECONDS, names::PLUGIN_DURATION_SECONDS];

/// Series suffixes of a histogram.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// Grafana's interval variables, each replaced by [`GRAFANA_INTERVAL_STANDIN`] before a
/// query goes to Prometheus. Longer names come first, so `$__interval` does not match
/// inside `$__interval_ms`.
const GRAFANA_INTERVAL_VARIABLES: [&str; 8] = [
    "${__rate_interval}",
    "$__rate_interval",
    "${__interval_ms}",
    "$__interval_ms",
    "${__interval}",
    "$__interval",
    "${__range}",
    "$__range",
];

/// The range that replaces a Grafana interval variable.
pub const GRAFANA_INTERVAL_STANDIN: &str = "1m";

/// PromQL keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// One query of one dashboard panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// Panel title.
    pub panel: String,
    /// Grafana's id of the query within its panel ("A", "B", ...).
    pub ref_id: String,
    /// The PromQL expression as stored in the dashboard.
    pub expr: String,
}

impl PanelQuery {
    /// Returns the expression with Grafana's interval variables replaced, ready for the
    /// Prometheus query API.
    pub fn promql(&self) -> String {
        let mut promql = self.expr.clone();
        for variable in GRAFANA_INTERVAL_VARIABLES {
            promql = promql.replace(variable, GRAFANA_INTERVAL_STANDIN);
        }
        assert!(
            !promql.contains('$'),
            "panel {:?} query {} uses a Grafana variable this test cannot replace: {}",
            self.panel,
            self.ref_id,
            self.expr
        );
        promql
    }
}

/// The metric names and label names one PromQL expression uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QueryParts {
    /// Series names starting with `telemetron_`, as written (histogram suffixes kept).
    pub series: BTreeSet<String>,
    /// Each `by (...)` clause, in the order written.
    pub by_clauses: Vec<Vec<String>>,
    /// Labels of `without`, `on`, `ignoring`, `group_left` and `group_right` clauses, and
    /// of label matchers such as `{plugin="StorageProcessor"}`.
    pub other_labels: BTreeSet<String>,
}

impl QueryParts {
    /// Returns every label name the expression refers to, `by` clauses included.
    pub fn all_labels(&self) -> BTreeSet<String> {
        let mut labels = self.other_labels.clone();
        labels.extend(self.by_clauses.iter().flatten().cloned());
        labels
    }
}

/// Reads and parses the dashboard file.
pub fn load_dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(DASHBOARD_PATH)
        .unwrap_or_else(|error| panic!("cannot read the dashboard {DASHBOARD_PATH}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("the dashboard {DASHBOARD_PATH} is not JSON: {error}"))
}

/// Returns every panel, including panels nested in collapsed rows.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut found = Vec::new();
    let top_level = dashboard["panels"]
        .as_array()
        .expect("the dashboard has a panels array");
    for panel in top_level {
        found.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            found.extend(nested);
        }
    }
    found
}

/// Returns the query of every panel target. Fails the test on a target without `expr`.
pub fn panel_queries(dashboard: &serde_json::Value) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?} has a target without expr: {target}"));
            queries.push(PanelQuery {
                panel: title.to_owned(),
                ref_id: target["refId"].as_str().unwrap_or("?").to_owned(),
                expr: expr.to_owned(),
            });
        }
    }
    queries
}

/// Extracts series names and label names from a PromQL expression.
///
/// This is a tokenizer, not a full parser. It skips string literals, range and subquery
/// brackets and numbers. It reads every `telemetron_` identifier as a series name and the
/// identifiers inside `{...}` as matcher labels. The identifiers in the parentheses after
/// `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` are label lists.
pub fn parse_query(expr: &str) -> QueryParts {
    let characters: Vec<char> = expr.chars().collect();
    let mut parts = QueryParts::default();
    let mut index = 0;

    while index < characters.len() {
        let character = characters[index];
        if character == '"' || character == '\'' || character == '`' {
            index = skip_string(&characters, index);
        } else if character == '[' {
            index = skip_past(&characters, index, ']');
        } else if character.is_ascii_digit() || character == '.' {
            // A number or a duration such as `0.99`, `1e3` or `5m`.
            while index < characters.len() && (characters[index].is_ascii_alphanumeric() || characters[index] == '.') {
                index += 1;
            }
        } else if character == '{' {
            let (labels, next) = read_matcher_labels(&characters, index + 1);
            parts.other_labels.extend(labels);
            index = next;
        } else if is_identifier_start(character) {
            let (identifier, next) = read_identifier(&characters, index);
            index = next;
            if identifier.starts_with("telemetron_") {
                parts.series.insert(identifier);
            } else if LABEL_LIST_KEYWORDS.contains(&identifier.as_str()) {
                let after_spaces = skip_whitespace(&characters, index);
                if characters.get(after_spaces) == Some(&'(') {
                    let (labels, next) = read_label_list(&characters, after_spaces + 1);
                    index = next;
                    if identifier == "by" {
                        parts.by_clauses.push(labels);
                    } else {
                        parts.other_labels.extend(labels);
                    }
                }
            }
        } else {
            index += 1;
        }
    }
    parts
}

fn is_identifier_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_' || character == ':'
}

fn is_identifier_part(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == ':'
}

fn read_identifier(characters: &[char], start: usize) -> (String, usize) {
    let mut end = start;
    while end < characters.len() && is_identifier_part(characters[end]) {
        end += 1;
    }
    (characters[start..end].iter().collect(), end)
}

fn skip_whitespace(characters: &[char], mut index: usize) -> usize {
    while index < characters.len() && characters[index].is_whitespace() {
        index += 1;
    }
    index
}

/// Returns the index after the string literal opening at `start`, honouring backslash
/// escapes except in backtick strings, which PromQL reads raw.
fn skip_string(characters: &[char], start: usize) -> usize {
    let quote = characters[start];
    let mut index = start + 1;
    while index < characters.len() {
        match characters[index] {
            '\\' if quote != '`' => index += 2,
            found if found == quote => return index + 1,
            _ => index += 1,
        }
    }
    index
}

fn skip_past(characters: &[char], start: usize, close: char) -> usize {
    characters[start..]
        .iter()
        .position(|&character| character == close)
        .map_or(characters.len(), |offset| start + offset + 1)
}

/// Reads `name op "value", ...}` from just after `{`: returns the label names and the index
/// after `}`.
fn read_matcher_labels(characters: &[char], mut index: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    while index < characters.len() {
        let character = characters[index];
        if character == '}' {
            return (labels, index + 1);
        } else if character == '"' || character == '\'' || character == '`' {
            index = skip_string(characters, index);
        } else if is_identifier_start(character) {
            let (identifier, next) = read_identifier(characters, index);
            labels.push(identifier);
            index = next;
        } else {
            index += 1;
        }
    }
    (labels, index)
}

/// Reads `name, name)` from just after `(`: returns the names and the index after `)`.
fn read_label_list(characters: &[char], mut index: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    while index < characters.len() {
        let character = characters[index];
        if character == ')' {
            return (labels, index + 1);
        } else if is_identifier_start(character) {
            let (identifier, next) = read_identifier(characters, index);
            labels.push(identifier);
            index = next;
        } else {
            index += 1;
        }
    }
    (labels, index)
}

/// Returns the name in [`METRIC_NAMES`] that `series` belongs to, or an explanation of
/// why it belongs to none.
fn exported_name_of(series: &str) -> Result<&'static str, String> {
    if let Some(&name) = METRIC_NAMES.iter().find(|&&name| name == series) {
        if HISTOGRAM_NAMES.contains(&name) {
            return Err(format!(
                "{series} is a histogram, so Prometheus has no series of that name; query {series}_bucket, _sum or _count"
            ));
        }
        return Ok(name);
    }
    for suffix in HISTOGRAM_SUFFIXES {
        if let Some(base) = series.strip_suffix(suffix) {
            if let Some(&name) = HISTOGRAM_NAMES.iter().find(|&&name| name == base) {
                return Ok(name);
            }
        }
    }
    Err(format!(
        "{series} is not a metric in telemetron::metrics::names (known: {METRIC_NAMES:?})"
    ))
}

/// The series of one live `/metrics` scrape: the label names seen on each series name,
/// and the families each `# TYPE` line declares, with their type.
struct Exposition {
    labels: BTreeMap<String, BTreeSet<String>>,
    families: BTreeMap<String, String>,
}

/// Starts a server, sends traffic that creates every series (an accepted event, which also
/// runs a processor batch, and a rejected one), and reads `/metrics`.
fn scrape_live_metrics() -> Exposition {
    let server = TestServer::start();
    let accepted = post_json(
        server.addr,
        r#"{"sourceId": 1, "type": "Heartbeat", "timestamp": "2024-05-01T12:00:00Z"}"#,
    );
    assert_eq!(accepted.status, 202, "valid event: {}", accepted.text());
    let rejected = post_json(server.addr, r#"{"sourceId": "one", "type": "Heartbeat"}"#);
    assert_eq!(rejected.status, 400, "invalid event: {}", rejected.text());
    server.wait_for_events(1);

    let response = get(server.addr, "/metrics");
    assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
    parse_exposition(&response.text())
}

/// Collects label names per series name and `# TYPE` declarations from the Prometheus text
/// format. Sample values are not needed here, so they are not parsed.
fn parse_exposition(text: &str) -> Exposition {
    let mut exposition = Exposition {
        labels: BTreeMap::new(),
        families: BTreeMap::new(),
    };
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut words = declaration.split_whitespace();
            let family = words.next().expect("a TYPE line names its family");
            let kind = words.next().expect("a TYPE line gives the type");
            exposition.families.insert(family.to_owned(), kind.to_owned());
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }

        let characters: Vec<char> = line.chars().collect();
        let (name, after_name) = read_identifier(&characters, 0);
        let labels = exposition.labels.entry(name).or_default();
        if characters.get(after_name) == Some(&'{') {
            let (found, _) = read_matcher_labels(&characters, after_name + 1);
            labels.extend(found);
        }
    }
    exposition
}

#[test]
fn query_parser_finds_series_and_labels() {
    let parts = parse_query(
        r#"histogram_quantile(0.99, sum by (le, plugin) (rate(telemetron_processor_plugin_duration_seconds_bucket{status="ok"}[5m])))"#,
    );
    assert_eq!(
        parts.series,
        BTreeSet::from(["telemetron_processor_plugin_duration_seconds_bucket".to_owned()])
    );
    assert_eq!(parts.by_clauses, vec![vec!["le".to_owned(), "plugin".to_owned()]]);
    assert_eq!(parts.other_labels, BTreeSet::from(["status".to_owned()]));

    // A trailing `by`, `without`, a string holding PromQL-like text and a scalar with an
    // exponent.
    let parts = parse_query(
        r#"sum(rate(telemetron_http_requests_total{endpoint!~"by (x)|telemetron_fake"}[1m])) by (endpoint) / 1e3 + sum without (shard) (telemetron_queue_depth_events)"#,
    );
    assert_eq!(
        parts.series,
        BTreeSet::from([
            "telemetron_http_requests_total".to_owned(),
            "telemetron_queue_depth_events".to_owned()
        ])
    );
    assert_eq!(parts.by_clauses, vec![vec!["endpoint".to_owned()]]);
    assert_eq!(
        parts.other_labels,
        BTreeSet::from(["endpoint".to_owned(), "shard".to_owned()])
    );

    // A metric name that contains `by` is a series, not a clause.
    let parts = parse_query("telemetron_events_by_x_total");
    assert_eq!(
        parts.series,
        BTreeSet::from(["telemetron_events_by_x_total".to_owned()])
    );
    assert!(parts.by_clauses.is_empty(), "{parts:?}");
}

#[test]
fn grafana_interval_variables_become_ranges() {
    let query = PanelQuery {
        panel: "test".to_owned(),
        ref_id: "A".to_owned(),
        expr: "rate(x[$__rate_interval]) + rate(y[${__interval}]) + rate(z[$__range])".to_owned(),
    };
    assert_eq!(query.promql(), "rate(x[1m]) + rate(y[1m]) + rate(z[1m])");
}

#[test]
fn histogram_names_need_a_series_suffix() {
    let bare = exported_name_of(names::PLUGIN_DURATION_SECONDS);
    assert!(bare.is_err(), "a bare histogram name was accepted: {bare:?}");

    let bucket = format!("{}_bucket", names::PLUGIN_DURATION_SECONDS);
    assert_eq!(exported_name_of(&bucket), Ok(names::PLUGIN_DURATION_SECONDS));

    let counter_with_suffix = format!("{}_count", names::EVENTS_PROCESSED_TOTAL);
    assert!(
        exported_name_of(&counter_with_suffix).is_err(),
        "a counter took a histogram suffix"
    );
}

#[test]
fn dashboard_imports_with_prometheus_input() {
    let dashboard = load_dashboard();

    assert_eq!(
        dashboard["schemaVersion"], 39,
        "the panels are written for schema version 39; check them when changing it"
    );

    let inputs = dashboard["__inputs"].as_array().expect("the dashboard has __inputs");
    let prometheus_input = inputs
        .iter()
        .find(|input| input["name"] == "DS_PROMETHEUS")
        .unwrap_or_else(|| panic!("no DS_PROMETHEUS input in {inputs:?}"));
    assert_eq!(prometheus_input["type"], "datasource", "{prometheus_input}");
    assert_eq!(prometheus_input["pluginId"], "prometheus", "{prometheus_input}");

    let mut panel_ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        if panel["type"] == "row" {
            continue;
        }
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no numeric id"));
        assert!(panel_ids.insert(id), "panel id {id} is used twice (second: {title:?})");
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title:?} datasource"
        );

        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {title:?} target {target}"
            );
            let ref_id = target["refId"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?} target without refId"));
            assert!(ref_ids.insert(ref_id), "panel {title:?} uses refId {ref_id} twice");
        }
    }
}

#[test]
fn dashboard_uses_exported_metric_names() {
    let queries = panel_queries(&load_dashboard());
    assert!(!queries.is_empty(), "the dashboard has no queries");

    for query in &queries {
        let parts = parse_query(&query.promql());
        assert!(
            !parts.series.is_empty(),
            "panel {:?} query {} uses no telemetron_ series: {}",
            query.panel,
            query.ref_id,
            query.expr
        );
        for series in &parts.series {
            if let Err(problem) = exported_name_of(series) {
                panic!(
                    "panel {:?} query {}: {problem}\nquery: {}",
                    query.panel, query.ref_id, query.expr
                );
            }
        }
    }
}

#[test]
fn dashboard_shows_every_metric() {
    let mut used = BTreeSet::new();
    for query in panel_queries(&load_dashboard()) {
        for series in parse_query(&query.promql()).series {
            if let Ok(name) = exported_name_of(&series) {
                used.insert(name);
            }
        }
    }
    let unused: Vec<&str> = METRIC_NAMES
        .iter()
        .copied()
        .filter(|name| !used.contains(name))
        .collect();
    assert!(unused.is_empty(), "no dashboard panel shows {unused:?}");
}

/// Each label an expression names must be on every series the expression selects. That
/// fits single-metric queries and joins on shared labels, which is all the dashboard uses.
#[test]
fn dashboard_labels_exist_on_series() {
    let exposition = scrape_live_metrics();

    for query in panel_queries(&load_dashboard()) {
        let parts = parse_query(&query.promql());
        for series in &parts.series {
            let Some(series_labels) = exposition.labels.get(series) else {
                panic!(
                    "panel {:?} query {} uses {series}, which /metrics does not export; series exported: {:?}",
                    query.panel,
                    query.ref_id,
                    exposition.labels.keys().collect::<Vec<_>>()
                );
            };
            for label in parts.all_labels() {
                if label == "__name__" {
                    continue;
                }
                assert!(
                    series_labels.contains(&label),
                    "panel {:?} query {} uses label {label:?}, but {series} has only {series_labels:?}\nquery: {}",
                    query.panel,
                    query.ref_id,
                    query.expr
                );
            }
        }
    }
}

#[test]
fn dashboard_names_cover_exported_families() {
    let exposition = scrape_live_metrics();

    let exported: BTreeSet<&str> = exposition.families.keys().map(String::as_str).collect();
    let listed: BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
    assert_eq!(
        exported, listed,
        "the families in /metrics differ from METRIC_NAMES in this test; add new names from telemetron::metrics::names"
    );

    let histograms: BTreeSet<&str> = exposition
        .families
        .iter()
        .filter(|(_, kind)| kind.as_str() == "histogram")
        .map(|(family, _)| family.as_str())
        .collect();
    assert_eq!(
        histograms,
        BTreeSet::from(HISTOGRAM_NAMES),
        "histogram families in /metrics"
    );
}
