//! The simulated Direktiv: an [`EventSink`] that answers as the broadcast
//! endpoint would (200, 503 in an outage, 400 for the events it refuses for
//! good, slowly when the nemesis says so) and remembers every arrival.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloudevents::AttributesReader as _;
use direktiv_broadcast::Outcome;
use futures_util::future::BoxFuture;
use receiver_engine::EventSink;

use super::metal::VirtualTime;
use super::world::{Ms, World};

/// What reached Direktiv.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    /// Accepted (200) or refused for good (400), by id: when it first did.
    pub(crate) settled: HashMap<String, Ms>,
    /// Every accepted or refused send, duplicates included.
    pub(crate) sends: u64,
    /// Sends of a type the engine was told to filter out.
    pub(crate) filtered: Vec<(String, String, Ms)>,
}

#[derive(Debug)]
pub(crate) struct Direktiv {
    pub(crate) world: Arc<World>,
    pub(crate) time: VirtualTime,
    pub(crate) arrivals: Arc<Mutex<Arrivals>>,
    pub(crate) trace: bool,
}

impl EventSink for Direktiv {
    fn send<'a>(&'a self, event: &'a cloudevents::Event) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let id = event.id().to_owned();
            let slow = self.world.slowness(&id, self.time.now());
            if !slow.is_zero() {
                tokio::time::sleep(slow).await;
            }
            let t = self.time.now();
            let (status, body) = if self.world.outage(t) {
                (503, "unavailable")
            } else if self.world.refused(&id) {
                (400, "invalid event")
            } else {
                (200, "")
            };
            if self.trace {
                eprintln!("{:>8.3}s direktiv {id} {status}", t as f64 / 1000.0);
            }
            if status != 503 {
                let mut arrivals = self.arrivals.lock().expect("not poisoned");
                arrivals.sends += 1;
                arrivals.settled.entry(id.clone()).or_insert(t);
                if !self.world.delivers(event.ty()) {
                    arrivals.filtered.push((id, event.ty().to_owned(), t));
                }
            }
            Outcome::of_answer(status, body, None)
        })
    }
}
