//! Which text format `/metrics` answers in. The metrics are rendered as OpenMetrics
//! (what Prometheus asks for first); a client that does not ask for OpenMetrics (curl,
//! `promtool check metrics`, older scrapers) gets Prometheus' own text format 0.0.4,
//! in which a counter family is named with its `_total`, an info metric is a gauge
//! named with its `_info`, and there is neither `# UNIT` nor `# EOF`.

/// A text format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The format for a request's `Accept` header: OpenMetrics when it is asked for with a
/// quality at least that of `text/plain`, Prometheus text otherwise (also without the
/// header, and for `*/*`).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Prometheus;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// OpenMetrics text, as `prometheus-client` writes it, in Prometheus text format 0.0.4.
/// Samples stay as they are (OpenMetrics already names them `…_total`, `…_info`,
/// `…_bucket`); the family names in `# HELP` and `# TYPE` change, and the
/// OpenMetrics-only lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    // Each family's type, from its `# TYPE` line (which follows its `# HELP`).
    let mut types = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            types.insert(name, kind);
        }
    }
    let renamed = |name: &str| match types.get(name) {
        Some(&"counter") => format!("{name}_total"),
        Some(&"info") => format!("{name}_info"),
        _ => name.to_string(),
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = if kind == "info" { "gauge" } else { kind };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_asks_for_openmetrics_and_curl_gets_text() {
        // What Prometheus 2.42 sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(
            negotiate(Some("text/plain;version=0.0.4")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0.2, text/plain;q=0.9")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some("Application/OpenMetrics-Text; version=1.0.0")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn counters_and_info_are_renamed_and_openmetrics_lines_go() {
        let om = "# HELP fo_build The build.\n\
                  # TYPE fo_build info\n\
                  fo_build_info{version=\"0.1.0\"} 1\n\
                  # HELP fo_vrrp_transitions VRRP transitions.\n\
                  # TYPE fo_vrrp_transitions counter\n\
                  fo_vrrp_transitions_total{router=\"a\",to=\"master\"} 1\n\
                  # HELP fo_vrrp_state VRRP state.\n\
                  # TYPE fo_vrrp_state gauge\n\
                  fo_vrrp_state{router=\"a\"} 2\n\
                  # HELP fo_takeover_seconds Takeovers.\n\
                  # TYPE fo_takeover_seconds histogram\n\
                  # UNIT fo_takeover_seconds seconds\n\
                  fo_takeover_seconds_sum{router=\"a\"} 0.5\n\
                  # EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP fo_build_info The build.\n\
             # TYPE fo_build_info gauge\n\
             fo_build_info{version=\"0.1.0\"} 1\n\
             # HELP fo_vrrp_transitions_total VRRP transitions.\n\
             # TYPE fo_vrrp_transitions_total counter\n\
             fo_vrrp_transitions_total{router=\"a\",to=\"master\"} 1\n\
             # HELP fo_vrrp_state VRRP state.\n\
             # TYPE fo_vrrp_state gauge\n\
             fo_vrrp_state{router=\"a\"} 2\n\
             # HELP fo_takeover_seconds Takeovers.\n\
             # TYPE fo_takeover_seconds histogram\n\
             fo_takeover_seconds_sum{router=\"a\"} 0.5\n"
        );
    }
}
