//! The receiver's warnings as lines of the demo's display.
//!
//! Each WARN or ERROR event becomes a short line in the display's style
//! (`07:08:27 !!! the Metal API is rate limiting: pausing 1 s`), at most one
//! per kind per status period: a kind seen again before the next status line
//! adds to a count (`(x3)`) instead of a line. [`RULES`] is the one table from
//! a log message to a kind and a text; a message it does not know is shown as
//! it is, without ids. [`layer`] feeds the display from `tracing`;
//! [`Warnings`] holds a period's lines until the status line prints them.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Local};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;

use super::{Display, short};
use crate::logging::ExtraLayer;

/// What a warning is about. The display shows each kind once per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The Metal API answered 429: every request pauses.
    RateLimited,
    /// An event list could not be read this sweep.
    ListUnreadable,
    /// The projects and devices could not be listed.
    InventoryUnreadable,
    /// Direktiv did not take some events; they wait for a later sweep.
    DeliveryDeferred,
    /// Direktiv refused an event for good.
    Refused,
    /// The state could not be read, written or extended.
    State,
    /// A sweep ran out of time.
    SweepTimedOut,
    /// An event could not become a CloudEvent.
    Unmappable,
}

/// One row of [`RULES`].
struct Rule {
    /// How the event's message starts.
    message: &'static str,
    kind: Kind,
    /// The display's text, from the event's fields; `None` hides the event
    /// because another event says the same thing better.
    text: fn(&Fields) -> Option<String>,
}

/// From a log message to a kind and a short text: the first row whose
/// `message` starts the event's message wins.
const RULES: &[Rule] = &[
    Rule {
        message: "the Metal API is rate limiting",
        kind: Kind::RateLimited,
        text: |f| {
            Some(format!(
                "the Metal API is rate limiting: pausing {} s",
                f.get("wait_s")
            ))
        },
    },
    Rule {
        message: "could not read an event list",
        kind: Kind::ListUnreadable,
        text: |f| {
            Some(format!(
                "an event list could not be read ({}); it is read again next sweep",
                f.error()
            ))
        },
    },
    Rule {
        message: "could not list the organization's projects and devices",
        kind: Kind::InventoryUnreadable,
        text: |f| {
            Some(format!(
                "the projects and devices could not be listed ({}); tried again next sweep",
                f.error()
            ))
        },
    },
    Rule {
        message: "some events were not delivered",
        kind: Kind::DeliveryDeferred,
        // Refused events have lines of their own.
        text: |f| {
            (f.get("deferred") != "0").then(|| {
                format!(
                    "Direktiv did not take {} events; they stay pending and go out on a later \
                     sweep",
                    f.get("deferred")
                )
            })
        },
    },
    Rule {
        message: "Direktiv refused the event for good and it could not be kept",
        kind: Kind::State,
        text: |f| {
            Some(format!(
                "a refused event could not be kept ({}); it is sent again next sweep",
                f.error()
            ))
        },
    },
    Rule {
        message: "Direktiv refused the event for good",
        kind: Kind::Refused,
        text: |f| {
            Some(format!(
                "Direktiv refused an event for good ({}); it is kept aside, not sent again",
                short(&without_ids(f.get("reason")))
            ))
        },
    },
    Rule {
        // The Direktiv client's own line about a refusal: the receiver's
        // line above says what happens to the event.
        message: "Direktiv rejected the event",
        kind: Kind::Refused,
        text: |_| None,
    },
    Rule {
        message: "could not write the state",
        kind: Kind::State,
        text: |f| {
            Some(format!(
                "the state could not be written ({}); delivered events may be sent again after \
                 a restart",
                f.error()
            ))
        },
    },
    Rule {
        message: "the dedupe state failed a lookup",
        kind: Kind::State,
        text: |f| {
            Some(format!(
                "the state failed a lookup ({}); the list is read again next sweep",
                f.error()
            ))
        },
    },
    Rule {
        message: "the sweep ran out of time",
        kind: Kind::SweepTimedOut,
        text: |f| {
            Some(format!(
                "a sweep ran out of time ({} s); what was not delivered goes out next sweep",
                f.get("timeout_s")
            ))
        },
    },
    Rule {
        message: "event cannot become a CloudEvent",
        kind: Kind::Unmappable,
        text: |f| {
            Some(format!(
                "an event could not become a CloudEvent and was skipped ({})",
                f.error()
            ))
        },
    },
];

/// What de-duplicates warnings within a period.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Known(Kind),
    /// A message [`RULES`] does not know, without its ids.
    Other(String),
}

/// A warning to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Warning {
    key: Key,
    text: String,
}

