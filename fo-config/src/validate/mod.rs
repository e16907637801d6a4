//! From text to a resolved [`Config`]: parse, deserialize each table on its own,
//! then check every rule, collecting every problem with its position.

mod checks;
mod cx;
mod node;
mod routers;
mod services;
mod tunnel;
mod vrrp;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::Config;
use crate::error::{ConfigError, ConfigErrors, LineIndex};
use crate::model::*;

type Span = Range<usize>;

pub(crate) fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let mut cx = Cx {
        idx: LineIndex::new(text),
        errors: Vec::new(),
        removed: HashSet::new(),
    };
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // The tree after a syntax error is a guess: report the syntax only.
        for e in syntax {
            cx.errors.push(cx.idx.error(e.span(), e.message()));
        }
        return Err(ConfigErrors::new(cx.errors));
    }
    let doc = doc.into_inner();

    let mut node = None;
    let mut sections: BTreeMap<&'static str, Vec<Spanned<DeValue<'_>>>> = BTreeMap::new();
    for (key, value) in doc {
        let k: &str = key.get_ref().as_ref();
        match k {
            "node" => {
                if let DeValue::Table(_) = value.get_ref() {
                    node = Some(value);
                } else {
                    cx.err(value.span(), "`node` must be a table: write [node]");
                }
            }
            "router" | "service" | "check" => {
                let name = match k {
                    "router" => "router",
                    "service" => "service",
                    _ => "check",
                };
                let span = value.span();
                match value.into_inner() {
                    DeValue::Array(items) => {
                        sections.insert(name, items.into_iter().collect());
                    }
                    _ => cx.err(
                        span,
                        format!("`{name}` must be an array of tables: write [[{name}]]"),
                    ),
                }
            }
            other => cx.err(
                key.span(),
                format!(
                    "unknown key `{other}`: expected [node], [[router]], [[service]] or [[check]]"
                ),
            ),
        }
    }

    let node = match node {
        Some(v) => cx.node(v),
        None => {
            cx.err(0..0, "missing [node] table (it needs at least `interface`)");
            None
        }
    };
    let checks = cx.checks(sections.remove("check").unwrap_or_default());
    let routers = cx.routers(sections.remove("router").unwrap_or_default(), &checks);
    let services = cx.services(
        sections.remove("service").unwrap_or_default(),
        node.as_ref(),
        &routers,
    );

    match node {
        Some(node) if cx.errors.is_empty() => Ok(Config {
            node,
            routers: routers.resolved,
            services,
            checks: checks.resolved,
        }),
        _ => Err(ConfigErrors::new(cx.errors)),
    }
}

struct Cx<'a> {
    idx: LineIndex<'a>,
    errors: Vec<ConfigError>,
    /// Keys removed from the table being validated because of a type error.
    removed: HashSet<String>,
}

/// Resolved checks plus the names of every check written, even broken ones, so
/// that a broken check does not also make every reference to it an error.
struct Checks {
    resolved: Vec<Check>,
    names: HashSet<String>,
}

/// Resolved routers plus every VIP written (even in broken routers).
struct Routers {
    resolved: Vec<Router>,
    vip_owner: HashMap<IpAddr, String>,
    /// VIPs of `ownership = "bgp"` routers (announced by every node at once).
    bgp_vips: HashSet<IpAddr>,
    /// Routers that have `snat` addresses written (even if broken): whether IPv4 ones
    /// and whether IPv6 ones.
    with_snat: HashMap<String, (bool, bool)>,
    /// Routers on an 802.1Q VLAN, with it.
    vlan_of: HashMap<String, u16>,
    any_broken: bool,
}
