//! The reference of every configuration key — type, default, range, an example and what
//! it does — that `fo-agent generate man` renders as fo.toml(5).
//!
//! The text lives in `fo-config/reference.toml`, beside the model it describes. The tests
//! below hold the two together: they list the model's keys by walking the raw serde
//! structs (the names serde itself asks for, so nothing is listed by hand) and fail on
//! a key missing from the reference or a key the model does not have, on an enumerated
//! key whose accepted values the reference does not all name, on an example that is
//! not a valid config, and on a retired key (one the model reads only to refuse it with
//! a hint) whose example is not refused with that hint.

use serde::Deserialize;

/// The reference as written in `fo-config/reference.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// The four tables, in the order of the page.
    #[serde(rename = "table")]
    pub tables: Vec<Table>,
    /// Every key, grouped by table, in the order of the page.
    #[serde(rename = "key")]
    pub keys: Vec<Key>,
}

/// A top-level table: `[node]`, `[[router]]`, `[[service]]`, `[[check]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// As in a key's path: `node`, `router`, …
    pub name: String,
    /// As written in a file: `[node]`, `[[router]]`, …
    pub title: String,
    pub text: String,
}

/// One key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// The dotted path from the top: `node.nat_timeouts.syn`.
    pub key: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub default: String,
    /// What is accepted; an enumerated key names each value in double quotes.
    pub range: String,
    /// TOML as written inside the key's table, or a whole file (it then starts with a
    /// table header).
    pub example: String,
    pub text: String,
    /// A key kept in the model only to be refused with a hint (it had a meaning once):
    /// text the refusal contains. The example then shows a config that uses it, and
    /// the tests check that it is refused with that one problem, on the key's line.
    #[serde(default)]
    pub retired: Option<String>,
}

impl Key {
    /// The top-level table: `node` for `node.nat_timeouts.syn`.
    pub fn table(&self) -> &str {
        self.key.split('.').next().unwrap_or_default()
    }

    /// The path inside the table: `nat_timeouts.syn` for `node.nat_timeouts.syn`.
    pub fn name(&self) -> &str {
        self.key.split_once('.').map_or("", |(_, rest)| rest)
    }

    /// Whether the example is a whole file rather than lines of the key's table.
    pub fn example_is_file(&self) -> bool {
        self.example.trim_start().starts_with('[')
    }
}

impl Reference {
    /// The keys of `table`, in page order.
    pub fn keys_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| k.table() == table)
    }
}

const SOURCE: &str = include_str!("../reference.toml");

/// The reference compiled into this build.
pub fn reference() -> Reference {
    // The text is part of the build and parsed by this module's tests.
    toml::from_str(SOURCE).expect("fo-config/reference.toml parses (checked by its tests)")
}

