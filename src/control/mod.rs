//! pv-ctrl, the local REST API : HTTP/1.1 on a Unix socket served by the loop
//! (`server`), the request parser and response writer (`http`), and the `pvcontrol` client
//! (`client`). Routes live with the device: the server only asks a [`Router`].
pub mod client;
pub mod http;
pub mod routes;
pub mod server;

pub use http::{Head, Method, Response};
pub use server::{Limits, Server};

/// The pseudo-name of a host process (privileged).
pub const HOST: &str = "_pv_";

/// Who is calling, read at accept (SO_PEERCRED, then `/proc/<pid>/cgroup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub pid: i32,
    pub uid: u32,
    /// `_pv_` for the host, else the container's name.
    pub name: String,
}

impl Caller {
    pub fn is_host(&self) -> bool {
        self.name == HOST
    }

    /// The caller of a process: its cgroup decides. An unreadable cgroup file (the process is
    /// gone, or hidden by another PID namespace) gives an empty name: an unknown caller, which
    /// the router answers 500 "unknown caller" as upstream.
    pub fn of_pid(pid: i32, uid: u32) -> Caller {
        let name = match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(text) => container_of_cgroup(&text).unwrap_or(HOST).to_string(),
            Err(_) => String::new(),
        };
        Caller { pid, uid, name }
    }
}

/// The container named by a `/proc/<pid>/cgroup` text: the last `lxc/<name>` component pair
/// of the cgroup v2 (`0::`) path, or of the v1 `name=pantavisor` hierarchy when there is no v2
/// line. `None` = the host.
pub fn container_of_cgroup(text: &str) -> Option<&str> {
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split_once(":name=pantavisor:").map(|(_, p)| p))
        })?;
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let i = comps.iter().rposition(|c| *c == "lxc")?;
    comps.get(i + 1).copied()
}

/// How the server takes the body of a request whose head the router has seen.
pub enum Plan {
    /// Collect at most `limit` bytes (413 beyond) in memory and pass them to
    /// [`Router::finish`]; 503 when the server's memory budget has no room for them. For small
    /// bodies: a large one goes to a sink that writes it to storage.
    Buffer(usize),
    /// Hand the body to the sink piece by piece as it arrives; at most `limit` bytes (413).
    /// Content-Length and chunked bodies alike.
    Stream(Box<dyn BodySink>, u64),
    /// Answer at once; a request body is not read (the connection closes after).
    Reply(Response),
    /// Answer later, when slow work the router started (a GC on a worker) is done: the device
    /// calls [`Server::complete`] with `ticket`, a number of its own choosing that names this
    /// request until then. The connection waits up to `limit_ms` (then 503) and reads nothing
    /// meanwhile; a request body is not read (the connection closes after the answer).
    Defer { ticket: Ticket, limit_ms: u64 },
}

/// Names a deferred request (see [`Plan::Defer`]).
pub type Ticket = u64;

/// The receiver of a streamed body (e.g. PUT /objects: hash and write as it comes).
pub trait BodySink {
    /// One piece. An error response ends the request (sent, then the connection closes).
    fn write(&mut self, chunk: &[u8]) -> Result<(), Response>;
    /// The whole body was written.
    fn finish(self: Box<Self>) -> Response;
}

/// A request being served, as the router sees it.
#[derive(Clone, Debug)]
pub struct Request {
    pub caller: Caller,
    pub head: Head,
}

/// The device's side of pv-ctrl: it owns all state; the server knows no device types.
pub trait Router {
    /// The head is parsed: decide how to take the body.
    fn head(&mut self, req: &Request) -> Plan;
    /// A `Plan::Buffer` request is complete.
    fn finish(&mut self, req: &Request, body: Vec<u8>) -> Response;
    /// Is this caller the host or a mgmt container? Decides its share of the connections
    /// (asked at accept).
    fn trusted(&mut self, caller: &Caller) -> bool;
}

#[cfg(test)]
mod tests;
