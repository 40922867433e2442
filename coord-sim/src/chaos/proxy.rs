//! A loopback TCP fault proxy: clients connect to [`FaultProxy::addr`], the
//! proxy forwards to an upstream (a `redis-server` on 127.0.0.1), and the test
//! switches faults at run time, for every connection or for one.
//!
//! | [`Mode`] | what the connections see |
//! |---|---|
//! | [`Pass`](Mode::Pass) | bytes forwarded as they come |
//! | [`Blackhole`](Mode::Blackhole) | bytes accepted, nothing forwarded either way (a partition); held bytes flow again when the mode changes back, as TCP retransmission would deliver them after a partition heals |
//! | [`Delay`](Mode::Delay) | every chunk forwarded `d` after it was read (both ways, order kept) |
//! | [`Reset`](Mode::Reset) | current connections closed with a TCP RST (held bytes are lost); new ones reset at once while the mode lasts |
//!
//! Bytes are never dropped from the middle of a stream (TCP cannot do that):
//! a connection either delivers what it accepted, in order, or is reset.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use coord_sim::chaos::{FaultProxy, Mode};
//! use std::time::Duration;
//! let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await?;
//! let url = format!("redis://{}/0", proxy.addr()); // give this to the clients
//! proxy.set_mode(Mode::Delay(Duration::from_millis(200)));
//! proxy.set_mode(Mode::Blackhole);
//! proxy.set_mode(Mode::Pass); // heal: held bytes flow
//! proxy.set_mode(Mode::Reset); // RST everything, refuse new connections
//! proxy.set_mode(Mode::Pass);
//! # Ok(()) }
//! ```

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

/// What the proxy does to a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes as they come.
    Pass,
    /// Accept bytes, forward nothing either way; held bytes flow again once
    /// the mode is no longer `Blackhole` (or are lost on a reset).
    Blackhole,
    /// Forward every chunk this long after it was read, both ways.
    Delay(Duration),
    /// Reset (TCP RST) the connection; new connections are reset at once
    /// while the global mode is `Reset`.
    Reset,
}

/// Identifies one proxied connection (see [`FaultProxy::connections`]).
pub type ConnId = u64;

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded upstream.
    pub accepted: u64,
    /// Connections reset by [`Mode::Reset`] (current or new ones), or because
    /// the upstream could not be reached.
    pub reset: u64,
    /// Bytes forwarded (both ways).
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    reset: AtomicU64,
    bytes: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    global: Mutex<Mode>,
    conns: Mutex<HashMap<ConnId, watch::Sender<Mode>>>,
    next_id: AtomicU64,
    counters: Counters,
}

/// A loopback TCP proxy with run-time switchable faults (see the module
/// docs). Stops accepting, and resets every connection, when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Binds 127.0.0.1 on a free port and forwards every connection to
    /// `upstream`, in [`Mode::Pass`].
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            global: Mutex::new(Mode::Pass),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Sets the mode of every current connection and of new ones.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.global.lock().unwrap() = mode;
        for tx in self.shared.conns.lock().unwrap().values() {
            tx.send_replace(mode);
        }
    }

    /// The mode new connections get.
    pub fn mode(&self) -> Mode {
        *self.shared.global.lock().unwrap()
    }

    /// Sets the mode of one current connection; `false` if it is gone.
    pub fn set_conn_mode(&self, id: ConnId, mode: Mode) -> bool {
        match self.shared.conns.lock().unwrap().get(&id) {
            Some(tx) => {
                tx.send_replace(mode);
                true
            }
            None => false,
        }
    }

    /// The connections open now, oldest first.
    pub fn connections(&self) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self.shared.conns.lock().unwrap().keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for tx in self.shared.conns.lock().unwrap().values() {
            tx.send_replace(Mode::Reset);
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.mode())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Makes the next close of `fd` send a RST (SO_LINGER with a zero timeout).
fn linger_zero(fd: RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this process owns, with a valid
    // pointer and length.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn reset_now(stream: TcpStream) {
    linger_zero(stream.as_raw_fd());
    drop(stream);
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = client.set_nodelay(true);
        let mode = *shared.global.lock().unwrap();
        if mode == Mode::Reset {
            shared.counters.reset.fetch_add(1, Ordering::Relaxed);
            reset_now(client);
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let upstream = match tokio::time::timeout(
                Duration::from_secs(2),
                TcpStream::connect(shared.upstream),
            )
            .await
            {
                Ok(Ok(s)) => s,
                _ => {
                    shared.counters.reset.fetch_add(1, Ordering::Relaxed);
                    reset_now(client);
                    return;
                }
            };
            let _ = upstream.set_nodelay(true);
            shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            // Registered under the lock that `set_mode` takes, so no global
            // change is missed between reading the mode and registering.
            let rx = {
                let mut conns = shared.conns.lock().unwrap();
                let (tx, rx) = watch::channel(*shared.global.lock().unwrap());
                conns.insert(id, tx);
                rx
            };
            serve(client, upstream, rx, &shared).await;
            shared.conns.lock().unwrap().remove(&id);
        });
    }
}