#[cfg(test)]
mod walk;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Where to add a key, for the failure messages.
    const FILE: &str = "fo-config/reference.toml";

    #[test]
    fn every_key_of_the_model_is_in_the_reference_and_nothing_else() {
        let model = walk::model();
        assert!(
            model.opaque.is_empty(),
            "the walk of the config model cannot list the keys under {:?} (a map or a flattened struct): teach fo-config/src/reference/walk.rs that shape",
            model.opaque
        );
        let reference = reference();
        let documented: BTreeSet<String> = reference.keys.iter().map(|k| k.key.clone()).collect();
        let missing: Vec<&String> = model.keys.difference(&documented).collect();
        let extra: Vec<&String> = documented.difference(&model.keys).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "fo.toml(5) and the config model differ.\n  keys of the model missing from {FILE}: {missing:?}\n  keys in {FILE} the model does not have: {extra:?}"
        );
        // Sanity of the walk itself: it saw the tables' nested keys.
        for k in [
            "node.nat_timeouts.syn",
            "router.track.weight",
            "service.backends.address",
        ] {
            assert!(model.keys.contains(k), "the walk missed {k}");
        }
    }

    #[test]
    fn every_key_is_written_once_with_every_field() {
        let reference = reference();
        let mut seen = BTreeSet::new();
        for k in &reference.keys {
            assert!(seen.insert(&k.key), "{FILE}: {} is written twice", k.key);
            for (field, v) in [
                ("type", &k.ty),
                ("default", &k.default),
                ("range", &k.range),
                ("example", &k.example),
                ("text", &k.text),
            ] {
                assert!(
                    !v.trim().is_empty(),
                    "{FILE}: {} has an empty {field}",
                    k.key
                );
            }
            if let Some(hint) = &k.retired {
                assert!(
                    !hint.trim().is_empty() && k.text.trim_start().starts_with("Retired"),
                    "{FILE}: {} is retired: give the hint its refusal contains and start its text with \"Retired\"",
                    k.key
                );
            }
            assert!(
                reference.tables.iter().any(|t| t.name == k.table()),
                "{FILE}: {} is in no [[table]]",
                k.key
            );
        }
        let names: Vec<&str> = reference.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            walk::TABLES.map(|(t, _)| t),
            "{FILE}: the [[table]]s"
        );
    }

    #[test]
    fn enumerated_keys_name_every_accepted_value() {
        let model = walk::model();
        let reference = reference();
        let by_key: BTreeMap<&str, &Key> =
            reference.keys.iter().map(|k| (k.key.as_str(), k)).collect();
        let mut problems = Vec::new();
        for (key, values) in &model.values {
            let Some(k) = by_key.get(key.as_str()) else {
                continue; // reported by the key test
            };
            for v in values {
                if !k.range.contains(&format!("\"{v}\"")) {
                    problems.push(format!("{key}: range does not name \"{v}\""));
                }
            }
        }
        assert!(problems.is_empty(), "{FILE}:\n{}", problems.join("\n"));
        assert!(
            model.values.contains_key("node.xdp_mode"),
            "the walk found no enumerated key"
        );
    }

    /// A config to drop an example into: the key's table holds only what every
    /// example of that table needs besides itself.
    fn base(table: &str) -> &'static str {
        match table {
            "node" => "[node]\ninterface = \"eth0\"\n",
            "router" => {
                "[node]\ninterface = \"eth0\"\n\n[[router]]\nname = \"web\"\nvrid = 51\nvips = [\"192.0.2.10\"]\n"
            }
            "service" => {
                "[node]\ninterface = \"eth0\"\n\n[[router]]\nname = \"web\"\nvrid = 51\nvips = [\"192.0.2.10\"]\n\n[[service]]\nvip = \"192.0.2.10\"\nport = 80\nbackends = [{ address = \"192.0.2.21\" }]\n"
            }
            "check" => "[node]\ninterface = \"eth0\"\n\n[[check]]\nname = \"c\"\n",
            other => panic!("no base config for table {other}"),
        }
    }

    /// The example of `key` as a whole file: merged into the base (the example's keys
    /// win), or, for a whole-file example, with a [node] added when it has none.
    fn example_file(key: &Key, sync_key: &std::path::Path) -> String {
        let example = key
            .example
            .replace("/etc/fo/sync.key", &sync_key.to_string_lossy());
        let example: toml::Table = example
            .parse()
            .unwrap_or_else(|e| panic!("{FILE}: the example of {} is not TOML: {e}", key.key));
        let doc = if key.example_is_file() {
            let mut doc = example;
            doc.entry("node")
                .or_insert_with(|| toml::Value::Table(node_table()));
            doc
        } else {
            let mut doc: toml::Table = base(key.table()).parse().expect("base config");
            let table = match doc.get_mut(key.table()) {
                Some(toml::Value::Table(t)) => t,
                Some(toml::Value::Array(a)) => match a.first_mut() {
                    Some(toml::Value::Table(t)) => t,
                    _ => unreachable!("the bases hold one table per array"),
                },
                _ => unreachable!("the bases hold every table"),
            };
            table.extend(example);
            doc
        };
        toml::to_string(&doc).expect("a table serializes")
    }

    fn node_table() -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("interface".into(), "eth0".into());
        t
    }

    /// Whether the example sets the key it illustrates (`a.b` as `a = { b = … }`).
    fn sets(example: &toml::Table, path: &[&str]) -> bool {
        let Some((head, rest)) = path.split_first() else {
            return true;
        };
        match example.get(*head) {
            None => false,
            Some(_) if rest.is_empty() => true,
            Some(toml::Value::Table(t)) => sets(t, rest),
            Some(toml::Value::Array(items)) => items.iter().any(|i| match i {
                toml::Value::Table(t) => sets(t, rest),
                _ => false,
            }),
            Some(_) => false,
        }
    }

    /// What is wrong with the refusal `e` of a retired key's example, if anything: it
    /// must be one problem, on the key's line, whose message contains `hint`.
    fn retired_problem(
        e: &crate::ConfigErrors,
        file: &str,
        key: &Key,
        hint: &str,
    ) -> Option<String> {
        let name = key.name().rsplit('.').next().unwrap_or_default();
        let [only] = e.errors() else {
            return Some(format!(
                "{}: retired: its example must be refused for this key alone, got:\n{file}\n{e}",
                key.key
            ));
        };
        let line = file.lines().nth(only.line.saturating_sub(1)).unwrap_or("");
        let on_key = line.trim_start().starts_with(&format!("{name} ="));
        if !only.message.contains(hint) || !on_key {
            return Some(format!(
                "{}: retired: its example must be refused on the key's line with {hint:?}, got:\n{file}\n{e}",
                key.key
            ));
        }
        None
    }

    #[test]
    fn every_example_is_a_valid_config_that_sets_its_key() {
        use std::os::unix::fs::PermissionsExt as _;
        // `sync.key_file` is read by validation: give the examples a real one.
        let dir = std::env::temp_dir().join(format!("fo-reference-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sync_key = dir.join("sync.key");
        std::fs::write(&sync_key, [7u8; 32]).expect("key file");
        std::fs::set_permissions(&sync_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut problems = Vec::new();
        for key in &reference().keys {
            let file = example_file(key, &sync_key);
            let doc: toml::Table = file.parse().expect("reparse");
            let table = if key.example_is_file() {
                match doc.get(key.table()) {
                    Some(toml::Value::Table(t)) => Some(t.clone()),
                    Some(toml::Value::Array(a)) => a.iter().find_map(|t| match t {
                        toml::Value::Table(t)
                            if sets(t, &key.name().split('.').collect::<Vec<_>>()) =>
                        {
                            Some(t.clone())
                        }
                        _ => None,
                    }),
                    _ => None,
                }
            } else {
                key.example.parse::<toml::Table>().ok()
            };
            let path: Vec<&str> = key.name().split('.').collect();
            if !table.as_ref().is_some_and(|t| sets(t, &path)) {
                problems.push(format!("{}: the example does not set it", key.key));
            }
            match (crate::Config::parse(&file), &key.retired) {
                (Ok(_), None) => {}
                (Err(e), None) => {
                    problems.push(format!("{}: the example is refused:\n{file}\n{e}", key.key));
                }
                (Ok(_), Some(hint)) => problems.push(format!(
                    "{}: retired, but its example is accepted (it must be refused with {hint:?}):\n{file}",
                    key.key
                )),
                (Err(e), Some(hint)) => {
                    if let Some(p) = retired_problem(&e, &file, key, hint) {
                        problems.push(p);
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(problems.is_empty(), "{FILE}:\n{}", problems.join("\n\n"));
    }
}
