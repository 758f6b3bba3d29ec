//! Figures (median, min, max over runs), goals with their ratios, the
//! machine description, and the JSON and Markdown outputs.

use serde::Serialize;

/// A figure over several runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) runs: usize,
}

impl Stat {
    /// The median (mean of the middle two for an even count), min and max.
    pub(crate) fn of(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                runs: 0,
            };
        }
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        }
    }

    /// Every value times `factor` (for units: `1e-6` for millions).
    pub(crate) fn scaled(self, factor: f64) -> Self {
        Self {
            median: self.median * factor,
            min: self.min * factor,
            max: self.max * factor,
            runs: self.runs,
        }
    }

    /// `median [min–max]` with `decimals` digits, or just the median for one run.
    pub(crate) fn show(&self, decimals: usize) -> String {
        if self.runs <= 1 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} [{:.*}–{:.*}]",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

/// The `p`-th percentile (nearest rank) of `values`, which need not be sorted.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Which side of the limit is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Direction {
    AtMost,
    AtLeast,
}

/// One goal of the issue, checked against a median.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Goal {
    pub(crate) scenario: String,
    pub(crate) name: String,
    pub(crate) measured: Stat,
    pub(crate) limit: f64,
    pub(crate) unit: String,
    pub(crate) direction: Direction,
    /// measured / limit (NaN, `null` in JSON, when the limit is zero).
    pub(crate) ratio: f64,
    pub(crate) met: bool,
}

impl Goal {
    pub(crate) fn new(
        scenario: &str,
        name: &str,
        measured: Stat,
        limit: f64,
        unit: &str,
        direction: Direction,
    ) -> Self {
        // A limit of zero (nothing lost) has no meaningful ratio.
        let ratio = if limit == 0.0 {
            f64::NAN
        } else {
            measured.median / limit
        };
        let met = match direction {
            Direction::AtMost => measured.median <= limit,
            Direction::AtLeast => measured.median >= limit,
        };
        Self {
            scenario: scenario.to_owned(),
            name: name.to_owned(),
            measured,
            limit,
            unit: unit.to_owned(),
            direction,
            ratio,
            met,
        }
    }

    /// The goal as a sentence: `requests per sweep ≤ 1072`.
    pub(crate) fn statement(&self) -> String {
        let op = match self.direction {
            Direction::AtMost => "≤",
            Direction::AtLeast => "≥",
        };
        format!("{} {op} {} {}", self.name, fmt_num(self.limit), self.unit)
            .trim_end()
            .to_owned()
    }

    /// The ratio for display: `1.23`, or `–` when it has no meaning.
    pub(crate) fn show_ratio(&self) -> String {
        if self.ratio.is_finite() {
            format!("{:.2}", self.ratio)
        } else {
            "–".to_owned()
        }
    }
}

/// A number with at most 3 significant decimals, no trailing zeros.
pub(crate) fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) memory_gib: f64,
    pub(crate) kernel: String,
}

impl Machine {
    pub(crate) fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        Self {
            cpus,
            cpu_model,
            memory_gib,
            kernel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stat::of(&[1.0, 4.0]).median, 2.5);
        assert_eq!(Stat::of(&[2.0]).show(1), "2.0");
        assert_eq!(s.show(0), "2 [1–3]");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_num(1072.05), "1072");
        assert_eq!(fmt_num(1.5), "1.50");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }

    #[test]
    fn goals_say_whether_they_are_met() {
        let at_most = Goal::new("s", "x", Stat::of(&[12.0]), 10.0, "ms", Direction::AtMost);
        assert!(!at_most.met);
        assert!((at_most.ratio - 1.2).abs() < 1e-9);
        let at_least = Goal::new("s", "y", Stat::of(&[0.9]), 0.8, "", Direction::AtLeast);
        assert!(at_least.met);
        assert_eq!(at_most.statement(), "x ≤ 10.0 ms");
    }
}