/// Forwards both ways until either side closes or the mode turns `Reset`.
async fn serve(
    mut client: TcpStream,
    mut upstream: TcpStream,
    mut mode: watch::Receiver<Mode>,
    shared: &Arc<Shared>,
) {
    // Both directions run in this task on borrowed halves, so that nothing
    // half-closes the sockets (FIN) behind our back when a reset drops them.
    let (cfd, ufd) = (client.as_raw_fd(), upstream.as_raw_fd());
    let (m_up, m_down) = (mode.clone(), mode.clone());
    let reset = async {
        loop {
            if *mode.borrow_and_update() == Mode::Reset {
                return;
            }
            if mode.changed().await.is_err() {
                return;
            }
        }
    };
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let pumps = async { tokio::join!(pump(cr, uw, m_up, shared), pump(ur, cw, m_down, shared)) };
    tokio::select! {
        biased;
        _ = pumps => {}
        _ = reset => {
            // Both sockets are still open (we own them): the close below
            // sends a RST and discards whatever was held.
            linger_zero(cfd);
            linger_zero(ufd);
            shared.counters.reset.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One direction: a reader that always accepts bytes, and a writer that
/// forwards them in order as the mode allows.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mode: watch::Receiver<Mode>,
    shared: &Shared,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        let mut mode = mode;
        while let Some((read_at, chunk)) = rx.recv().await {
            loop {
                let m = *mode.borrow_and_update();
                match m {
                    Mode::Pass => break,
                    Mode::Delay(d) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(read_at + d) => break,
                            r = mode.changed() => if r.is_err() { return },
                        }
                    }
                    Mode::Blackhole | Mode::Reset => {
                        if mode.changed().await.is_err() {
                            return;
                        }
                    }
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            shared
                .counters
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        // The reader saw EOF: pass the half-close on.
        let _ = to.shutdown().await;
    };
    // The writer ends after the reader (its channel closes then), having
    // forwarded everything the mode lets through.
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8], within: Duration) -> io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(within, s.read_exact(&mut got))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))??;
        Ok(got)
    }

    #[tokio::test]
    async fn pass_blackhole_delay_reset() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let short = Duration::from_millis(300);

        // Pass.
        assert_eq!(roundtrip(&mut s, b"one", short).await.unwrap(), b"one");
        assert_eq!(proxy.connections().len(), 1);

        // Blackhole: nothing comes back; the bytes flow once healed.
        proxy.set_mode(Mode::Blackhole);
        assert!(roundtrip(&mut s, b"two", short).await.is_err());
        proxy.set_mode(Mode::Pass);
        let mut got = [0u8; 3];
        tokio::time::timeout(short, s.read_exact(&mut got))
            .await
            .expect("held bytes flow after the heal")
            .unwrap();
        assert_eq!(&got, b"two");

        // Delay: the answer comes, but not before two delays (both ways).
        proxy.set_mode(Mode::Delay(Duration::from_millis(150)));
        let t = Instant::now();
        assert_eq!(
            roundtrip(&mut s, b"three", Duration::from_secs(2))
                .await
                .unwrap(),
            b"three"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        proxy.set_mode(Mode::Pass);

        // Per connection: blackhole one, the other passes.
        let mut other = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut other, b"x", short).await.unwrap(), b"x");
        let ids = proxy.connections();
        assert_eq!(ids.len(), 2);
        assert!(proxy.set_conn_mode(ids[0], Mode::Blackhole));
        assert!(roundtrip(&mut s, b"four", short).await.is_err());
        assert_eq!(roundtrip(&mut other, b"y", short).await.unwrap(), b"y");

        // Reset: current connections get a RST (held bytes lost); new ones
        // are reset at once while the mode lasts.
        proxy.set_mode(Mode::Reset);
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("the reset is seen");
        assert!(
            matches!(&r, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{r:?}"
        );
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), fresh.read(&mut buf))
            .await
            .expect("the new connection is reset");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        proxy.set_mode(Mode::Pass);
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"five", short).await.unwrap(), b"five");
        let st = proxy.stats();
        assert!(st.accepted >= 3 && st.reset >= 3, "{st:?}");
    }
}