/// Turns an event's fields into a warning, or `None` when the table hides it.
fn describe(fields: &Fields) -> Option<Warning> {
    if let Some(rule) = rule_for(&fields.message) {
        return Some(Warning {
            key: Key::Known(rule.kind),
            text: (rule.text)(fields)?,
        });
    }
    let message = without_ids(&fields.message);
    let text = match fields.value("error") {
        Some(error) => format!("{message}: {}", without_ids(error)),
        None => message.clone(),
    };
    Some(Warning {
        key: Key::Other(message),
        text: text.lines().collect::<Vec<_>>().join(" "),
    })
}

fn rule_for(message: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| message.starts_with(rule.message))
}

/// Replaces every UUID in `text` with `…`.
fn without_ids(text: &str) -> String {
    const LEN: usize = 36;
    let is_uuid = |candidate: &[u8]| {
        candidate.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut at) = (0, 0);
    while at + LEN <= bytes.len() {
        if is_uuid(&bytes[at..at + LEN]) {
            // The 36 bytes are ASCII, so `at` and `at + LEN` are char boundaries.
            out.push_str(&text[copied..at]);
            out.push('…');
            at += LEN;
            copied = at;
        } else {
            at += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// An event's message and other fields, as text.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Fields {
    fn value(&self, name: &str) -> Option<&str> {
        self.others
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value.as_str())
    }

    /// A field's value, `?` when the event has none.
    fn get(&self, name: &str) -> &str {
        self.value(name).unwrap_or("?")
    }

    /// The `error` field, one short line without ids.
    fn error(&self) -> String {
        short(&without_ids(self.get("error")))
    }

    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.others.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let text = format!("{value:.1}");
        let text = text.strip_suffix(".0").map_or(text.clone(), str::to_owned);
        self.put(field, text);
    }
}

/// The warnings of the current status period, one entry per kind in the
/// order they first appeared; once closed, each warning is shown at once.
#[derive(Default)]
pub(super) struct Warnings {
    period: Mutex<Period>,
}

#[derive(Default)]
struct Period {
    entries: Vec<Entry>,
    closed: bool,
}

struct Entry {
    warning: Warning,
    first_at: DateTime<Local>,
    count: u64,
}

impl Entry {
    fn line(&self) -> String {
        let count = match self.count {
            1 => String::new(),
            n => format!(" (x{n})"),
        };
        format!(
            "{} !!! {}{count}",
            self.first_at.format("%H:%M:%S"),
            self.warning.text
        )
    }
}

impl Warnings {
    fn period(&self) -> std::sync::MutexGuard<'_, Period> {
        self.period.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a warning seen at `at`; returns its line when it is to be
    /// shown now (after [`Warnings::close`]).
    fn note(&self, warning: Warning, at: DateTime<Local>) -> Option<String> {
        let mut period = self.period();
        if let Some(entry) = period
            .entries
            .iter_mut()
            .find(|entry| entry.warning.key == warning.key)
        {
            entry.count += 1;
            return None;
        }
        let entry = Entry {
            warning,
            first_at: at,
            count: 1,
        };
        if period.closed {
            Some(entry.line())
        } else {
            period.entries.push(entry);
            None
        }
    }

    /// The lines of the period that ends; the next period starts empty.
    pub(super) fn take(&self) -> Vec<String> {
        let entries = std::mem::take(&mut self.period().entries);
        entries.iter().map(Entry::line).collect()
    }

    /// Ends the last period: its lines. Later warnings are shown at once.
    pub(super) fn close(&self) -> Vec<String> {
        let lines = self.take();
        self.period().closed = true;
        lines
    }
}

impl Display {
    /// Shows a warning: now if the display's periods are over, else with
    /// the next status line.
    fn warning(&self, warning: Warning) {
        if let Some(line) = self.warnings.note(warning, Local::now()) {
            self.print(&line);
        }
    }
}

/// The layer that turns the WARN and ERROR events of the whole process into
/// warnings of `display`, whatever `RUST_LOG` says.
pub(super) fn layer(display: Arc<Display>) -> ExtraLayer {
    ToDisplay { display }.with_filter(LevelFilter::WARN).boxed()
}

struct ToDisplay {
    display: Arc<Display>,
}

impl<S: Subscriber> Layer<S> for ToDisplay {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(warning) = describe(&fields) {
            self.display.warning(warning);
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const DEVICE: &str = "4fd75181-2cd4-4e31-ad12-93d67b29b471";

    /// Runs `log` with the display's layer as the subscriber.
    fn logged(display: &Arc<Display>, log: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(layer(Arc::clone(display)));
        tracing::subscriber::with_default(subscriber, log);
    }

    fn rate_limited() {
        tracing::warn!(source = %format!("device:{DEVICE}"), wait_s = 1.0,
            "the Metal API is rate limiting; pausing every request");
    }

