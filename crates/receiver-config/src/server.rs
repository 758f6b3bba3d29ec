//! The `server` section: the health and metrics server.

use std::net::SocketAddr;

use super::tree::Node;
use super::walker::Walker;
use crate::settings::ServerSettings;

/// The default address of the health and metrics server.
pub(super) const DEFAULT_LISTEN: &str = "0.0.0.0:9464";

impl Walker<'_> {
    pub(super) fn server(&mut self, node: Option<&Node>) -> ServerSettings {
        let mut section = self.open("server", node);
        let enabled = section.get("enabled");
        let listen_key = section.get("listen");
        self.close(section);

        let default_listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .expect("the default address is valid");
        let enabled = self.boolean(&enabled, true);
        let listen = match listen_key.node {
            None => default_listen,
            Some(n) => match self.string(&listen_key.path, n) {
                None => default_listen,
                Some(s) => match s.trim().parse::<SocketAddr>() {
                    Ok(addr) => addr,
                    Err(_) => {
                        self.problem(
                            &listen_key.path,
                            n.line,
                            format!(
                                "must be an IP address and port such as `{DEFAULT_LISTEN}` or \
                                 `127.0.0.1:9464`, got `{s}`"
                            ),
                        );
                        default_listen
                    }
                },
            },
        };
        ServerSettings { enabled, listen }
    }
}
