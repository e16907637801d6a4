//! A test backend that answers each TCP connection with its number (one byte) and
//! remembers who connected: how the namespace tests tell which backend a balanced
//! connection reached, and that the backend saw the client's own address.

use std::io::Write as _;
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::netns::Netns;

/// Answers each connection with its backend number; remembers each peer address.
pub struct IdServer {
    stop: Arc<AtomicBool>,
    pub peers: Arc<Mutex<Vec<IpAddr>>>,
}

impl IdServer {
    /// On `addr`:`port` in `ns`.
    pub fn start(ns: &Netns, id: u8, addr: &'static str, port: u16) -> IdServer {
        let listener = ns.run(move || TcpListener::bind((addr, port)).expect("bind on a backend"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (flag, seen) = (stop.clone(), peers.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        seen.lock().expect("peers").push(peer.ip());
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(&[id]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        IdServer { stop, peers }
    }
}

impl Drop for IdServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