    fn text_of(line: &str) -> &str {
        let (time, text) = line.split_at(8);
        assert!(time.as_bytes()[2] == b':', "no time in `{line}`");
        text
    }

    #[test]
    fn a_burst_of_rate_limit_warnings_is_one_line_per_period_with_a_count() {
        let display = Arc::new(Display::new());
        logged(&display, || {
            for _ in 0..50 {
                rate_limited();
            }
            tracing::info!("sweep done");
        });
        let lines = display.warnings.take();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            text_of(&lines[0]),
            " !!! the Metal API is rate limiting: pausing 1 s (x50)"
        );

        // A new period shows it again, and once is once.
        logged(&display, rate_limited);
        let lines = display.warnings.take();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            text_of(&lines[0]),
            " !!! the Metal API is rate limiting: pausing 1 s"
        );
        assert!(display.warnings.take().is_empty());
    }

    #[test]
    fn kinds_keep_their_own_lines_and_counts_in_order_of_appearance() {
        let display = Arc::new(Display::new());
        logged(&display, || {
            tracing::warn!(
                deferred = 11_u64,
                rejected = 0_u64,
                problem = "503",
                "some events were not delivered"
            );
            rate_limited();
            tracing::warn!(
                deferred = 4_u64,
                rejected = 0_u64,
                problem = "503",
                "some events were not delivered"
            );
            tracing::error!(error = "disk full", "could not write the state");
        });
        let lines = display.warnings.take();
        let texts: Vec<&str> = lines.iter().map(|l| text_of(l)).collect();
        assert_eq!(
            texts,
            [
                " !!! Direktiv did not take 11 events; they stay pending and go out on a later \
                 sweep (x2)",
                " !!! the Metal API is rate limiting: pausing 1 s",
                " !!! the state could not be written (disk full); delivered events may be sent \
                 again after a restart",
            ]
        );
    }

    #[test]
    fn an_unknown_warning_shows_its_message_without_ids() {
        let display = Arc::new(Display::new());
        logged(&display, || {
            for device in [DEVICE, "2af530f3-1a38-4969-b9a8-def7c32fd74b"] {
                tracing::warn!(source = %format!("device:{device}"),
                    error = %format!("no floor for device:{device}\nsecond line"),
                    "could not read the source's floor");
            }
            tracing::warn!("something new");
        });
        let lines = display.warnings.take();
        let texts: Vec<&str> = lines.iter().map(|l| text_of(l)).collect();
        assert_eq!(
            texts,
            [
                " !!! could not read the source's floor: no floor for device:… second line (x2)",
                " !!! something new",
            ]
        );
        assert!(!lines.iter().any(|l| l.contains("equinix_receiver")));
    }

    #[test]
    fn events_said_better_elsewhere_are_hidden() {
        let display = Arc::new(Display::new());
        logged(&display, || {
            tracing::warn!(
                outcome = "permanent",
                status = 400_u64,
                "Direktiv rejected the event: rejected (HTTP 400)"
            );
            tracing::warn!(
                deferred = 0_u64,
                rejected = 1_u64,
                problem = "400",
                "some events were not delivered"
            );
            tracing::error!(
                id = "e1",
                reason = "rejected (HTTP 400)",
                "Direktiv refused the event for good; kept in memory only, resend with \
                 --redeliver-refused"
            );
        });
        let lines = display.warnings.take();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            text_of(&lines[0]),
            " !!! Direktiv refused an event for good (rejected (HTTP 400)); it is kept aside, \
             not sent again"
        );
    }

    #[test]
    fn after_the_last_period_warnings_are_shown_at_once() {
        let warnings = Warnings::default();
        let at = Local::now();
        let warning = |text: &str| Warning {
            key: Key::Other(text.to_owned()),
            text: text.to_owned(),
        };
        assert_eq!(warnings.note(warning("early"), at), None);
        let last = warnings.close();
        assert_eq!(last.len(), 1);
        assert!(last[0].ends_with(" !!! early"), "{last:?}");
        let now = warnings.note(warning("late"), at);
        assert!(now.is_some_and(|line| line.ends_with(" !!! late")));
        assert!(warnings.take().is_empty());
    }

    #[test]
    fn every_rule_is_reached_by_its_own_message() {
        for rule in RULES {
            let found = rule_for(rule.message).map(|r| r.message);
            assert_eq!(found, Some(rule.message), "an earlier rule hides it");
        }
    }

    #[test]
    fn ids_are_removed_wherever_they_are() {
        assert_eq!(
            without_ids(&format!("{DEVICE} a /devices/{DEVICE}/events é {DEVICE}")),
            "… a /devices/…/events é …"
        );
        assert_eq!(without_ids("no ids, é"), "no ids, é");
        assert_eq!(without_ids(&DEVICE[1..]), &DEVICE[1..]);
    }
}
