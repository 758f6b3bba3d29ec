//! The Prometheus text format 0.0.4, made from the OpenMetrics text that
//! `prometheus-client` writes, for scrapers that do not ask for OpenMetrics
//! (`curl … | promtool check metrics`, older agents).
//!
//! The two formats share their sample lines; what differs is around them:
//!
//! | OpenMetrics | 0.0.4 |
//! |---|---|
//! | `# TYPE x counter`, samples `x_total` | `# TYPE x_total counter` (a family's name is its samples' name) |
//! | `# TYPE x info`, sample `x_info{..} 1` | `# TYPE x_info gauge` |
//! | `# TYPE x unknown` | `# TYPE x untyped` |
//! | `# UNIT x seconds` | left out (no such line) |
//! | `\"` in `# HELP` | `"` (only `\\` and `\n` are escapes there) |
//! | a sample's exemplar, ` # {..} v` | left out |
//! | `# EOF` at the end | left out |
//!
//! Gauges and histograms keep their lines. Families of types 0.0.4 lacks
//! (`stateset`, `gaugehistogram`, `summary` with `_created`) are not
//! written by the receiver; they would be passed on as `untyped`.

/// The content type of the 0.0.4 text format.
pub(crate) const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics: it names
/// `application/openmetrics-text` with a quality above zero (Prometheus
/// sends it first). Anything else, no header included, gets 0.0.4.
pub(crate) fn accepts_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if !media.eq_ignore_ascii_case("application/openmetrics-text") {
            return false;
        }
        let quality = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, q)| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        quality > 0.0
    })
}

/// `openmetrics` rewritten in the 0.0.4 text format (see the module doc).
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The HELP line waits for its TYPE, which says what name both take.
    let mut help: Option<(&str, String)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text.replace("\\\"", "\"")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (suffixed(family, "_total"), "counter"),
                "info" => (suffixed(family, "_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (family.to_owned(), kind),
                _ => (family.to_owned(), "untyped"),
            };
            if let Some((help_name, text)) = help.take()
                && help_name == family
            {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // A sample; an exemplar follows ` # ` after the labels.
        let labels_end = labels_end(line);
        let sample = match line[labels_end..].find(" # ") {
            Some(at) => &line[..labels_end + at],
            None => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// Where a sample line's labels end (after their `}`, quoted values
/// skipped), or 0 when it has none.
fn labels_end(line: &str) -> usize {
    let Some(open) = line
        .find(['{', ' '])
        .filter(|&at| line[at..].starts_with('{'))
    else {
        return 0;
    };
    let (mut quoted, mut escaped) = (false, false);
    for (at, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return open + at + 1,
            _ => {}
        }
    }
    line.len()
}

/// `name` ending in `suffix`, added when it does not yet.
fn suffixed(name: &str, suffix: &str) -> String {
    if name.ends_with(suffix) {
        name.to_owned()
    } else {
        format!("{name}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn prometheus_asks_for_openmetrics_and_curl_does_not() {
        let prometheus = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,\
            text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(accepts_openmetrics(Some(prometheus)));
        assert!(accepts_openmetrics(Some("Application/OpenMetrics-Text")));
        for other in [
            None,
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
            Some("text/plain, application/openmetrics-text;q=0"),
            Some(""),
        ] {
            assert!(!accepts_openmetrics(other), "{other:?}");
        }
    }

    #[test]
    fn each_openmetrics_difference_is_rewritten() {
        let om = "# HELP x_build Build \\\"information\\\".\n\
                  # TYPE x_build info\n\
                  x_build_info{version=\"1.2.3\"} 1\n\
                  # HELP x_sweeps Sweeps started.\n\
                  # TYPE x_sweeps counter\n\
                  x_sweeps_total 4\n\
                  # TYPE x_age_seconds gauge\n\
                  # UNIT x_age_seconds seconds\n\
                  x_age_seconds 1.5\n\
                  # TYPE x_odd unknown\n\
                  x_odd{a=\"b # c\"} 2 # {trace_id=\"1\"} 1.0\n\
                  x_odd{a=\"} \\\" # \"} 3 # {trace_id=\"2\"} 1.0\n\
                  # EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP x_build_info Build \"information\".\n\
             # TYPE x_build_info gauge\n\
             x_build_info{version=\"1.2.3\"} 1\n\
             # HELP x_sweeps_total Sweeps started.\n\
             # TYPE x_sweeps_total counter\n\
             x_sweeps_total 4\n\
             # TYPE x_age_seconds gauge\n\
             x_age_seconds 1.5\n\
             # TYPE x_odd untyped\n\
             x_odd{a=\"b # c\"} 2\n\
             x_odd{a=\"} \\\" # \"} 3\n"
        );
    }

    /// The format rules a 0.0.4 parser (and `promtool check metrics`)
    /// holds the receiver's whole output to.
    #[test]
    fn the_receivers_metrics_follow_the_text_format_rules() {
        let metrics = Metrics::new(std::time::Duration::from_secs(300));
        metrics.events_delivered.inc();
        metrics.sweep_duration.observe(0.3);
        let text = to_prometheus_text(&metrics.encode());
        assert!(text.ends_with('\n') && !text.contains("# EOF"), "{text}");
        let mut families = HashSet::new();
        let mut current: Option<(String, String)> = None;
        let mut help_for: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(help_for.is_none(), "two HELP lines in a row: {line}");
                help_for = Some(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                if let Some(help) = help_for.take() {
                    assert_eq!(help, name, "HELP and TYPE name one family");
                }
                assert!(families.insert(name.to_owned()), "{name} twice");
                current = Some((name.to_owned(), kind.to_owned()));
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let (family, kind) = current.as_ref().expect("a sample after its TYPE");
                let name = line.split(['{', ' ']).next().unwrap();
                let ok = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family)),
                    _ => name == family,
                };
                assert!(ok, "{name} is not a sample of {family} ({kind})");
                let value = line.rsplit(' ').next().unwrap();
                assert!(
                    value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                    "{line}"
                );
            }
        }
        assert!(families.contains("equinix_receiver_build_info"));
        assert!(families.contains("equinix_receiver_events_delivered_total"));
        assert!(text.contains("\nequinix_receiver_events_delivered_total 1\n"));
        assert!(text.contains("# TYPE equinix_receiver_sweep_duration_seconds histogram\n"));
    }
}
