//! A loopback TCP proxy that adds a fixed delay each way, as a network
//! between client and server would (`redis_load`'s `proxy` scenario).
//!
//! Each accepted connection gets its own connection to the target and two
//! threads per direction: a reader stamps every chunk it reads with its
//! arrival, a writer forwards it at arrival + delay. Chunks keep their
//! order and their own deadlines, so pipelined requests are delayed once
//! each, not queued behind one another's delay (a tokio timer would also
//! round each wait up to its 1 ms tick). The writer sleeps until shortly
//! before the deadline, with the thread's timer slack at 1 ns (Linux adds
//! 50 µs to every sleep by default), then yields until it is due: on a
//! single vCPU the server and the client run while it waits.
//!
//! [`LatencyProxy::ping_rtt`] measures what the proxy really adds: a PING
//! round trip through it against one straight to the server.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long before a deadline the writer stops sleeping and starts yielding.
const WAKE_EARLY: Duration = Duration::from_micros(20);

/// A proxy listening on a loopback port, forwarding to `target` with
/// `delay` added each way. Its threads live until the process ends (or a
/// side closes its connection).
pub struct LatencyProxy {
    addr: SocketAddr,
    delay: Duration,
}

impl LatencyProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `target`, `delay` later each way.
    pub fn start(target: SocketAddr, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    if let Err(e) = splice(client, target, delay) {
                        eprintln!("latency proxy: cannot reach {target}: {e}");
                    }
                }
            })
            .expect("spawn the proxy");
        LatencyProxy { addr, delay }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The delay added each way.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Median PING round trips (`n` each, after a few unmeasured ones):
    /// (through the proxy, straight to `target`).
    pub fn ping_rtt(&self, target: SocketAddr, n: usize) -> (Duration, Duration) {
        (median_ping(self.addr, n), median_ping(target, n))
    }
}

/// Connects `client` to `target` through two delayed directions.
fn splice(client: TcpStream, target: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(target)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    direction(client.try_clone()?, server.try_clone()?, delay, "proxy-up");
    direction(server, client, delay, "proxy-down");
    Ok(())
}

/// Forwards what `from` sends to `to`, each chunk `delay` after it arrived.
fn direction(mut from: TcpStream, mut to: TcpStream, delay: Duration, name: &str) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let spawn = |what: &str, f: Box<dyn FnOnce() + Send>| {
        thread::Builder::new()
            .name(format!("{name}-{what}"))
            .spawn(f)
            .expect("spawn a proxy thread");
    };
    spawn(
        "read",
        Box::new(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
            // `tx` drops: the writer ends after the last chunk.
        }),
    );
    spawn(
        "write",
        Box::new(move || {
            precise_sleeps();
            for (due, chunk) in rx {
                sleep_until(due);
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        }),
    );
}

/// Sleeps until `due`: a plain sleep to [`WAKE_EARLY`] before it, then
/// yields.
fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now + WAKE_EARLY {
        thread::sleep(due - now - WAKE_EARLY);
    }
    while Instant::now() < due {
        thread::yield_now();
    }
}

/// This thread's sleeps end when asked (timer slack 1 ns, not 50 µs).
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches only this
    // thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// The median of `n` PING round trips on one connection to `addr`.
fn median_ping(addr: SocketAddr, n: usize) -> Duration {
    let mut s = TcpStream::connect(addr).expect("connect for PING");
    s.set_nodelay(true).expect("nodelay");
    let mut reply = [0u8; 7];
    let mut rtts: Vec<Duration> = (0..n + 10)
        .map(|_| {
            let t = Instant::now();
            s.write_all(b"*1\r\n$4\r\nPING\r\n").expect("PING");
            s.read_exact(&mut reply).expect("PONG");
            assert_eq!(&reply, b"+PONG\r\n");
            t.elapsed()
        })
        .skip(10)
        .collect();
    rtts.sort();
    rtts[rtts.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that echoes what it reads, on a free loopback port.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Each chunk is delayed once each way, and a chunk sent while an
    /// earlier one is still held is not queued behind its delay.
    #[test]
    fn delays_each_chunk_from_its_own_arrival() {
        let delay = Duration::from_millis(5);
        let proxy = LatencyProxy::start(echo_server(), delay);
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 1];

        let t = Instant::now();
        s.write_all(b"a").unwrap();
        s.read_exact(&mut buf).unwrap();
        assert!(t.elapsed() >= 2 * delay, "round trip {:?}", t.elapsed());

        // b at 0, c 1 ms later: c is back at about 1 ms + 10 ms; queued
        // behind b's delays it would take about 20 ms.
        let t = Instant::now();
        s.write_all(b"b").unwrap();
        thread::sleep(Duration::from_millis(1));
        s.write_all(b"c").unwrap();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"bc");
        let both = t.elapsed();
        assert!(both >= 2 * delay, "{both:?}");
        assert!(both < Duration::from_millis(16), "{both:?}");
    }
}
